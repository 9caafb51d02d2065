"""The HDF5 feature store: per split `features` (N, h, w, c), `labels` (N,), `ids` (N,) aligned row by row.

Root attributes say how the features were made (backbone, weights and their sha256, input size,
preprocessing, library versions, classes). A store is written under a temporary name and renamed into
place only when complete, so a reader never sees a half-written store.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FORMAT_VERSION = 1
STRING = h5py.string_dtype("utf-8")


class StoreError(ValueError):
    """A feature store is missing, incomplete or does not match what the caller expects."""


@dataclass
class SplitData:
    features: np.ndarray
    labels: np.ndarray
    ids: list[str]


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class StoreWriter:
    """Write a store split by split; `commit()` atomically renames the finished file into place."""

    def __init__(self, path: Path, attrs: dict[str, Any]) -> None:
        self.path = path
        self.tmp = partial_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.tmp, "w")
        for key, value in attrs.items():
            self.file.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, tuple)) else value
        self.file.attrs["format_version"] = FORMAT_VERSION

    def create_split(
        self, split: str, ids: list[str], labels: list[int], feature_shape: tuple[int, ...], dtype: str
    ) -> h5py.Dataset:
        """Create the split's group with ids and labels; returns the (empty) features dataset to fill."""
        group = self.file.create_group(split)
        group.create_dataset("ids", data=np.array(ids, dtype=object), dtype=STRING)
        group.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
        chunk_rows = max(1, min(len(ids), 64))
        return group.create_dataset(
            "features", shape=(len(ids), *feature_shape), dtype=dtype, chunks=(chunk_rows, *feature_shape)
        )

    def commit(self) -> None:
        self.file.flush()
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.file.id.valid:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


class FeatureStore:
    """Read access to a finished store."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise StoreError(f"Feature store not found: {path}. Run `dvc repro` (the featurize stage) first.")
        self.path = path
        with h5py.File(path, "r") as handle:
            self.attrs = {key: _decode_attr(value) for key, value in handle.attrs.items()}
            self.splits = [name for name in ("train", "validation", "test") if name in handle]

    @property
    def classes(self) -> list[str]:
        return list(self.attrs["classes"])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.attrs["feature_shape"])

    def split(self, name: str) -> SplitData:
        """Load one split fully into memory (features as float32)."""
        if name not in self.splits:
            raise StoreError(f"{self.path} has no split {name!r}; it has {self.splits}.")
        with h5py.File(self.path, "r") as handle:
            group = handle[name]
            return SplitData(
                features=group["features"][...].astype(np.float32, copy=False),
                labels=group["labels"][...],
                ids=[i.decode() if isinstance(i, bytes) else i for i in group["ids"][...]],
            )


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def describe(path: Path) -> str:
    """A human-readable account of what made a store and what it holds."""
    store = FeatureStore(path)
    lines = [f"store: {path} ({path.stat().st_size / 1e6:.1f} MB)"]
    for key in (
        "backbone",
        "weights",
        "weights_sha256",
        "input_size",
        "resize",
        "preprocessing",
        "storage_dtype",
        "feature_shape",
        "classes",
        "device",
        "versions",
    ):
        if key in store.attrs:
            lines.append(f"  {key}: {store.attrs[key]}")
    with h5py.File(path, "r") as handle:
        for split in store.splits:
            features = handle[split]["features"]
            lines.append(f"  {split}: {features.shape[0]} rows, features {features.shape[1:]} {features.dtype}")
    return "\n".join(lines)
