"""Feature stores from your own code: a split as numpy arrays or a `tf.data.Dataset`, and export for other tools.

    from pipeline.api import load_split, load_dataset

    features, labels, ids, classes = load_split("features/efficientnet_lite0.h5", "train", pooling="avg")
    dataset = load_dataset("features/efficientnet_lite0.h5", "test", pooling="avg", batch_size=64)

`features` is float32, (N, h, w, c) as stored or (N, d) pooled; `labels` int64 indexes into `classes`;
`ids` are the manifest paths (str), row for row. Export writes `.npy` files (no pickles) and parquet.
pooling="avg" or "max" reads the store's pooled view: the (N, h, w, c) maps are not loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.config import SPLITS
from pipeline.core.errors import InputError, StoreError
from pipeline.heads.pooling import pool
from pipeline.store.index import FeatureStore
from pipeline.store.views import VIEW_POOLINGS

POOLINGS = ("none", "auto", "avg", "max", "flatten")
EXPORT_FORMATS = ("npy", "parquet")


@dataclass(frozen=True)
class SplitArrays:
    """One split of a store; unpacks as `features, labels, ids, classes = ...`."""

    features: np.ndarray  # float32 (N, h, w, c), or (N, d) when pooled
    labels: np.ndarray  # int64 (N,), an index into classes
    ids: list[str]  # the manifest paths, e.g. test/cat/cat.1500.jpg
    classes: list[str]  # label order

    def __iter__(self) -> Iterator:
        return iter((self.features, self.labels, self.ids, self.classes))

    def __len__(self) -> int:
        return len(self.labels)


def pooled(features: np.ndarray, pooling: str | None, store_default: str = "flatten") -> np.ndarray:
    """(N, h, w, c) -> as stored (None / "none"), or (N, d): "avg" / "max" over h and w, "flatten",
    "auto" (the backbone's default, recorded in the store)."""
    pooling = "none" if pooling is None else pooling
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {POOLINGS} (or None). Received: pooling={pooling!r}")
    if pooling == "auto":
        pooling = store_default
    if pooling == "none":
        return features
    if pooling == "max" and features.ndim == 4:
        return features.max(axis=(1, 2))
    return pool(features, pooling)  # the heads' own avg / flatten


def load_split(store: str | Path, split: str = "train", *, pooling: str | None = None) -> SplitArrays:
    """Load one split of a feature store (`features/<backbone>.h5`) into memory."""
    opened = FeatureStore(Path(store))
    if split not in SPLITS:
        raise StoreError(f"split must be one of {SPLITS}. Received: split={split!r}")
    default = opened.attrs.get("default_pooling", "flatten")
    resolved = default if pooling == "auto" else pooling
    if resolved in VIEW_POOLINGS:
        data = opened.pooled(split, resolved)
        return SplitArrays(data.features, data.labels.astype(np.int64), [str(i) for i in data.ids], opened.classes)
    data = opened.split(split)
    features = np.ascontiguousarray(pooled(data.features, pooling, default), dtype=np.float32)
    return SplitArrays(features, data.labels.astype(np.int64), [str(i) for i in data.ids], opened.classes)


def load_dataset(
    store: str | Path,
    split: str = "train",
    *,
    pooling: str | None = None,
    batch_size: int | None = 32,
    shuffle: bool = False,
    seed: int = 42,
):
    """A `tf.data.Dataset` of (features, label) from one split (held in memory), batched unless batch_size=None."""
    import tensorflow as tf

    arrays = load_split(store, split, pooling=pooling)
    dataset = tf.data.Dataset.from_tensor_slices((arrays.features, arrays.labels))
    if shuffle:
        dataset = dataset.shuffle(len(arrays), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size) if batch_size else dataset


def export(
    store: str | Path, out_dir: str | Path, formats: tuple[str, ...] = EXPORT_FORMATS, pooling: str | None = None
) -> list[Path]:
    """Write every split of a store for other tools; returns the files written.

    npy: `<split>_features.npy` (float32), `<split>_labels.npy` (int64), `<split>_ids.npy` (unicode: loads with
    numpy's default allow_pickle=False). parquet: `<split>.parquet` with columns id, label, class and
    features (a fixed-size list of float32, the row flattened; `feature_shape` in the schema metadata).
    Both: `store.json` with the classes and what made the features.
    """
    unknown = sorted(set(formats) - set(EXPORT_FORMATS))
    if unknown or not formats:
        raise InputError(f"export formats must be among {EXPORT_FORMATS}. Received: {list(formats)}")
    opened = FeatureStore(Path(store))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in opened.splits:
        arrays = load_split(store, split, pooling=pooling)
        if "npy" in formats:
            written += write_npy(arrays, out, split)
        if "parquet" in formats:
            written.append(write_parquet(arrays, out / f"{split}.parquet", opened.attrs))
    meta = out / "store.json"
    record = {"store": str(store), "pooling": pooling or "none", **opened.attrs}
    meta.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return [*written, meta]


def write_npy(arrays: SplitArrays, out: Path, split: str) -> list[Path]:
    files = {
        out / f"{split}_features.npy": arrays.features,
        out / f"{split}_labels.npy": arrays.labels,
        out / f"{split}_ids.npy": np.array(arrays.ids, dtype=str),
    }
    for path, values in files.items():
        np.save(path, values, allow_pickle=False)
    return list(files)


def write_parquet(arrays: SplitArrays, path: Path, attrs: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = arrays.features.reshape(len(arrays), -1)
    width = flat.shape[1]
    features = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), type=pa.float32()), width)
    table = pa.table(
        {
            "id": pa.array(arrays.ids, type=pa.string()),
            "label": pa.array(arrays.labels, type=pa.int64()),
            "class": pa.array([arrays.classes[i] for i in arrays.labels], type=pa.string()),
            "features": features,
        }
    )
    metadata = {
        "classes": json.dumps(arrays.classes),
        "feature_shape": json.dumps(list(arrays.features.shape[1:])),
        "backbone": str(attrs.get("backbone", "")),
        "fingerprint": str(attrs.get("fingerprint", "")),
    }
    pq.write_table(table.replace_schema_metadata(metadata), path)
    return path
