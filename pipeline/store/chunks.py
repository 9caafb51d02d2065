"""The chunk pool: immutable HDF5 files of feature rows keyed by image content hash.

A store's rows live in `features/<backbone>.chunks/`. Each chunk holds `features` (n, h, w, c) and
`keys` (n,) — the sha256 of each image file — plus the fingerprint of how they were computed and a
checksum of its contents. A chunk is written under a temporary name and renamed when complete, so
after a crash the pool holds only whole chunks, and a rerun computes only the images no chunk holds.

Every read checks a chunk (read_chunk): HDF5's fletcher32 checksum on its features, its keys against its
name, counts, shape, dtype and finiteness. A chunk that fails is never served: readers stop with an error
naming it, and featurize recomputes its rows. Beside each chunk lies its pooled view (pipeline.store.views).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.core.atomic import atomic_file, remove_partials
from pipeline.core.errors import ChunkError, chunk_read_errors
from pipeline.store.views import VIEW_GLOB, chunk_of_view, read_view, view_name, view_width, write_view

STRING = h5py.string_dtype("utf-8")
CHUNK_GLOB = "chunk-*.h5"
HDF5_CHUNK_BYTES = 4 << 20  # the unit fletcher32 checksums and HDF5 reads


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


def chunk_name(fingerprint: str, keys: list[str]) -> str:
    """A chunk's file name, derived from its recipe and its keys: a file under another chunk's name is foreign."""
    digest = hashlib.sha256((fingerprint + "".join(keys)).encode()).hexdigest()
    return f"chunk-{digest[:20]}-{len(keys)}.h5"


def non_finite_rows(features: np.ndarray) -> int:
    """How many rows hold a NaN or an infinity."""
    return int((~np.isfinite(features.reshape(len(features), -1))).any(axis=1).sum())


@dataclass(frozen=True)
class ChunkData:
    """One chunk's rows, read and checked: `features[i]` is the image whose sha256 is `keys[i]`."""

    keys: list[str]
    features: np.ndarray


def count_problem(feature_rows: int, keys: list[str]) -> str | None:
    if not keys or feature_rows != len(keys):
        return f"holds {feature_rows} feature row(s) for {len(keys)} key(s)"
    return None


def layout_problem(
    shape: tuple[int, ...], stored: np.dtype, dtype: str | None, feature_shape: tuple[int, ...] | None
) -> str | None:
    """A row shape or dtype other than the recipe's, or None."""
    if feature_shape is not None and tuple(shape) != tuple(feature_shape):
        return f"rows of shape {tuple(shape)}, the recipe makes {tuple(feature_shape)}"
    if dtype is not None and stored != np.dtype(dtype):
        return f"rows stored as {stored}, the recipe stores {dtype}"
    return None


def finite_problem(features: np.ndarray) -> str | None:
    """Rows with NaN or infinity, or None. One sum first: finite unless some value is not (or it overflows)."""
    if np.isfinite(features.sum(dtype=np.float64)):
        return None
    bad = non_finite_rows(features)
    return f"{bad} row(s) with NaN or infinite values" if bad else None


def rows_problem(
    features: np.ndarray,
    keys: list[str],
    dtype: str | None = None,
    feature_shape: tuple[int, ...] | None = None,
) -> str | None:
    """What is wrong with a chunk's rows (to write or as read), or None: counts, shape, dtype, finiteness."""
    return (
        count_problem(len(features), keys)
        or layout_problem(features.shape[1:], features.dtype, dtype, feature_shape)
        or finite_problem(features)
    )


def peek_fingerprint(path: Path) -> str | None:
    """The recipe fingerprint a chunk file records; None if the file does not open as HDF5."""
    try:
        with h5py.File(path, "r") as handle:
            value = handle.attrs.get("fingerprint")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


def read_chunk(
    path: Path,
    fingerprint: str,
    dtype: str | None = None,
    feature_shape: tuple[int, ...] | None = None,
    checksum: bool = False,
    out: np.ndarray | None = None,
    part: slice | None = None,
) -> ChunkData:
    """Read one chunk (or its rows `part`: `features` then holds those rows, `keys` all) and check it; raise
    ChunkError saying what is wrong.

    Checks: the file opens (not truncated), it was made with this recipe (fingerprint), its keys are the
    ones its name was derived from (not another chunk copied over it), equal key and feature counts, the
    recipe's shape and dtype, HDF5's per-chunk fletcher32 checksum on every byte of the features (h5py
    raises on a damaged block), finite values; with `checksum` (or for chunks written without fletcher32)
    also the sha256 recorded when the chunk was written. `out`, an array of the chunk's shape, receives
    the features (converted to its dtype) without another copy. With `part` the fletcher32 checksum covers
    every HDF5 block read; the sha256 (a chunk without fletcher32) needs the whole chunk, so it is read.
    """
    with chunk_read_errors(path), h5py.File(path, "r") as handle:
        recorded_fingerprint = handle.attrs.get("fingerprint")
        if recorded_fingerprint != fingerprint:
            raise ChunkError(path, f"made with another recipe (fingerprint {recorded_fingerprint})")
        keys = read_strings(handle["keys"])
        if path.name != chunk_name(fingerprint, keys):
            raise ChunkError(path, "holds other rows than its name says (another chunk copied over it?)")
        dataset = handle["features"]
        problem = count_problem(dataset.shape[0] if dataset.ndim else 0, keys) or layout_problem(
            dataset.shape[1:], dataset.dtype, dtype, feature_shape
        )
        if problem:
            raise ChunkError(path, problem)
        sha256 = checksum or not dataset.fletcher32
        try:
            if out is not None and not sha256 and out.shape == dataset.shape:
                dataset.read_direct(out)
                features = out
            else:
                features = dataset[part] if part is not None and not sha256 else dataset[...]
        except OSError as err:
            if not dataset.fletcher32:
                raise
            raise ChunkError(path, f"damaged: its fletcher32 checksum does not match (h5py: {err})") from err
        recorded = handle.attrs.get("checksum")
    problem = finite_problem(features)
    if problem is None and sha256 and chunk_checksum(features, keys) != recorded:
        problem = "checksum mismatch (contents changed since written)"
    if problem:
        raise ChunkError(path, problem)
    return ChunkData(keys, features[part] if part is not None and sha256 else features)


@dataclass(frozen=True)
class RowRef:
    """Where one image's feature row lives: a chunk file (name in the pool) and a row in it."""

    chunk: str
    row: int


class ChunkPool:
    """The chunks of one fingerprint in one folder: look rows up by key, add new chunks.

    Every chunk of the fingerprint is read and checked when the pool opens (read_chunk). One that fails
    is `damaged`: it is not indexed, so its rows count as missing and featurize recomputes them. A sound
    chunk whose pooled view is missing or damaged gets its view rebuilt from the rows just read
    (`views_built` names them), so an existing store gains the view without recomputing a feature.
    """

    def __init__(self, folder: Path, fingerprint: str, dtype: str | None = None) -> None:
        self.folder = folder
        self.fingerprint = fingerprint
        self.dtype = dtype
        self.refs: dict[str, RowRef] = {}
        self.stale: list[Path] = []
        self.damaged: list[ChunkError] = []
        self.rows_per_chunk: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.feature_shape: tuple[int, ...] | None = None
        self.views_built: list[str] = []
        for path in sorted(folder.glob(CHUNK_GLOB)) if folder.is_dir() else []:
            if peek_fingerprint(path) not in (fingerprint, None):
                self.stale.append(path)
                continue
            try:
                chunk = read_chunk(path, fingerprint, dtype)
            except ChunkError as err:
                self.damaged.append(err)
                continue
            self._index(path, chunk)
            self._ensure_view(path, chunk)
        self._drop_odd_shapes()

    def _ensure_view(self, path: Path, chunk: ChunkData) -> None:
        """Rebuild the chunk's pooled view from its rows when the view is missing or fails its checks."""
        view = self.folder / view_name(path.name)
        if view.is_file():
            try:
                read_view(view, self.fingerprint, "avg", view_width(chunk.features.shape[1:]), checksum=True)
                return
            except ChunkError:
                pass
        write_view(self.folder, path.name, self.fingerprint, chunk.features, chunk.keys)
        self.views_built.append(path.name)

    def _index(self, path: Path, chunk: ChunkData) -> None:
        self.rows_per_chunk[path.name] = len(chunk.keys)
        self.shapes[path.name] = tuple(chunk.features.shape[1:])
        self.feature_shape = self.feature_shape or self.shapes[path.name]
        for row, key in enumerate(chunk.keys):
            self.refs.setdefault(key, RowRef(path.name, row))

    def _drop_odd_shapes(self) -> None:
        """Chunks whose row shape differs from the one most rows have are damaged too."""
        if len(set(self.shapes.values())) <= 1:
            return
        weights = Counter[tuple[int, ...]]()
        for name, shape in self.shapes.items():
            weights[shape] += self.rows_per_chunk[name]
        self.feature_shape = weights.most_common(1)[0][0]
        for name, shape in list(self.shapes.items()):
            if shape != self.feature_shape:
                problem = f"rows of shape {shape}, the other chunks' are {self.feature_shape}"
                self.damaged.append(ChunkError(self.folder / name, problem))
                self._forget(name)

    def _forget(self, name: str) -> None:
        del self.rows_per_chunk[name], self.shapes[name]
        self.refs = {key: ref for key, ref in self.refs.items() if ref.chunk != name}

    def discard_damaged(self) -> list[ChunkError]:
        """Delete the damaged chunk files (their rows are recomputed); returns what was wrong with each."""
        for err in self.damaged:
            err.path.unlink(missing_ok=True)
            (self.folder / view_name(Path(err.path).name)).unlink(missing_ok=True)
        return list(self.damaged)

    def missing(self, keys: Iterable[str]) -> list[str]:
        """Keys (in first-seen order, without repeats) that no chunk of this fingerprint holds."""
        return [key for key in dict.fromkeys(keys) if key not in self.refs]

    def add(self, features: np.ndarray, keys: list[str], dtype: str) -> Path:
        """Write a new chunk atomically and index its rows; its name is derived from its keys."""
        path = write_chunk(self.folder, self.fingerprint, features, keys, dtype, self.feature_shape)
        self._index(path, ChunkData(keys, features))
        return path

    def adopt(self, name: str) -> None:
        """Index a chunk that another process (a Ray actor) wrote into this pool's folder, once checked."""
        if name not in self.rows_per_chunk:
            path = self.folder / name
            self._index(path, read_chunk(path, self.fingerprint, self.dtype, self.feature_shape))

    def unreferenced(self, used: set[str]) -> list[Path]:
        """Chunk files no row of `used` points into, plus chunks of another fingerprint, and the pooled views
        of no chunk in `used`."""
        chunks = [self.folder / name for name in self.rows_per_chunk if name not in used] + self.stale
        views = sorted(self.folder.glob(VIEW_GLOB)) if self.folder.is_dir() else []
        return chunks + [view for view in views if chunk_of_view(view.name) not in used]

    def remove_partials(self) -> None:
        """Temporary files a killed run left behind."""
        remove_partials(self.folder)


def write_chunk(
    folder: Path,
    fingerprint: str,
    features: np.ndarray,
    keys: list[str],
    dtype: str,
    feature_shape: tuple[int, ...] | None = None,
) -> Path:
    """Check the rows, write them under a temporary name, then rename: readers only ever see whole chunks.

    The features dataset carries HDF5's fletcher32 filter, so every later read checks every byte. The chunk's
    pooled view is written first, from the same rows, so the chunk's rename is the last step: an interrupt can
    leave a view without its chunk (unreferenced, deleted by the pool), never a chunk the run did not count.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / chunk_name(fingerprint, keys)  # never the name of another recipe's chunk
    stored = features.astype(dtype, copy=False)
    problem = rows_problem(stored, keys, dtype, feature_shape)
    if problem:
        raise ChunkError(path, f"not written: the rows to write are bad: {problem}")
    write_view(folder, path.name, fingerprint, stored, keys)
    with atomic_file(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("features", data=stored, chunks=hdf5_chunks(stored), fletcher32=True)
        handle.create_dataset("keys", data=np.array(keys, dtype=object), dtype=STRING)
        handle.attrs["fingerprint"] = fingerprint
        handle.attrs["checksum"] = chunk_checksum(stored, keys)
    return path


def hdf5_chunks(features: np.ndarray) -> tuple[int, ...]:
    """HDF5 chunks (each checksummed on its own) of whole rows, about HDF5_CHUNK_BYTES each."""
    row_bytes = max(1, features[:1].nbytes)
    return (max(1, min(len(features), HDF5_CHUNK_BYTES // row_bytes)), *features.shape[1:])
