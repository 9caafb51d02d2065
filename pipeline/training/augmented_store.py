"""The augmented feature file `features/<backbone>.aug.h5`: one group `train` with the schema of a store's split
group (`features`, `labels`, `ids`: the manifest paths) plus `pass_index`; its attributes name the backbone,
weights, input size, the augmentation and the number of passes. Written by augmented_features, read by
augmented_heads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.core.errors import StoreError
from pipeline.store.chunks import read_strings
from pipeline.store.index import decode_attr

GROUP = "train"


@dataclass
class AugmentedRows:
    features: np.ndarray
    labels: np.ndarray
    ids: list[str]
    pass_index: np.ndarray
    attrs: dict


def augmented_path(features_dir: Path, backbone: str) -> Path:
    return features_dir / f"{backbone}.aug.h5"


def read_augmented(path: Path) -> AugmentedRows:
    """The augmented rows and the file's attributes; errors name the file and what is missing."""
    if not path.is_file():
        raise StoreError(f"Augmented features not found: {path}. Run `dvc repro augmented_features@<backbone>`.")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise StoreError(f"{path} is not a readable HDF5 file ({err}). Re-run its augmented_features stage.") from err
    with handle:
        missing = [key for key in ("features", "labels", "ids", "pass_index") if f"{GROUP}/{key}" not in handle]
        if missing:
            raise StoreError(f"{path} is not an augmented feature file: group '{GROUP}' lacks {missing}.")
        attrs = {key: decode_attr(value) for key, value in handle.attrs.items()}
        group = handle[GROUP]
        ids = read_strings(group["ids"])
        features = group["features"][...].astype(np.float32, copy=False)
        return AugmentedRows(features, group["labels"][...], ids, group["pass_index"][...], attrs)
