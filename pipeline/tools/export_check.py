"""The reference of `export`'s check: `predict`'s probabilities for a split's files. It lives above the stages
(a stage may not import another), beside the command that compares them with every exported format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.config import Config
from pipeline.core.errors import InputError
from pipeline.stages.predict import predict
from pipeline.store.index import FeatureStore


@dataclass(frozen=True)
class Reference:
    """A split's first images, their labels and predict's probabilities (one column per class)."""

    paths: list[Path]
    labels: np.ndarray
    probabilities: np.ndarray

    @property
    def accuracy(self) -> float:
        return float((self.probabilities.argmax(1) == self.labels).mean())


def predict_reference(config: Config, backbone: str, head: str, split: str, limit: int) -> Reference:
    """`predict` on the split's first `limit` files (0: all), as the store lists them."""
    store = config.paths.store(backbone)
    features = FeatureStore(store)
    rows, classes = features.split_rows(split), features.classes
    count = limit or len(rows.ids)
    paths, labels = [config.paths.split / i for i in rows.ids[:count]], np.asarray(rows.labels[:count])
    head_dir, max_pixels = config.paths.head_dir(backbone, head), config.split.max_pixels
    predictions = predict(paths, store, config.backbone(backbone), head, head_dir, len(classes), max_pixels)
    failed = [p for p in predictions if not p.ok]
    if failed:
        raise InputError(f"predict could not classify {failed[0].image}: {failed[0].error}")
    return Reference(paths, labels, np.array([[dict(p.top)[c] for c in classes] for p in predictions]))
