"""Stage train: fit one head on one backbone's cached features (train split; validation for curves).

A head that pools avg or max reads the store's pooled view, never the (N, h, w, c) maps. Flatten reads the maps:
as a stream, chunk by chunk, for a head that streams (dense, logreg), else into memory.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.heads import TrainingData, get_head, head_pooling, save_head
from pipeline.reporting.curve_plots import CurveRecorder
from pipeline.store.drop_list import read_drop_list
from pipeline.store.index import FeatureStore, SplitData, StoreError
from pipeline.store.pooled import pooled_split
from pipeline.store.stream import MapStream


def dropped_ids(ids: list[str], drop_list: Path) -> set[str]:
    """The ids the audit's drop list names (all of them must be training rows)."""
    drop = read_drop_list(drop_list)
    unknown = sorted(drop - set(ids))
    if unknown:
        raise StoreError(
            f"{drop_list} names {len(unknown)} id(s) that are not training rows of this store, e.g. {unknown[0]}; "
            "re-run the audit stage."
        )
    return drop


def without_rows(train: SplitData | MapStream, drop_list: Path) -> SplitData | MapStream:
    """The train split less the rows the audit's drop list names."""
    drop = dropped_ids(train.ids, drop_list)
    if isinstance(train, MapStream):
        return train.without(drop)
    keep = [i for i, row_id in enumerate(train.ids) if row_id not in drop]
    return SplitData(train.features[keep], train.labels[keep], [train.ids[i] for i in keep])


def training_data(
    store: FeatureStore,
    drop_list: Path | None = None,
    pooling: str = "flatten",
    stream: bool = False,
    scratch_dir: Path | None = None,
) -> TrainingData:
    """Train and validation rows pooled by `pooling` (avg, max: from the pooled view; flatten: the maps, as stored,
    streamed chunk by chunk with `stream`, else in memory); with a drop list, the training rows it names are left
    out. `scratch_dir`: where the head may write temporary files."""
    if pooling == "flatten" and stream:
        train, validation = MapStream(store, "train"), MapStream(store, "validation")
    elif pooling == "flatten":
        train, validation = store.split("train"), store.split("validation")
    else:
        train, validation = pooled_split(store, "train", pooling), pooled_split(store, "validation", pooling)
    if drop_list is not None:
        train = without_rows(train, drop_list)
    return TrainingData(
        rows(train),
        train.labels,
        rows(validation),
        validation.labels,
        store.classes,
        store.attrs["default_pooling"],
        store.feature_shape,
        scratch_dir,
    )


def rows(data: SplitData | MapStream) -> np.ndarray | MapStream:
    """What a head fits on: the arrays, or the stream itself."""
    return data if isinstance(data, MapStream) else data.features


def train(
    store_path: Path,
    head: str,
    params: dict[str, Any],
    seed: int,
    out_dir: Path,
    curves_dir: Path | None,
    drop_list: Path | None = None,
) -> float:
    """Fit and save the head under `out_dir` (without the rows `drop_list` names; with train.json: seconds, rows
    and what the head chose); write its learning curves (one TSV and PNG per metric, train and validation
    together) into `curves_dir`. Returns the seconds."""
    builder = get_head(head)
    store = FeatureStore(store_path)
    pooling = head_pooling(head, params, store.attrs["default_pooling"])
    out_dir.parent.mkdir(parents=True, exist_ok=True)  # a streamed logreg's scratch folder goes beside the head
    data = training_data(store, drop_list, pooling, stream=builder.streams, scratch_dir=out_dir.parent)
    start = time.perf_counter()
    curves = CurveRecorder(builder.curve_x)
    model = builder.fit(data, params, seed, curves)
    seconds = time.perf_counter() - start
    if curves_dir is not None:
        shutil.rmtree(curves_dir, ignore_errors=True)
        curves.write(curves_dir, f"{head} head on {store_path.stem} features")
    head_file = save_head(model, builder, out_dir)
    summary = {"seconds": round(seconds, 3), "train_rows": len(data.y_train), **curves.summary}
    (head_file.parent / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    return seconds
