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
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

from pipeline.backbones import get_backbone
from pipeline.core.atomic import atomic_file
from pipeline.core.config import Config
from pipeline.core.errors import StoreError
from pipeline.images.augmentation import augmenter
from pipeline.store.chunks import STRING
from pipeline.store.index import FeatureStore, check_weights
from pipeline.training.augmented_store import GROUP, augmented_path
from pipeline.training.common import check_positive, image_dataset, read_split


def write_augmented_features(config: Config, backbone: str) -> Path:
    """Run K augmented passes over the training images and write them; returns the file's path."""
    params = config.methods.augmented_features
    check_positive("methods.augmented_features", passes=params.passes, batch_size=params.batch_size)
    plain = FeatureStore(config.paths.store(backbone))
    spec = get_backbone(backbone)
    weights = spec.resolve_weights(config.backbone(backbone).weights)
    check_weights(plain.attrs, weights, str(plain.path), f"Run `dvc repro featurize@{backbone}` first.")
    train = read_split(config.paths.split, "train")
    if train.classes != plain.classes:
        raise StoreError(f"{plain.path} has classes {plain.classes}, the split {train.classes}. Re-run featurize.")
    size, resize = int(plain.attrs["input_size"]), str(plain.attrs["resize"])
    precision = plain.attrs.get("precision")  # compute like the plain store did, where it records how
    mirror = bool(plain.attrs.get("mirror", False))  # rows comparable with the plain store's
    base = spec.inference_base(size, weights, precision or "float32", mirror)
    infer = tf.function(lambda x: tf.cast(base(x, training=False), tf.float32))
    tf.keras.utils.set_random_seed(config.methods.seed)
    augment = augmenter(config.methods.augmentation, config.methods.seed)
    feature_shape = tuple(int(d) for d in base.output.shape[1:])
    count, rows = len(train.paths), len(train.paths) * params.passes
    path = augmented_path(config.paths.features, backbone)
    attrs = {
        "backbone": backbone,
        "weights": weights.identifier,
        "weights_sha256": plain.attrs.get("weights_sha256", weights.sha256),
        "input_size": size,
        "resize": resize,
        "preprocessing": spec.preprocessing.as_dict(),
        "precision": precision or "float32",
        **({"mirror": True} if mirror else {}),
        "default_pooling": spec.default_pooling,
        "classes": train.classes,
        "feature_shape": list(feature_shape),
        "passes": params.passes,
        "augmentation": asdict(config.methods.augmentation),
        "seed": config.methods.seed,
    }
    with atomic_file(path) as tmp, h5py.File(tmp, "w") as handle:
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
    return path
