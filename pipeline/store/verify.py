"""`store verify`: check a feature store against its schema, the manifest, its checksums and its rows' identity."""

from __future__ import annotations

from pathlib import Path

import h5py

from pipeline.core.errors import ChunkError, StoreError
from pipeline.store.chunks import read_chunk, read_strings
from pipeline.store.index import FeatureStore, chunk_folder
from pipeline.store.manifest import classes_of, read_manifest
from pipeline.store.views import read_view, view_name, view_width

REQUIRED_ATTRS = ("backbone", "weights", "weights_sha256", "input_size", "fingerprint", "feature_shape", "classes")
SPLIT_DATASETS = ("features", "labels", "ids", "keys", "chunk", "row")


def check_schema(store: FeatureStore, handle: h5py.File) -> list[str]:
    problems = [f"missing attribute '{key}'" for key in REQUIRED_ATTRS if key not in store.attrs]
    for split in store.splits:
        group = handle[split]
        absent = [name for name in SPLIT_DATASETS if name not in group]
        if absent:
            problems.append(f"{split}: missing dataset(s) {absent}")
            continue
        lengths = {name: group[name].shape[0] for name in SPLIT_DATASETS}
        if len(set(lengths.values())) != 1:
            problems.append(f"{split}: datasets disagree on the row count {lengths}")
        if "feature_shape" in store.attrs and list(group["features"].shape[1:]) != list(store.attrs["feature_shape"]):
            problems.append(f"{split}: features {group['features'].shape[1:]} != feature_shape attribute")
    return problems


def check_manifest(store: FeatureStore, handle: h5py.File, manifest: Path) -> list[str]:
    """The store lists exactly the manifest's images, in its order, with its labels and content hashes."""
    rows = read_manifest(manifest)
    problems = []
    if store.attrs.get("classes") != classes_of(rows):
        problems.append(f"classes {store.attrs.get('classes')} != manifest classes {classes_of(rows)}")
    for split in ("train", "validation", "test"):
        expected = [row for row in rows if row.split == split]
        if split not in store.splits:
            problems.append(f"{split}: missing from the store ({len(expected)} images in the manifest)")
            continue
        ids, keys = read_strings(handle[split]["ids"]), read_strings(handle[split]["keys"])
        if ids != [row.path for row in expected]:
            extra, absent = set(ids) - {r.path for r in expected}, {r.path for r in expected} - set(ids)
            problems.append(
                f"{split}: ids differ from the manifest ({len(absent)} absent, {len(extra)} extra, or another order)"
            )
        elif keys != [row.sha256 for row in expected]:
            changed = sum(a != b for a, b in zip(keys, (row.sha256 for row in expected), strict=True))
            problems.append(f"{split}: {changed} image(s) changed content since featurized")
    return problems


def check_rows(store: FeatureStore) -> list[str]:
    """Every chunk the index uses is present and sound (read_chunk with its sha256), and holds, at each row
    the index points to, the image the index lists there (identity, not just integrity)."""
    folder = chunk_folder(store.path)
    missing = store.missing_chunks()
    problems = [f"chunk file missing: {folder / name}" for name in missing]
    expected = expected_keys(store)
    for name in sorted(set(expected) - set(missing)):
        try:
            chunk = read_chunk(
                folder / name,
                store.attrs.get("fingerprint", ""),
                store.attrs.get("storage_dtype"),
                store.feature_shape,
                checksum=True,
            )
        except ChunkError as err:
            problems.append(f"{name}: {err.problem}")
            continue
        wrong = [(split, row) for split, row, key in expected[name] if row >= len(chunk.keys) or chunk.keys[row] != key]
        if wrong:
            split, row = wrong[0]
            problems.append(
                f"{name}: {len(wrong)} row(s) hold other images than the index lists (e.g. {split} row {row})"
            )
        problems += check_view(store, folder / view_name(name), chunk.keys)
    return problems


def check_view(store: FeatureStore, path: Path, keys: list[str]) -> list[str]:
    """A chunk's pooled view, if it has one, is sound (read_view with its sha256) and lists the chunk's keys.
    A missing view is no problem: readers pool the chunk, and featurize rebuilds the view."""
    if not path.is_file():
        return []
    try:
        view = read_view(path, store.attrs.get("fingerprint", ""), "avg", view_width(store.feature_shape), True)
    except ChunkError as err:
        return [f"{path.name}: {err.problem}"]
    return [] if view.keys == keys else [f"{path.name}: lists other images than its chunk"]


def expected_keys(store: FeatureStore) -> dict[str, list[tuple[str, int, str]]]:
    """Per chunk: (split, row in the chunk, the key the index lists for it)."""
    expected: dict[str, list[tuple[str, int, str]]] = {}
    for split in store.splits:
        index = store.split_rows(split)
        for chunk, row, key in zip(index.chunks, index.rows.tolist(), index.keys, strict=True):
            expected.setdefault(chunk, []).append((split, row, key))
    return expected


def verify(store_path: Path, manifest: Path | None) -> list[str]:
    """All problems found, as readable lines; an empty list means the store is sound."""
    try:
        store = FeatureStore(store_path)
        with h5py.File(store_path, "r") as handle:
            problems = check_schema(store, handle)
            if problems:
                return problems
            if manifest is not None:
                problems += check_manifest(store, handle, manifest)
        return problems + check_rows(store)
    except (StoreError, OSError, KeyError, ValueError) as err:
        return [str(err)]
