"""The interface every head implements, and what training hands it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.core.config import HeadsConfig, validate_section
from pipeline.heads.pooling import resolve_pooling


@dataclass
class TrainingData:
    """Train and validation rows: feature maps, or vectors already pooled the way the head pools (the store's
    pooled view); `feature_shape` is the maps' shape either way (empty: that of x_train)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]
    default_pooling: str
    feature_shape: tuple[int, ...] = ()

    @property
    def map_shape(self) -> tuple[int, ...]:
        return tuple(self.feature_shape) or tuple(self.x_train.shape[1:])


class Head(Protocol):
    """A classifier over cached features. Saved without pickle; loaded with `load(path)`."""

    file_suffix: str
    pooling: str  # how it reduces a map to a vector (avg, flatten): avg rows come from the store's pooled view

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(N, *feature_shape) maps, or (N, d) rows already pooled by `pooling` -> (N, n_classes) probabilities."""

    def save(self, path: Path) -> None: ...


class HeadBuilder(Protocol):
    file_suffix: str
    curve_x: str  # the x axis of its learning curves: epoch, or e.g. log10_C for a search over C

    def fit(self, data: TrainingData, params: dict[str, Any], seed: int, live: Any) -> Head: ...

    def load(self, path: Path) -> Head: ...


def head_pooling(head: str, params: dict[str, Any], store_default: str) -> str:
    """The pooling a head's params choose (heads.<head>.pooling, auto: the store's default)."""
    return resolve_pooling(head_params(head, params)["pooling"], store_default)


def head_params(head: str, params: dict[str, Any]) -> dict[str, Any]:
    """A head's params, validated by the params schema (heads.<head>), with its defaults filled in."""
    schema = HeadsConfig.__pydantic_fields__[head].annotation
    return asdict(validate_section(schema, params, f"heads.{head}"))
