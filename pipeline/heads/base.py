"""The interface every head implements, and what training hands it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.core.config import HeadsConfig, validate_section
from pipeline.heads.pooling import resolve_pooling


class RowBlock(Protocol):
    order: np.ndarray  # (n,) the rows' places in their stream
    features: np.ndarray  # (n, *row_shape) float32
    labels: np.ndarray  # (n,) int64


class RowStream(Protocol):
    """Feature maps read a block at a time instead of held (pipeline.store.stream.MapStream): what a head that
    `streams` gets for flatten pooling, so memory does not grow with the split."""

    @property
    def labels(self) -> np.ndarray: ...

    @property
    def row_shape(self) -> tuple[int, ...]: ...

    def __len__(self) -> int: ...

    def blocks(self, seed: int | None = None) -> Iterator[RowBlock]:
        """Every row once; `seed` shuffles the order of the store's chunks."""


Rows = np.ndarray | RowStream


@dataclass
class TrainingData:
    """Train and validation rows: feature maps (arrays, or a RowStream for a head that streams), or vectors already
    pooled the way the head pools (the store's pooled view); `feature_shape` is the maps' shape either way
    (empty: that of x_train); `scratch_dir` is where a head may write temporary files (None: the system's
    temporary folder)."""

    x_train: Rows
    y_train: np.ndarray
    x_val: Rows
    y_val: np.ndarray
    classes: list[str]
    default_pooling: str
    feature_shape: tuple[int, ...] = ()
    scratch_dir: Path | None = None

    @property
    def map_shape(self) -> tuple[int, ...]:
        if self.feature_shape:
            return tuple(self.feature_shape)
        return tuple(self.x_train.row_shape if is_stream(self.x_train) else self.x_train.shape[1:])


def is_stream(rows: Rows) -> bool:
    """Whether rows come as a RowStream (read block by block) rather than an array."""
    return not isinstance(rows, np.ndarray)


class Head(Protocol):
    """A classifier over cached features. Saved without pickle; loaded with `load(path)`."""

    file_suffix: str
    pooling: str  # how it reduces a map to a vector (avg, max, flatten): avg and max rows come from the pooled view

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(N, *feature_shape) maps, or (N, d) rows already pooled by `pooling` -> (N, n_classes) probabilities."""

    def save(self, path: Path) -> None: ...


class HeadBuilder(Protocol):
    file_suffix: str
    curve_x: str  # the x axis of its learning curves: epoch, or e.g. log10_C for a search over C
    streams: bool  # fit takes RowStreams of maps (flatten) instead of arrays: memory bounded by a chunk or block

    def fit(self, data: TrainingData, params: dict[str, Any], seed: int, live: Any) -> Head: ...

    def load(self, path: Path) -> Head: ...


def head_pooling(head: str, params: dict[str, Any], store_default: str) -> str:
    """The pooling a head's params choose (heads.<head>.pooling, auto: the store's default)."""
    return resolve_pooling(head_params(head, params)["pooling"], store_default)


def head_params(head: str, params: dict[str, Any]) -> dict[str, Any]:
    """A head's params, validated by the params schema (heads.<head>), with its defaults filled in."""
    schema = HeadsConfig.__pydantic_fields__[head].annotation
    return asdict(validate_section(schema, params, f"heads.{head}"))
