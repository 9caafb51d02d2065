"""Every row of a feature store pooled to a vector, with its label, id, split and content key (audit, neighbors).

avg and max come from the store's pooled view (pipeline.store.views): the (N, h, w, c) maps are not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.heads.pooling import pool
from pipeline.store.index import FeatureStore, SplitData
from pipeline.store.views import VIEW_POOLINGS


@dataclass
class PooledRows:
    """All rows of a store in store order (train, validation, test): pooled features and what each row is."""

    features: np.ndarray  # (N, d) float32, pooled
    labels: np.ndarray  # (N,) int64
    ids: list[str]  # manifest paths, e.g. train/cat/cat.3.jpg
    splits: np.ndarray  # (N,) str
    keys: list[str]  # sha256 of each image file
    classes: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def pooled_split(store: FeatureStore, name: str, pooling: str) -> SplitData:
    """One split as (N, d) float32 vectors: from the pooled view for avg and max, else its maps, flattened."""
    if pooling in VIEW_POOLINGS:
        return store.pooled(name, pooling)
    part = store.split(name)
    return SplitData(pool(part.features, pooling).astype(np.float32, copy=False), part.labels, part.ids)


def load_pooled(store_path: Path, pooling: str) -> PooledRows:
    """Read every split of the store, pooled: avg and max from the store's pooled view, flatten from the maps."""
    store = FeatureStore(store_path)
    features, labels, ids, splits, keys = [], [], [], [], []
    for name in store.splits:
        part = pooled_split(store, name, pooling)
        features.append(part.features)
        labels.append(part.labels.astype(np.int64))
        ids += part.ids
        splits += [name] * len(part.ids)
        keys += store.keys(name)
    if not ids:
        raise ValueError(f"{store_path} holds no rows.")
    return PooledRows(np.concatenate(features), np.concatenate(labels), ids, np.array(splits), keys, store.classes)
