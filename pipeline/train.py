"""Stage train: fit one head on one backbone's cached features (train split; validation for curves)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline.curves import CurveRecorder
from pipeline.heads import HeadBuilder, TrainingData, get_head
from pipeline.store import FeatureStore


def head_file(head_dir: Path, builder: HeadBuilder) -> Path:
    """The saved head inside its output folder: head.keras or head.npz."""
    return head_dir / f"head{builder.file_suffix}"


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
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    model.save(head_file(out_dir, builder))
    summary = {"seconds": round(seconds, 3), **curves.summary}
    (out_dir / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    return seconds


def load_head(head: str, head_dir: Path):
    """A saved head, loaded without unpickling."""
    builder = get_head(head)
    path = head_file(head_dir, builder)
    if not path.is_file():
        raise FileNotFoundError(f"No trained '{head}' head at {path}. Run `dvc repro` (the train stage) first.")
    return builder.load(path)
