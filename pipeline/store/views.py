"""The pooled view: each chunk's rows average- and max-pooled to vectors, in a small file beside the chunk.

A chunk `chunk-<digest>-<n>.h5` holds (n, h, w, c) feature maps; its view `pooled-<digest>-<n>.h5` holds
`avg` and `max` (n, c) float32 and the same `keys`, with the chunk's fingerprint and name as attributes and a
sha256 of its contents. Both datasets carry HDF5's fletcher32 checksum, as the chunk's features do. A head,
the audit or the API that pools avg or max reads the view (a fiftieth of the map at 7 x 7) instead of the maps.

The view is derived data: it is written with its chunk, and featurize rebuilds a missing or damaged one from
the chunk (no feature is recomputed). Readers that find no view pool the chunk instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.core.atomic import atomic_file
from pipeline.core.errors import ChunkError, chunk_read_errors

VIEW_POOLINGS = ("avg", "max")  # the poolings a view holds
VIEW_GLOB = "pooled-*.h5"
STRING = h5py.string_dtype("utf-8")


def view_name(chunk: str) -> str:
    """chunk-<digest>-<n>.h5 -> pooled-<digest>-<n>.h5"""
    return "pooled-" + chunk.removeprefix("chunk-")


def chunk_of_view(view: str) -> str:
    """pooled-<digest>-<n>.h5 -> chunk-<digest>-<n>.h5"""
    return "chunk-" + view.removeprefix("pooled-")


def pool_rows(features: np.ndarray, pooling: str) -> np.ndarray:
    """(n, h, w, c) maps -> (n, c) float32 by `pooling` (avg or max) over h and w; other ranks are flattened."""
    if pooling not in VIEW_POOLINGS:
        raise ValueError(f"a pooled view holds {VIEW_POOLINGS}. Received: pooling={pooling!r}")
    if features.ndim != 4:
        return features.reshape(len(features), -1).astype(np.float32, copy=False)
    maps = features.astype(np.float32, copy=False)
    return maps.mean(axis=(1, 2)) if pooling == "avg" else maps.max(axis=(1, 2))


def view_width(feature_shape: tuple[int, ...]) -> int:
    """The length of a pooled row: the channels of an (h, w, c) map, else the flattened row."""
    return int(feature_shape[-1]) if len(feature_shape) == 3 else int(np.prod(feature_shape))


def view_checksum(rows: dict[str, np.ndarray], keys: list[str]) -> str:
    digest = hashlib.sha256()
    for pooling in VIEW_POOLINGS:
        digest.update(np.ascontiguousarray(rows[pooling], dtype=np.float32).tobytes())
    for key in keys:
        digest.update(key.encode())
    return digest.hexdigest()


def write_view(folder: Path, chunk: str, fingerprint: str, features: np.ndarray, keys: list[str]) -> Path:
    """Pool a chunk's rows and write its view atomically (temporary name, then rename); returns the file."""
    rows = {pooling: pool_rows(features, pooling) for pooling in VIEW_POOLINGS}
    path = folder / view_name(chunk)
    with atomic_file(path) as tmp, h5py.File(tmp, "w") as handle:
        for pooling, values in rows.items():
            handle.create_dataset(pooling, data=values, fletcher32=True, chunks=values.shape if len(values) else None)
        handle.create_dataset("keys", data=np.array(keys, dtype=object), dtype=STRING)
        handle.attrs["fingerprint"] = fingerprint
        handle.attrs["chunk"] = chunk
        handle.attrs["checksum"] = view_checksum(rows, keys)
    return path


@dataclass(frozen=True)
class ViewData:
    """One chunk's pooled rows, read and checked: `rows[i]` pools the map of the image whose sha256 is `keys[i]`."""

    keys: list[str]
    rows: np.ndarray


def read_view(path: Path, fingerprint: str, pooling: str, width: int | None = None, checksum: bool = False) -> ViewData:
    """Read one pooling of a view and check it; raise ChunkError saying what is wrong.

    Checks: the file opens, it was made with this recipe (fingerprint) for the chunk its name says, key and row
    counts agree, rows are `width` long, fletcher32 on every byte read, finite values; with `checksum` also the
    sha256 over both poolings and the keys.
    """
    if pooling not in VIEW_POOLINGS:
        raise ValueError(f"a pooled view holds {VIEW_POOLINGS}. Received: pooling={pooling!r}")
    with chunk_read_errors(path), h5py.File(path, "r") as handle:
        if handle.attrs.get("fingerprint") != fingerprint:
            raise ChunkError(path, f"made with another recipe (fingerprint {handle.attrs.get('fingerprint')})")
        if handle.attrs.get("chunk") != chunk_of_view(path.name):
            raise ChunkError(path, f"pools chunk {handle.attrs.get('chunk')}, not {chunk_of_view(path.name)}")
        keys = list(handle["keys"].asstr()[()])
        wanted = VIEW_POOLINGS if checksum else (pooling,)
        try:
            rows = {name: handle[name][...] for name in wanted}
        except OSError as err:
            raise ChunkError(path, f"damaged: its fletcher32 checksum does not match (h5py: {err})") from err
        recorded = handle.attrs.get("checksum")
    problem = view_problem(rows, keys, width)
    if problem is None and checksum and view_checksum(rows, keys) != recorded:
        problem = "checksum mismatch (contents changed since written)"
    if problem:
        raise ChunkError(path, problem)
    return ViewData(keys, rows[pooling])


def view_problem(rows: dict[str, np.ndarray], keys: list[str], width: int | None) -> str | None:
    """Counts, row length, dtype and finiteness of a view's rows, or None."""
    for name, values in rows.items():
        if values.ndim != 2 or len(values) != len(keys) or not keys:
            return f"{name}: {values.shape} rows for {len(keys)} key(s)"
        if width is not None and values.shape[1] != width:
            return f"{name}: rows of length {values.shape[1]}, the store's maps pool to {width}"
        if values.dtype != np.float32:
            return f"{name}: rows stored as {values.dtype}, a view stores float32"
        if not np.isfinite(values).all():
            return f"{name}: NaN or infinite values"
    return None
