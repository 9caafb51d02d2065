"""Stage train: fit one head on one backbone's cached features (train split; validation for curves)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline.curve_plots import CurveRecorder
from pipeline.heads import TrainingData, get_head, save_head
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
    """Fit and save the head under `out_dir` (with train.json: seconds and what the head chose); write its
    learning curves (one TSV and PNG per metric, train and validation together) into `curves_dir`."""
    builder = get_head(head)
    data = training_data(FeatureStore(store_path))
    start = time.perf_counter()
    curves = CurveRecorder(builder.curve_x)
    model = builder.fit(data, params, seed, curves)
    seconds = time.perf_counter() - start
    if curves_dir is not None:
        shutil.rmtree(curves_dir, ignore_errors=True)
        curves.write(curves_dir, f"{head} head on {store_path.stem} features")
    head_file = save_head(model, builder, out_dir)
    summary = {"seconds": round(seconds, 3), **curves.summary}
    (head_file.parent / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    return seconds
