"""The feature store's index: `features/<backbone>.h5`, one group per split.

Each split holds `features` (N, h, w, c) — an HDF5 virtual dataset over the chunk files in
`features/<backbone>.chunks/` (see pipeline.store.chunks) — with `labels` (N,), `ids` (N,) (the manifest
paths) and `keys` (N,) (the images' sha256) aligned row by row; `chunk` and `row` say where each row
lives. Root attributes say how the features were made (backbone, weights and their sha256, input
size, preprocessing, library versions, classes, fingerprint). The index is written under a temporary
name and renamed when complete, so a reader always opens a complete version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from pipeline.core.atomic import atomic_file
from pipeline.core.errors import ChunkError, StoreError
from pipeline.store.chunks import STRING, ChunkData, ChunkPool, RowRef, read_chunk, read_strings
from pipeline.store.views import VIEW_POOLINGS, pool_rows, read_view, view_name, view_width

if TYPE_CHECKING:  # typing only: the store never builds a backbone (that would import TensorFlow)
    from pipeline.backbones import ResolvedWeights

FORMAT_VERSION = 2


@dataclass
class SplitData:
    features: np.ndarray
    labels: np.ndarray
    ids: list[str]


@dataclass(frozen=True)
class SplitIndex:
    """What one split of the index lists, in manifest order."""

    ids: list[str]
    labels: list[int]
    keys: list[str]


def chunk_folder(store_path: Path) -> Path:
    """features/vgg16.h5 -> features/vgg16.chunks"""
    return store_path.with_name(store_path.stem + ".chunks")


def contiguous_runs(refs: list[RowRef]) -> list[tuple[int, int, RowRef]]:
    """(start, stop, first ref) for each run of rows that are consecutive rows of one chunk."""
    runs: list[tuple[int, int, RowRef]] = []
    for i, ref in enumerate(refs):
        if runs:
            start, stop, first = runs[-1]
            if ref.chunk == first.chunk and ref.row == first.row + (stop - start):
                runs[-1] = (start, stop + 1, first)
                continue
        runs.append((i, i + 1, ref))
    return runs


def write_split_index(
    handle: h5py.File, name: str, index: SplitIndex, pool: ChunkPool, feature_shape: tuple[int, ...], dtype: str
) -> None:
    group = handle.create_group(name)
    group.create_dataset("ids", data=np.array(index.ids, dtype=object), dtype=STRING)
    group.create_dataset("labels", data=np.asarray(index.labels, dtype=np.int64))
    group.create_dataset("keys", data=np.array(index.keys, dtype=object), dtype=STRING)
    refs = [pool.refs[key] for key in index.keys]
    group.create_dataset("chunk", data=np.array([r.chunk for r in refs], dtype=object), dtype=STRING)
    group.create_dataset("row", data=np.array([r.row for r in refs], dtype=np.int64))
    if not refs:
        group.create_dataset("features", shape=(0, *feature_shape), dtype=dtype)
        return
    layout = h5py.VirtualLayout(shape=(len(refs), *feature_shape), dtype=dtype)
    for start, stop, first in contiguous_runs(refs):
        source = h5py.VirtualSource(
            f"{pool.folder.name}/{first.chunk}", "features", shape=(pool.rows_per_chunk[first.chunk], *feature_shape)
        )
        layout[start:stop] = source[first.row : first.row + stop - start]
    group.create_virtual_dataset("features", layout, fillvalue=np.nan)


def write_index(
    path: Path,
    attrs: dict[str, Any],
    splits: dict[str, SplitIndex],
    pool: ChunkPool,
    feature_shape: tuple[int, ...],
    dtype: str,
) -> None:
    """Write the index under a temporary name, then rename it over the previous version."""
    with atomic_file(path) as tmp, h5py.File(tmp, "w") as handle:
        for key, value in {**attrs, "format_version": FORMAT_VERSION}.items():
            handle.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, tuple)) else value
        for name, index in splits.items():
            write_split_index(handle, name, index, pool, feature_shape, dtype)


def repair_hint(path: Path) -> str:
    return (
        f"Rerun featurize (`dvc repro`) to recompute the damaged rows, or restore the store from DVC "
        f"(`dvc checkout {path.parent}` / `dvc pull`)."
    )


def unreadable_index(path: Path, err: BaseException) -> StoreError:
    return StoreError(
        f"Feature store index {path} is unreadable or malformed ({type(err).__name__}: {err}). "
        f"Restore it (`dvc checkout {path}` or `dvc pull`) or rerun featurize (`dvc repro`)."
    )


@dataclass(frozen=True)
class SplitRows:
    """Where one split's rows live, as the index says: the image key, the chunk and the row in it."""

    ids: list[str]
    labels: np.ndarray
    keys: list[str]
    chunks: list[str]
    rows: np.ndarray


class FeatureStore:
    """Read access to a finished store (a str or Path). For arrays and tf.data, see pipeline.api.

    Every row it returns was checked in its chunk (read_chunk)."""

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"Feature store not found: {path}. Run `dvc repro` (the featurize stage) first.")
        self.path = path
        try:
            with h5py.File(path, "r") as handle:
                self.attrs = {key: decode_attr(value) for key, value in handle.attrs.items()}
                self.splits = [name for name in ("train", "validation", "test") if name in handle]
        except (OSError, ValueError) as err:
            raise unreadable_index(path, err) from err

    @property
    def classes(self) -> list[str]:
        return list(self.attrs["classes"])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.attrs["feature_shape"])

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The row shape the index records, or None if it records none."""
        return tuple(self.attrs["feature_shape"]) if "feature_shape" in self.attrs else None

    def missing_chunks(self) -> list[str]:
        """Chunk files the index points to that are not on disk (e.g. not pulled yet)."""
        folder = chunk_folder(self.path)
        names = {name for split in self.splits for name in self.split_rows(split).chunks}
        return sorted(name for name in names if not (folder / name).is_file())

    def split_rows(self, name: str) -> SplitRows:
        """What the index lists for one split; a malformed index is a StoreError naming the file."""
        if name not in self.splits:
            raise StoreError(f"{self.path} has no split {name!r}; it has {self.splits}.")
        try:
            with h5py.File(self.path, "r") as handle:
                group = handle[name]
                rows = SplitRows(
                    ids=read_strings(group["ids"]),
                    labels=group["labels"][...],
                    keys=read_strings(group["keys"]),
                    chunks=read_strings(group["chunk"]),
                    rows=group["row"][...].astype(np.int64),
                )
        except (OSError, KeyError, ValueError, TypeError) as err:
            raise unreadable_index(self.path, err) from err
        lengths = {len(rows.ids), len(rows.labels), len(rows.keys), len(rows.chunks), len(rows.rows)}
        if len(lengths) != 1:
            raise unreadable_index(
                self.path, ValueError(f"split {name!r}: ids, labels, keys, chunk, row differ in length")
            )
        return rows

    def keys(self, name: str) -> list[str]:
        """The content keys (sha256 of each image file) of one split, row for row."""
        return self.split_rows(name).keys

    def split(self, name: str) -> SplitData:
        """Load one split fully into memory (features as float32), each chunk checked as it is read.

        A chunk that is missing, damaged, or whose key beside a row is not the key the index lists for
        that row, stops the read with a StoreError naming the chunk and the fix: no wrong row is served.
        """
        index = self.split_rows(name)
        self.check_chunks_present()
        features = np.empty((len(index.keys), *self.feature_shape), dtype=np.float32)
        for chunk, positions in rows_by_chunk(index.chunks).items():
            self.read_rows(chunk, index, positions, features)
        return SplitData(features=features, labels=index.labels, ids=index.ids)

    def check_chunks_present(self) -> None:
        missing = self.missing_chunks()
        if missing:
            raise StoreError(
                f"{self.path} points to {len(missing)} chunk file(s) missing from {chunk_folder(self.path)}, "
                f"e.g. {missing[0]}. Run `dvc pull` (or `dvc repro` to recompute them)."
            )

    def pooled(self, name: str, pooling: str) -> SplitData:
        """One split's rows pooled to (N, d) float32 by `pooling` (avg or max), read from the pooled view.

        Each chunk's view is checked as the chunks are (fletcher32, recipe, keys against the index); a chunk
        without a view (a store featurized before views existed) is pooled from its maps, one chunk at a time.
        Memory is the pooled rows plus at most one chunk.
        """
        if pooling not in VIEW_POOLINGS:
            raise StoreError(f"The pooled view holds {VIEW_POOLINGS}. Received: pooling={pooling!r}")
        index = self.split_rows(name)
        width = view_width(self.feature_shape)
        rows = np.empty((len(index.keys), width), dtype=np.float32)
        for chunk, positions in rows_by_chunk(index.chunks).items():
            self.read_pooled_rows(chunk, index, positions, pooling, rows)
        return SplitData(features=rows, labels=index.labels, ids=index.ids)

    def read_pooled_rows(
        self, chunk: str, index: SplitRows, positions: np.ndarray, pooling: str, out: np.ndarray
    ) -> None:
        """Put `chunk`'s pooled rows at the split's `positions` into `out`, from its view if it has one."""
        view = chunk_folder(self.path) / view_name(chunk)
        if view.is_file():
            try:
                data = read_view(view, self.attrs.get("fingerprint", ""), pooling, out.shape[1])
            except ChunkError as err:
                raise StoreError(f"Damaged pooled view {view}: {err.problem}. {repair_hint(self.path)}") from err
            keys, pooled = data.keys, data.rows
        else:
            self.check_chunks_present()
            view = chunk_folder(self.path) / chunk
            maps = self.read_chunk(view)
            keys, pooled = maps.keys, pool_rows(maps.features, pooling)
        self.check_identity(view, keys, index, positions)
        out[positions] = pooled[index.rows[positions]]

    def read_rows(self, chunk: str, index: SplitRows, positions: np.ndarray, out: np.ndarray) -> None:
        """Put the rows of `chunk` at the split's `positions` into `out`, after checking the chunk and each
        row's key. A chunk whose rows the split uses whole and in order is read straight into `out`."""
        path = chunk_folder(self.path) / chunk
        rows = index.rows[positions]
        start, stop = int(positions[0]), int(positions[-1]) + 1
        whole = stop - start == len(positions) and np.array_equal(rows, np.arange(len(rows)))
        target = out[start:stop] if whole else None
        data = self.read_chunk(path, target)
        self.check_identity(path, data.keys, index, positions)
        if data.features is not target:  # not read in place: copy the rows the split uses
            out[positions] = data.features[rows]

    def read_chunk(self, path: Path, out: np.ndarray | None = None, part: slice | None = None) -> ChunkData:
        """One chunk of this store (or its rows `part`), checked against its recipe (read_chunk); damage is a
        StoreError."""
        try:
            return read_chunk(
                path, self.attrs.get("fingerprint", ""), self.attrs.get("storage_dtype"), self.shape, out=out, part=part
            )
        except ChunkError as err:
            raise StoreError(f"Damaged chunk {path}: {err.problem}. {repair_hint(self.path)}") from err

    def check_identity(self, path: Path, keys: list[str], index: SplitRows, positions: np.ndarray) -> None:
        """The file holds, at each row the index points to, the image the index lists there."""
        rows = index.rows[positions]
        if rows.min() < 0 or rows.max() >= len(keys):
            raise StoreError(f"{self.path} points past the end of {path}. {repair_hint(self.path)}")
        wrong = [int(p) for p, row in zip(positions, rows.tolist(), strict=True) if keys[row] != index.keys[p]]
        if wrong:
            raise StoreError(
                f"{'Chunk' if path.name.startswith('chunk-') else 'Pooled view'} {path} holds other images than the "
                f"index lists ({len(wrong)} row(s), e.g. {index.ids[wrong[0]]}). {repair_hint(self.path)}"
            )


def rows_by_chunk(chunks: list[str]) -> dict[str, np.ndarray]:
    """Positions in the split of the rows each chunk holds."""
    positions: dict[str, list[int]] = {}
    for position, chunk in enumerate(chunks):
        positions.setdefault(chunk, []).append(position)
    return {chunk: np.asarray(found, dtype=np.int64) for chunk, found in positions.items()}


def check_weights(recorded: dict[str, Any], weights: ResolvedWeights, made: str, fix: str) -> None:
    """The one "do these weights match the store?" check: `recorded` (a store's attrs or a recipe) names the
    weights_sha256 the features were made with; `made` says what (a store path, the driver), `fix` what to do."""
    if weights.fingerprint_id != recorded.get("weights_sha256"):
        raise StoreError(
            f"The {recorded.get('backbone', '')} weights here ({weights.identifier}, {weights.fingerprint_id[:12]}) "
            f"are not those that made {made} ({recorded.get('weights')}, {str(recorded.get('weights_sha256'))[:12]}). "
            f"{fix}"
        )


def decode_attr(value: Any) -> Any:
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
    folder = chunk_folder(path)
    chunk_files = sorted(folder.glob("chunk-*.h5")) if folder.is_dir() else []
    size = path.stat().st_size + sum(p.stat().st_size for p in chunk_files)
    lines = [f"store: {path} (+ {len(chunk_files)} chunk files in {folder}, {size / 1e6:.1f} MB in all)"]
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
        "fingerprint",
        "device",
        "versions",
    ):
        if key in store.attrs:
            lines.append(f"  {key}: {store.attrs[key]}")
    referenced = 0
    with h5py.File(path, "r") as handle:
        for split in store.splits:
            features = handle[split]["features"]
            referenced += features.shape[0]
            lines.append(f"  {split}: {features.shape[0]} rows, features {features.shape[1:]} {features.dtype}")
    pooled, unreadable = 0, []
    for chunk in chunk_files:
        try:
            with h5py.File(chunk, "r") as handle:
                pooled += handle["keys"].shape[0]
        except (OSError, KeyError) as err:
            unreadable.append(f"{chunk.name} ({type(err).__name__})")
    lines.append(f"  chunk rows: {pooled} ({max(pooled - referenced, 0)} not used by any split)")
    views = sum((folder / view_name(chunk.name)).is_file() for chunk in chunk_files)
    lines.append(f"  pooled views (avg, max): {views} of {len(chunk_files)} chunks (featurize rebuilds missing ones)")
    if unreadable:
        lines.append(f"  UNREADABLE: {', '.join(unreadable)} (run `store verify`, then featurize to recompute)")
    missing = store.missing_chunks()
    if missing:
        lines.append(f"  MISSING: {len(missing)} chunk file(s) (run `dvc pull`)")
    return "\n".join(lines)
