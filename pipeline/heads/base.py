"""The interface every head implements, and what training hands it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.core.config import HeadsConfig, validate_section


@dataclass
class TrainingData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]
    default_pooling: str


class Head(Protocol):
    """A classifier over cached features. Saved without pickle; loaded with `load(path)`."""

    file_suffix: str

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(N, *feature_shape) -> (N, n_classes) probabilities."""

    def save(self, path: Path) -> None: ...


class HeadBuilder(Protocol):
    file_suffix: str
    curve_x: str  # the x axis of its learning curves: epoch, or e.g. log10_C for a search over C

    def fit(self, data: TrainingData, params: dict[str, Any], seed: int, live: Any) -> Head: ...

    def load(self, path: Path) -> Head: ...


def head_params(head: str, params: dict[str, Any]) -> dict[str, Any]:
    """A head's params, validated by the params schema (heads.<head>), with its defaults filled in."""
    schema = HeadsConfig.__pydantic_fields__[head].annotation
    return asdict(validate_section(schema, params, f"heads.{head}"))
