"""Stage featurize: run a pretrained conv base once over every split, streaming features into HDF5."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from pipeline.backbones import BackboneSpec, ResolvedWeights, get_backbone
from pipeline.config import SPLITS, BackboneConfig, FeaturizeConfig
from pipeline.split import ManifestRow, classes_of, read_manifest
from pipeline.store import StoreWriter

RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")


@dataclass(frozen=True)
class FeaturizeReport:
    path: Path
    images: int
    seconds: float
    feature_shape: tuple[int, ...]

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else float("nan")


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
    }


def decode_and_resize(path: tf.Tensor, size: int, method: str) -> tf.Tensor:
    """File path -> float32 RGB (size, size, 3) in [0, 255]. Grayscale and RGBA become RGB."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(image, (size, size), method=method)
    return tf.ensure_shape(tf.cast(image, tf.float32), (size, size, 3))


def image_batches(paths: list[str], size: int, method: str, batch_size: int, preprocess) -> tf.data.Dataset:
    """Stream preprocessed batches from disk: parallel decode, deterministic order, prefetch."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"featurize.resize must be one of {RESIZE_METHODS}. Received: resize={method!r}")
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(paths, dtype=tf.string))
    dataset = dataset.map(
        lambda p: decode_and_resize(p, size, method), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return dataset.batch(batch_size).map(preprocess).prefetch(tf.data.AUTOTUNE)


def store_attrs(
    spec: BackboneSpec,
    weights: ResolvedWeights,
    input_size: int,
    config: FeaturizeConfig,
    classes: list[str],
    feature_shape: tuple[int, ...],
) -> dict:
    return {
        "feature_shape": list(feature_shape),
        "backbone": spec.name,
        "weights": weights.identifier,
        "weights_sha256": weights.sha256,
        "input_size": input_size,
        "preprocessing": spec.preprocessing,
        "resize": config.resize,
        "default_pooling": spec.default_pooling,
        "storage_dtype": config.storage_dtype,
        "classes": classes,
        "versions": library_versions(),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
    }


def record_weights(backbone: str, backbone_config: BackboneConfig, out_path: Path) -> ResolvedWeights:
    """Resolve a backbone's weights and write what they are (identifier, sha256) for DVC to compare."""
    weights = get_backbone(backbone).resolve_weights(backbone_config.weights)
    record = {"backbone": backbone, "weights": weights.identifier, "sha256": weights.sha256}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(record, indent=2) + "\n")
    return weights


def featurize(
    backbone: str,
    backbone_config: BackboneConfig,
    config: FeaturizeConfig,
    manifest: Path,
    out_path: Path,
) -> FeaturizeReport:
    """Compute the features of every manifest row for one backbone and write them to `out_path`."""
    spec = get_backbone(backbone)
    weights = spec.resolve_weights(backbone_config.weights)
    rows = read_manifest(manifest)
    check_images_exist(rows, manifest)
    classes = classes_of(rows)
    model = spec.conv_base(backbone_config.input_size, weights)
    infer = tf.function(lambda x: model(x, training=False))
    feature_shape = tuple(int(d) for d in model.output.shape[1:])
    writer = StoreWriter(
        out_path, store_attrs(spec, weights, backbone_config.input_size, config, classes, feature_shape)
    )
    start = time.perf_counter()
    try:
        with tqdm(total=len(rows), desc=f"featurize {backbone}", unit="img", disable=None) as bar:
            for split in SPLITS:
                members = split_rows(rows, split)
                target = writer.create_split(
                    split,
                    ids=[row.path for row in members],
                    labels=[classes.index(row.cls) for row in members],
                    feature_shape=feature_shape,
                    dtype=config.storage_dtype,
                )
                paths = [str(manifest.parent / row.path) for row in members]
                batches = image_batches(
                    paths, backbone_config.input_size, config.resize, config.batch_size, spec.preprocess
                )
                write_features(batches, infer, target, bar)
        seconds = time.perf_counter() - start
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return FeaturizeReport(out_path, len(rows), seconds, feature_shape)


def check_images_exist(rows: list[ManifestRow], manifest: Path) -> None:
    missing = [row.path for row in rows if not (manifest.parent / row.path).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) listed in {manifest} are missing, e.g. {missing[:3]}. Re-run the split stage."
        )


def write_features(batches: tf.data.Dataset, infer, target: h5py.Dataset, bar: tqdm) -> None:
    """Run the model batch by batch and write each batch's rows into `target` in order."""
    row = 0
    for batch in batches:
        features = infer(batch).numpy()
        target[row : row + len(features)] = features.astype(target.dtype, copy=False)
        row += len(features)
        bar.update(len(features))
    if row != target.shape[0]:
        raise RuntimeError(f"Wrote {row} rows but the split has {target.shape[0]} images.")


def split_rows(rows: list[ManifestRow], split: str) -> list[ManifestRow]:
    return [row for row in rows if row.split == split]
