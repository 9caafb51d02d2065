"""The chunk pool: immutable HDF5 files of feature rows keyed by image content hash.

A store's rows live in `features/<backbone>.chunks/`. Each chunk holds `features` (n, h, w, c) and
`keys` (n,) — the sha256 of each image file — plus the fingerprint of how they were computed and a
checksum of its contents. A chunk is written under a temporary name and renamed when complete, so
after a crash the pool holds only whole chunks, and a rerun computes only the images no chunk holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.atomic import atomic_file, remove_partials
from pipeline.errors import ChunkError

STRING = h5py.string_dtype("utf-8")
CHUNK_GLOB = "chunk-*.h5"


def read_strings(dataset: h5py.Dataset) -> list[str]:
    """A string dataset (ids, keys, chunk names) as Python strings."""
    return list(dataset.asstr()[()])


def fingerprint(recipe: dict[str, Any]) -> str:
    """A stable hash of everything that determines a feature row besides the image itself."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def chunk_checksum(features: np.ndarray, keys: Iterable[str]) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(features).tobytes())
    for key in keys:
        digest.update(key.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class RowRef:
    """Where one image's feature row lives: a chunk file (name in the pool) and a row in it."""

    chunk: str
    row: int


class ChunkPool:
    """The chunks of one fingerprint in one folder: look rows up by key, add new chunks."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = folder
        self.fingerprint = fingerprint
        self.refs: dict[str, RowRef] = {}
        self.stale: list[Path] = []
        self.rows_per_chunk: dict[str, int] = {}
        self.feature_shape: tuple[int, ...] | None = None
        for path in sorted(folder.glob(CHUNK_GLOB)) if folder.is_dir() else []:
            self._index_chunk(path)

    def _index_chunk(self, path: Path) -> None:
        try:
            with h5py.File(path, "r") as handle:
                if handle.attrs.get("fingerprint") != self.fingerprint:
                    self.stale.append(path)
                    return
                keys = read_strings(handle["keys"])
                self.feature_shape = self.feature_shape or tuple(handle["features"].shape[1:])
        except (OSError, KeyError) as err:
            raise ChunkError(f"Unreadable chunk {path}: {err}. Delete it; the next run recomputes its rows.") from err
        self.rows_per_chunk[path.name] = len(keys)
        for row, key in enumerate(keys):
            self.refs.setdefault(key, RowRef(path.name, row))

    def missing(self, keys: Iterable[str]) -> list[str]:
        """Keys (in first-seen order, without repeats) that no chunk of this fingerprint holds."""
        return [key for key in dict.fromkeys(keys) if key not in self.refs]

    def add(self, features: np.ndarray, keys: list[str], dtype: str) -> Path:
        """Write a new chunk atomically and index its rows; its name is derived from its keys."""
        path = write_chunk(self.folder, self.fingerprint, features, keys, dtype)
        self.feature_shape = self.feature_shape or tuple(features.shape[1:])
        self.rows_per_chunk[path.name] = len(keys)
        for row, key in enumerate(keys):
            self.refs.setdefault(key, RowRef(path.name, row))
        return path

    def adopt(self, name: str) -> None:
        """Index a chunk that another process (a Ray actor) wrote into this pool's folder."""
        if name not in self.rows_per_chunk:
            self._index_chunk(self.folder / name)

    def unreferenced(self, used: set[str]) -> list[Path]:
        """Chunk files no row of `used` points into, plus chunks of another fingerprint."""
        return [self.folder / name for name in self.rows_per_chunk if name not in used] + self.stale

    def remove_partials(self) -> None:
        """Temporary files a killed run left behind."""
        remove_partials(self.folder)


def write_chunk(folder: Path, fingerprint: str, features: np.ndarray, keys: list[str], dtype: str) -> Path:
    """Write one chunk under a temporary name, then rename it: readers only ever see whole chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256((fingerprint + "".join(keys)).encode()).hexdigest()
    path = folder / f"chunk-{digest[:20]}-{len(keys)}.h5"  # never the name of another recipe's chunk
    stored = features.astype(dtype, copy=False)
    with atomic_file(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("features", data=stored)
        handle.create_dataset("keys", data=np.array(keys, dtype=object), dtype=STRING)
        handle.attrs["fingerprint"] = fingerprint
        handle.attrs["checksum"] = chunk_checksum(stored, keys)
    return path


def verify_chunk(path: Path, fingerprint: str) -> list[str]:
    """Problems with one chunk file: wrong fingerprint, checksum mismatch, non-finite rows."""
    try:
        with h5py.File(path, "r") as handle:
            features = handle["features"][...]
            keys = read_strings(handle["keys"])
            recorded_fingerprint = handle.attrs.get("fingerprint")
            recorded = handle.attrs.get("checksum")
    except (OSError, KeyError) as err:
        return [f"{path.name}: unreadable ({err})"]
    problems = []
    if recorded_fingerprint != fingerprint:
        problems.append(f"{path.name}: made with another recipe (fingerprint {recorded_fingerprint})")
    if chunk_checksum(features, keys) != recorded:
        problems.append(f"{path.name}: checksum mismatch (contents changed since written)")
    bad_rows = int((~np.isfinite(features.reshape(len(features), -1))).any(axis=1).sum())
    if bad_rows:
        problems.append(f"{path.name}: {bad_rows} row(s) with NaN or infinite values")
    return problems
