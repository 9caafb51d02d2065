"""Stage train: fit one head on one backbone's cached features (train split; validation for curves)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.heads import TrainingData, get_head, save_head
from pipeline.metrics import live_dir
from pipeline.store import FeatureStore


def training_data(store: FeatureStore) -> TrainingData:
    train, validation = store.split("train"), store.split("validation")
    return TrainingData(
        train.features,
        train.labels,
        validation.features,
        validation.labels,
        store.classes,
        store.attrs["default_pooling"],
    )


def train(
    store_path: Path, head: str, params: dict[str, Any], seed: int, out_dir: Path, curves_dir: Path | None
) -> float:
    """Fit and save the head under `out_dir`; returns the training time in seconds."""
    builder = get_head(head)
    data = training_data(FeatureStore(store_path))
    start = time.perf_counter()
    if curves_dir is not None:
        with live_dir(curves_dir) as live:
            model = builder.fit(data, params, seed, live)
            live.summary["train_seconds"] = round(time.perf_counter() - start, 3)
    else:
        model = builder.fit(data, params, seed, None)
    seconds = time.perf_counter() - start
    save_head(model, builder, out_dir)
    return seconds
