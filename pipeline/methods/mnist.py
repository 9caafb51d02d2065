"""Method mnist: the book's introductory convnet on MNIST digits (about 99% test accuracy after 5 epochs on
the 60,000 training digits). Data: `keras.datasets.mnist` (a download), or a folder of IDX files: train-* and
t10k-*, or t10k-* alone, then split into the first digits for training and the last `holdout` for test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.backbones import sha256_of
from pipeline.core.config import Config
from pipeline.core.errors import ConfigError, IdxError, MissingInputError
from pipeline.reporting.metrics import score, write_test_metrics
from pipeline.training.common import MethodReport, check_positive, fit, method_dirs, save_model
from pipeline.training.idx import read_idx

CLASSES = [str(digit) for digit in range(10)]
SIDE = 28
STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass
class Digits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: dict[str, str]  # what the digits came from (files and their sha256)


def build_mnist_model() -> keras.Model:
    """Conv2D(32) -> MaxPool -> Conv2D(64) -> MaxPool -> Conv2D(64) -> Flatten -> Dense(64) -> Dense(10, softmax):
    93,322 parameters."""
    return keras.Sequential(
        [
            keras.Input((SIDE, SIDE, 1), name="digit"),
            keras.layers.Conv2D(32, 3, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            keras.layers.Conv2D(64, 3, activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool2"),
            keras.layers.Conv2D(64, 3, activation="relu", name="conv3"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(64, activation="relu", name="dense"),
            keras.layers.Dense(10, activation="softmax", name="predictions"),
        ],
        name="mnist_convnet",
    )


def find_file(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Digits (N, 28, 28) uint8 and labels (N,) in 0..9, checked against each other."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or images.dtype != np.uint8:
        raise IdxError(f"{images_path}: expected (N, 28, 28) unsigned bytes, found {images.shape} {images.dtype}.")
    if labels.ndim != 1 or labels.dtype != np.uint8 or (labels.size and labels.max() > 9):
        raise IdxError(f"{labels_path}: expected N labels 0-9 as unsigned bytes, found {labels.shape} {labels.dtype}.")
    if len(images) != len(labels):
        raise IdxError(f"{images_path} holds {len(images)} digits but {labels_path} {len(labels)} labels.")
    return images, labels


def load_digits(source: str, holdout: int) -> Digits:
    """The training and test digits from `source` (see the module doc)."""
    if source == "keras":
        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        except Exception as err:  # noqa: BLE001 - any failure to download means the same thing here
            raise MissingInputError(
                f"keras.datasets.mnist could not be loaded ({type(err).__name__}: {err}). Offline, set "
                "methods.mnist.source to a folder of MNIST IDX files (t10k-images-idx3-ubyte.gz, ...)."
            ) from err
        return Digits(x_train, y_train, x_test, y_test, {"source": "keras.datasets.mnist"})
    folder = Path(source)
    if not folder.is_dir():
        raise MissingInputError(f"methods.mnist.source: no folder {folder} (and not 'keras').")
    found = {key: [find_file(folder, stem) for stem in stems] for key, stems in STEMS.items()}
    if None in found["t10k"]:
        raise MissingInputError(f"{folder} lacks the MNIST test files {STEMS['t10k']} (.gz or not).")
    x_test, y_test = read_pair(*found["t10k"])
    files = [path for paths in found.values() for path in paths if path is not None]
    described = {str(path): sha256_of(path) for path in files}
    if None not in found["train"]:
        return Digits(*read_pair(*found["train"]), x_test, y_test, described)
    if not 0 < holdout < len(x_test):
        raise ConfigError(f"methods.mnist.holdout must be in 1..{len(x_test) - 1}. Received: holdout={holdout}")
    cut = len(x_test) - holdout
    return Digits(x_test[:cut], y_test[:cut], x_test[cut:], y_test[cut:], described | {"holdout": str(holdout)})


def as_inputs(images: np.ndarray) -> np.ndarray:
    return (images.astype("float32") / 255.0).reshape(-1, SIDE, SIDE, 1)


def run(config: Config, seed: int) -> MethodReport:
    params = config.methods.mnist
    check_positive("methods.mnist", epochs=params.epochs, batch_size=params.batch_size)
    digits = load_digits(params.source, params.holdout)
    x_train, y_train = digits.x_train, digits.y_train
    if params.train_limit:
        check_positive("methods.mnist", train_limit=params.train_limit)
        x_train, y_train = x_train[: params.train_limit], y_train[: params.train_limit]
    keras.utils.set_random_seed(seed)
    model = build_mnist_model()
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    train = tf.data.Dataset.from_tensor_slices((as_inputs(x_train), keras.utils.to_categorical(y_train, 10)))
    train = train.shuffle(len(x_train), seed=seed).batch(params.batch_size)
    dirs = method_dirs(config.paths, "mnist", seed)
    seconds = fit(model, train, None, params.epochs, 0, dirs.curves, f"mnist {seed}")
    result = score(model.predict(as_inputs(digits.x_test), verbose=0), digits.y_test.astype(np.int64), 10)
    extra = {"train_seconds": round(seconds, 1), "epochs": params.epochs, "train_images": len(x_train)}
    write_test_metrics(result, digits.y_test.astype(np.int64), CLASSES, dirs.metrics, extra)
    save_model(model, dirs.model, {"method": "mnist", "classes": CLASSES, "seed": seed, "data": digits.source})
    return MethodReport(
        "mnist", str(seed), result.accuracy, result.loss, seconds, model.count_params(), model.count_params()
    )
