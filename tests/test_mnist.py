"""The book's MNIST convnet on the real t10k digits, and the IDX reader's checks."""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import MNIST_DIR

from pipeline.core.config import Config, MethodsConfig, Paths
from pipeline.core.errors import IdxError
from pipeline.methods import mnist
from pipeline.training.common import load_model, method_dirs
from pipeline.training.idx import read_idx, write_idx

IMAGES = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
LABELS = MNIST_DIR / "t10k-labels-idx1-ubyte.gz"


def test_model_is_the_seeds() -> None:
    model = mnist.build_mnist_model()
    assert model.count_params() == 93_322
    assert [layer.count_params() for layer in model.layers if layer.count_params()] == [
        320,
        18_496,
        36_928,
        36_928,
        650,
    ]
    assert model.output_shape == (None, 10)


def test_reads_the_real_t10k_files() -> None:
    images, labels = mnist.read_pair(IMAGES, LABELS)
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8 and images.max() == 255
    assert list(labels[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(labels).min() > 800  # every digit is there


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_idx_round_trip(tmp_path: Path, gz: bool, dtype: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype if dtype != "uint8" else "int64").astype(dtype)
    path = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, array)


def corrupt(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "too short for an IDX header"),
        (b"PK\x03\x04rest", "not an IDX file: it starts with 0x504b0304"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX data type 0x07"),
        (b"\x00\x00\x08\x00", "declares 0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", r"shape \(5,\) \(5 bytes of data\), the file holds 2"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt or truncated gzip data"),
    ],
)
def test_bad_idx_files_are_named_with_the_problem(tmp_path: Path, data: bytes, message: str) -> None:
    path = corrupt(tmp_path, data)
    with pytest.raises(IdxError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_of_real_file(tmp_path: Path) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(LABELS.read_bytes()[:-100])
    with pytest.raises(IdxError, match="corrupt or truncated gzip"):
        read_idx(path)


def test_pairs_and_folders_are_checked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="IDX file not found"):
        read_idx(tmp_path / "missing.gz")
    labels = write_idx(tmp_path / "l.gz", np.arange(3, dtype=np.uint8))
    with pytest.raises(IdxError, match="holds 10000 digits but .* 3 labels"):
        mnist.read_pair(IMAGES, labels)
    with pytest.raises(IdxError, match=r"expected \(N, 28, 28\)"):
        mnist.read_pair(write_idx(tmp_path / "i.gz", np.zeros((3, 28, 27), np.uint8)), labels)
    with pytest.raises(IdxError, match="labels 0-9"):
        mnist.read_pair(IMAGES, write_idx(tmp_path / "l2.gz", np.full(10_000, 10, np.uint8)))
    with pytest.raises(FileNotFoundError, match="no folder"):
        mnist.load_digits(str(tmp_path / "nowhere"), 100)
    with pytest.raises(FileNotFoundError, match="lacks the MNIST test files"):
        mnist.load_digits(str(tmp_path), 100)
    with pytest.raises(ValueError, match=r"holdout must be in 1\.\.9999"):
        mnist.load_digits(str(MNIST_DIR), 10_000)


def test_folder_with_t10k_only_is_split_and_with_train_files_is_not(tmp_path: Path) -> None:
    digits = mnist.load_digits(str(MNIST_DIR), 2_500)
    assert (len(digits.x_train), len(digits.x_test)) == (7_500, 2_500)
    images, labels = mnist.read_pair(IMAGES, LABELS)
    assert np.array_equal(digits.x_test, images[7_500:]) and np.array_equal(digits.y_train, labels[:7_500])
    for path in (IMAGES, LABELS):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(gzip.decompress(IMAGES.read_bytes()))
    shutil.copy(LABELS, tmp_path / "train-labels-idx1-ubyte.gz")
    digits = mnist.load_digits(str(tmp_path), 2_500)
    assert (len(digits.x_train), len(digits.x_test)) == (10_000, 10_000)


@pytest.mark.slow
def test_trains_one_epoch_on_4000_digits_and_beats_chance(tmp_path: Path) -> None:
    methods = MethodsConfig()
    methods = replace(
        methods, mnist=replace(methods.mnist, source=str(MNIST_DIR), holdout=1_000, train_limit=4_000, epochs=1)
    )
    config = Config(
        paths=Paths(models=tmp_path / "models", metrics=tmp_path / "metrics", curves=tmp_path / "dvclive"),
        methods=methods,
    )
    report = mnist.run(config, 0)
    assert report.accuracy > 0.7 and report.parameters == 93_322  # chance: 0.1; seeds 0-2 give 0.84-0.88
    dirs = method_dirs(config.paths, "mnist", 0)
    metrics = json.loads((dirs.metrics / "metrics.json").read_text())
    assert metrics["test/images"] == 1_000 and metrics["train_images"] == 4_000
    assert metrics["test/accuracy"] == round(report.accuracy, 4)
    model, info = load_model(dirs.model, "mnist")
    assert info["data"]["holdout"] == "1000" and str(IMAGES) in info["data"]
    digits = mnist.load_digits(str(MNIST_DIR), 1_000)
    predicted = model.predict(mnist.as_inputs(digits.x_test), verbose=0).argmax(axis=1)
    assert np.isclose((predicted == digits.y_test).mean(), report.accuracy)
    curve = dirs.curves / "plots" / "metrics" / "train" / "accuracy.tsv"
    assert len(curve.read_text().splitlines()) == 2
    assert (dirs.curves / "figures" / "accuracy.png").is_file() and (dirs.curves / "figures" / "loss.png").is_file()
