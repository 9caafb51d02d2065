"""Method augmented_features: K augmented passes of the TRAINING images through the frozen conv base, stored
beside the plain feature store as `features/<backbone>.aug.h5`, so cheap heads can train on augmented
features without running the base every epoch (what end_to_end does).

The file holds one group `train` with the schema of a store's split group (`features`, `labels`, `ids`: the
manifest paths) plus `pass_index`; its attributes name the backbone, weights, input size, the augmentation
and the number of passes. It is checked against the plain store (same weights, input size, classes), written
under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

from pipeline.augmentation import augmenter
from pipeline.backbones import get_backbone
from pipeline.chunks import read_strings
from pipeline.config import Config
from pipeline.methods.common import check_positive, image_dataset, read_split
from pipeline.store import FeatureStore, StoreError, decode_attr

STRING = h5py.string_dtype("utf-8")
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


def write_augmented_features(config: Config, backbone: str) -> Path:
    """Run K augmented passes over the training images and write them; returns the file's path."""
    params = config.methods.augmented_features
    check_positive("methods.augmented_features", passes=params.passes, batch_size=params.batch_size)
    plain = FeatureStore(config.paths.store(backbone))
    spec = get_backbone(backbone)
    weights = spec.resolve_weights(config.backbone(backbone).weights)
    same = (
        plain.attrs.get("weights") == "none"
        if weights.is_random
        else weights.sha256 == plain.attrs.get("weights_sha256")
    )
    if not same:
        raise StoreError(
            f"{plain.path} was made with other {backbone} weights ({plain.attrs.get('weights')}) than params give "
            f"({weights.identifier}). Run `dvc repro featurize@{backbone}` first."
        )
    train = read_split(config.paths.split, "train")
    if train.classes != plain.classes:
        raise StoreError(f"{plain.path} has classes {plain.classes}, the split {train.classes}. Re-run featurize.")
    size, resize = int(plain.attrs["input_size"]), str(plain.attrs["resize"])
    precision = plain.attrs.get("precision")  # compute like the plain store did, where it records how
    base = spec.inference_base(size, weights, precision) if precision else spec.inference_base(size, weights)
    infer = tf.function(lambda x: tf.cast(base(x, training=False), tf.float32))
    tf.keras.utils.set_random_seed(config.methods.seed)
    augment = augmenter(config.methods.augmentation, config.methods.seed)
    feature_shape = tuple(int(d) for d in base.output.shape[1:])
    count, rows = len(train.paths), len(train.paths) * params.passes
    path = augmented_path(config.paths.features, backbone)
    tmp = path.with_name(path.name + ".partial")
    attrs = {
        "backbone": backbone,
        "weights": weights.identifier,
        "weights_sha256": plain.attrs.get("weights_sha256", weights.sha256),
        "input_size": size,
        "resize": resize,
        "preprocessing": spec.preprocessing,
        "precision": precision or "float32",
        "default_pooling": spec.default_pooling,
        "classes": train.classes,
        "feature_shape": list(feature_shape),
        "passes": params.passes,
        "augmentation": asdict(config.methods.augmentation),
        "seed": config.methods.seed,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with h5py.File(tmp, "w") as handle:
            for key, value in attrs.items():
                handle.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
            group = handle.create_group(GROUP)
            group.create_dataset("ids", data=np.array(train.ids * params.passes, dtype=object), dtype=STRING)
            group.create_dataset("labels", data=np.tile(train.labels, params.passes))
            group.create_dataset("pass_index", data=np.repeat(np.arange(params.passes), count))
            target = group.create_dataset(
                "features", (rows, *feature_shape), dtype=plain.attrs.get("storage_dtype", "float32")
            )
            row = 0
            for _ in range(params.passes):
                batches = image_dataset(train, size, resize, params.batch_size, spec.preprocess, augment=augment)
                for images, _labels in batches:
                    features = infer(images).numpy()
                    target[row : row + len(features)] = features
                    row += len(features)
            if row != rows:
                raise RuntimeError(f"Wrote {row} augmented rows, expected {rows}.")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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
