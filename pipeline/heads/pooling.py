"""How a head reduces a (N, h, w, c) feature map to vectors: flatten (the book), global average or global max."""

from __future__ import annotations

import numpy as np

from pipeline.core.config import POOLINGS
from pipeline.core.errors import ConfigError


def resolve_pooling(pooling: str, store_default: str) -> str:
    """'auto' means the backbone's own default, recorded in the store."""
    if pooling not in POOLINGS:
        raise ConfigError(f"Head pooling must be one of {POOLINGS}. Received: pooling={pooling!r}")
    return store_default if pooling == "auto" else pooling


def pool(features: np.ndarray, pooling: str) -> np.ndarray:
    """(N, ...) features -> (N, d) vectors; rows already pooled (N, d) pass through."""
    if pooling == "avg" and features.ndim == 4:
        return features.mean(axis=(1, 2))
    if pooling == "max" and features.ndim == 4:
        return features.max(axis=(1, 2))
    return features.reshape(len(features), -1)
