"""`store verify`: check a feature store against its schema, the manifest and its recorded checksums."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from pipeline.chunks import read_strings, verify_chunk
from pipeline.errors import StoreError
from pipeline.manifest import classes_of, read_manifest
from pipeline.store import FeatureStore, chunk_folder

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


def check_rows(store: FeatureStore, handle: h5py.File) -> list[str]:
    """Every row is present (its chunk exists) and finite, and every chunk matches its checksum."""
    folder = chunk_folder(store.path)
    missing = store.missing_chunks()
    problems = [f"chunk file missing: {folder / name}" for name in missing]
    used = sorted({c for split in store.splits for c in read_strings(handle[split]["chunk"])} - set(missing))
    for name in used:
        problems += verify_chunk(folder / name, store.attrs.get("fingerprint", ""))
    if not missing:
        for split in store.splits:
            features = handle[split]["features"]
            for start in range(0, features.shape[0], 1024):
                block = features[start : start + 1024]
                bad = int((~np.isfinite(block.reshape(len(block), -1))).any(axis=1).sum())
                if bad:
                    problems.append(f"{split}: {bad} row(s) from {start} are not finite (missing or corrupt)")
    return problems


def verify(store_path: Path, manifest: Path | None) -> list[str]:
    """All problems found, as readable lines; an empty list means the store is sound."""
    try:
        store = FeatureStore(store_path)
    except (StoreError, OSError) as err:
        return [str(err)]
    with h5py.File(store_path, "r") as handle:
        problems = check_schema(store, handle)
        if problems:
            return problems
        if manifest is not None:
            problems += check_manifest(store, handle, manifest)
        problems += check_rows(store, handle)
    return problems
