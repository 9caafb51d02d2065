"""What the methods share: images from the split folders as tf.data (optionally augmented like the book's
ImageDataGenerator), training with dvclive curves, test scoring, and models saved as `.keras` + a JSON sidecar."""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pipeline.backbones import get_backbone
from pipeline.core.config import SPLITS, Paths
from pipeline.core.errors import ConfigError, InputError, ManifestError, MissingInputError
from pipeline.heads.dense import to_two_columns
from pipeline.images.decode import check_resize, decode_and_resize
from pipeline.reporting.curve_plots import CurveRecorder
from pipeline.reporting.curves import LiveCurves
from pipeline.reporting.metrics import Evaluation, live_dir, score, write_test_metrics
from pipeline.store.manifest import classes_of, read_manifest

MODEL_FILE = "model.keras"
INFO_FILE = "model.json"
FIGURES = "figures"  # the curves as PNGs, beside dvclive's files
IN_MODEL = "in-model"  # the model scales its [0, 255] pixel input itself (the scratch convnets' Rescaling)


@dataclass(frozen=True)
class MethodDirs:
    model: Path
    curves: Path
    metrics: Path


def method_dirs(paths: Paths, method: str, run: str | int) -> MethodDirs:
    """models/methods/<method>/<run>/, dvclive/methods/<method>/<run>/, metrics/methods/<method>/<run>/."""
    return MethodDirs(*(root / "methods" / method / str(run) for root in (paths.models, paths.curves, paths.metrics)))


@dataclass(frozen=True)
class ImageSplit:
    paths: list[str]  # the image files
    labels: np.ndarray
    classes: list[str]
    ids: list[str]  # the manifest paths, as the feature store's ids


def read_split(split_dir: Path, split: str) -> ImageSplit:
    """One split's image files and labels from the split stage's manifest (labels: index in sorted classes)."""
    manifest = split_dir / "manifest.csv"
    rows = read_manifest(manifest)
    classes = classes_of(rows)
    members = [row for row in rows if row.split == split]
    if not members:
        raise ManifestError(f"{manifest} lists no '{split}' images. Re-run the split stage (`dvc repro split`).")
    missing = [row.path for row in members if not (split_dir / row.path).is_file()]
    if missing:
        raise MissingInputError(f"{len(missing)} image(s) in {manifest} are missing, e.g. {missing[:3]}. Re-run split.")
    labels = np.array([classes.index(row.cls) for row in members], dtype=np.int64)
    ids = [row.path for row in members]
    return ImageSplit([str(split_dir / path) for path in ids], labels, classes, ids)


def check_positive(where: str, **values: Any) -> None:
    """Refuse non-positive or non-integer counts with the params key in the message."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}.{key}: received {value!r}; allowed: an integer >= 1")


def decode_images(split: ImageSplit, size: int, resize: str) -> np.ndarray:
    """Every image of a split decoded and resized once, in manifest order: uint8 (N, size, size, 3) in memory
    (the book's 2,000 training images at 150 px: 135 MB), so no epoch reads or decodes a file again."""
    check_resize(resize, "methods.resize")
    files = tf.data.Dataset.from_tensor_slices(tf.constant(split.paths))
    decoded = files.map(lambda p: decode_and_resize(p, size, resize), num_parallel_calls=tf.data.AUTOTUNE).batch(256)
    batches = [tf.cast(tf.round(tf.clip_by_value(batch, 0, 255)), tf.uint8).numpy() for batch in decoded]
    return np.concatenate(batches) if batches else np.zeros((0, size, size, 3), np.uint8)


def image_dataset(
    split: ImageSplit,
    size: int,
    resize: str,
    batch_size: int,
    preprocess,
    augment=None,
    shuffle_seed: int | None = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """(images, labels) batches from the split decoded once into memory; shuffling moves indices, not pixels;
    augmentation (one warp per batch, on [0, 255] floats) before preprocessing."""
    pixels, labels = tf.constant(decode_images(split, size, resize)), tf.constant(split.labels)
    order = tf.data.Dataset.range(len(split.paths))
    if shuffle_seed is not None:
        order = order.shuffle(len(split.paths), seed=shuffle_seed, reshuffle_each_iteration=True)
    if repeat:
        order = order.repeat()

    def gather(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(tf.gather(pixels, index), tf.float32), tf.gather(labels, index)

    dataset = order.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.map(lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def preprocessor(name: str):
    """None for a model that scales pixels itself, else a backbone's preprocessing (the name beside the model)."""
    if name == IN_MODEL:
        return lambda x: x
    return get_backbone(name).preprocess


def classifier(n_classes: int, name: str = "predictions") -> keras.layers.Dense:
    """The book's output: one sigmoid unit for two classes, else a softmax over the classes; float32 even in a
    mixed-precision model, so probabilities and the loss keep full precision."""
    if n_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", name=name, dtype="float32")
    return keras.layers.Dense(n_classes, activation="softmax", name=name, dtype="float32")


def compile_model(model: keras.Model, learning_rate: float, n_classes: int) -> None:
    loss = "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate), loss=loss, metrics=["accuracy"])


def fit(
    model: keras.Model, train, validation, epochs: int, steps_per_epoch: int, curves_dir: Path, title: str
) -> float:
    """Train with the book's curves logged to dvclive (one step per epoch) and drawn as the book's figures,
    train and validation on one set of axes: curves_dir/figures/{accuracy,loss}.png. Returns the seconds."""
    start = time.perf_counter()
    figures = CurveRecorder()
    with live_dir(curves_dir) as live:
        model.fit(
            train,
            validation_data=validation,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch or None,
            callbacks=[LiveCurves(live, figures)],
            verbose=2,
        )
        seconds = time.perf_counter() - start
        live.summary["train_seconds"] = round(seconds, 3)
    figures.write(curves_dir / FIGURES, title, tables=False)
    return seconds


def steps(count: int, batch_size: int) -> int:
    return math.ceil(count / batch_size)


def evaluate_model(model: keras.Model, test, labels: np.ndarray, classes: list[str]) -> Evaluation:
    """Score a model's predictions over a (non-shuffled) test dataset."""
    return score(to_two_columns(model.predict(test, verbose=0)), labels, len(classes))


def save_model(model: keras.Model, out_dir: Path, info: dict[str, Any]) -> None:
    """out_dir/model.keras and out_dir/model.json (classes, input size, preprocessing): no pickles."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    model.save(out_dir / MODEL_FILE)
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def load_model(model_dir: Path, stage_hint: str) -> tuple[keras.Model, dict[str, Any]]:
    """A saved method model and its sidecar, loaded in safe mode (no custom objects, no lambdas)."""
    path, info_path = model_dir / MODEL_FILE, model_dir / INFO_FILE
    if not path.is_file() or not info_path.is_file():
        raise MissingInputError(f"No trained model in {model_dir} ({MODEL_FILE} + {INFO_FILE}). Run {stage_hint}.")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{info_path} is not valid JSON: {err}") from err
    return keras.saving.load_model(path, safe_mode=True), info


@dataclass(frozen=True)
class ImageInput:
    size: int
    resize: str
    preprocess: str  # IN_MODEL or a backbone name


@dataclass(frozen=True)
class MethodReport:
    method: str
    run: str
    accuracy: float
    loss: float
    seconds: float
    parameters: int
    trainable: int


def read_splits(split_dir: Path) -> dict[str, ImageSplit]:
    return {name: read_split(split_dir, name) for name in SPLITS}


def trainable_count(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def run_image_method(
    model: keras.Model,
    method: str,
    run: str | int,
    paths: Paths,
    splits: dict[str, ImageSplit],
    image_input: ImageInput,
    training: Any,
    seed: int,
    augment=None,
    info: dict[str, Any] | None = None,
) -> MethodReport:
    """Train a compiled model on the train images (validation for the curves), score it on the test images,
    write metrics and curves, save it. `training` has epochs, batch_size and steps_per_epoch (0: one pass)."""
    where = f"methods.{method}"
    check_positive(where, epochs=training.epochs, batch_size=training.batch_size)
    if training.steps_per_epoch:
        check_positive(where, steps_per_epoch=training.steps_per_epoch)
    prep = preprocessor(image_input.preprocess)

    def dataset(split: ImageSplit, **kwargs: Any) -> tf.data.Dataset:
        return image_dataset(split, image_input.size, image_input.resize, training.batch_size, prep, **kwargs)

    train = dataset(splits["train"], augment=augment, shuffle_seed=seed, repeat=bool(training.steps_per_epoch))
    dirs = method_dirs(paths, method, run)
    title = f"{method} {run}"
    seconds = fit(
        model, train, dataset(splits["validation"]), training.epochs, training.steps_per_epoch, dirs.curves, title
    )
    test = splits["test"]
    result = evaluate_model(model, dataset(test), test.labels, test.classes)
    report = MethodReport(
        method, str(run), result.accuracy, result.loss, seconds, model.count_params(), trainable_count(model)
    )
    extra = {"train_seconds": round(seconds, 1), "epochs": training.epochs, "parameters": report.parameters}
    extra["trainable_parameters"] = report.trainable
    write_test_metrics(result, test.labels, test.classes, dirs.metrics, extra)
    sidecar = {"method": method, "classes": test.classes, "input_size": image_input.size, "seed": seed}
    sidecar.update(resize=image_input.resize, preprocess=image_input.preprocess, **(info or {}))
    save_model(model, dirs.model, sidecar)
    return report
