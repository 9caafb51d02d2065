"""Each head trains on cached features, saves without pickle, and loads back to the same predictions."""

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from pipeline.heads import TrainingData, get_head


def separable(n: int, shape: tuple[int, ...], seed: int, n_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    features = rng.normal(size=(n, *shape)).astype(np.float32)
    features[..., 0] += 3.0 * labels.reshape(-1, *([1] * (len(shape) - 1)))
    features[..., 1] -= 3.0 * (labels == 2).reshape(-1, *([1] * (len(shape) - 1)))
    return features, labels


def data(n_classes: int = 2) -> TrainingData:
    x_train, y_train = separable(120, (2, 2, 8), 0, n_classes)
    x_val, y_val = separable(60, (2, 2, 8), 1, n_classes)
    return TrainingData(x_train, y_train, x_val, y_val, [f"c{i}" for i in range(n_classes)], "flatten")


PARAMS = {"dense": {"epochs": 40, "learning_rate": 1e-2, "units": 16}, "logreg": {"C": 1.0}}


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("name", ["dense", "logreg"])
def test_head_learns_saves_and_loads(name: str, n_classes: int, tmp_path: Path) -> None:
    builder = get_head(name)
    training = data(n_classes)
    head = builder.fit(training, PARAMS[name], seed=0, live=None)
    probabilities = head.predict_proba(training.x_val)
    assert probabilities.shape == (60, n_classes)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == training.y_val).mean() > 0.9
    path = tmp_path / f"head{builder.file_suffix}"
    head.save(path)
    loaded = builder.load(path)
    np.testing.assert_allclose(loaded.predict_proba(training.x_val), probabilities, rtol=1e-5, atol=1e-6)


def test_saved_heads_hold_no_pickles(tmp_path: Path) -> None:
    training = data()
    for name in ("dense", "logreg"):
        builder = get_head(name)
        path = tmp_path / f"{name}{builder.file_suffix}"
        builder.fit(training, {**PARAMS[name], "epochs": 1} if name == "dense" else PARAMS[name], 0, None).save(path)
        with zipfile.ZipFile(path) as archive:  # both .keras and .npz are zips
            for member in archive.namelist():
                assert not member.endswith((".pkl", ".pickle"))
                assert not archive.read(member).startswith(pickle.PROTO + bytes([pickle.HIGHEST_PROTOCOL]))


def test_logreg_refuses_a_pickled_npz(tmp_path: Path) -> None:
    path = tmp_path / "head.npz"
    arrays = {key: np.zeros(2) for key in ("intercept", "mean", "scale")}
    np.savez(path, coef=np.array([object()], dtype=object), meta=np.array('{"pooling": "flatten"}'), **arrays)
    with pytest.raises(ValueError, match="allow_pickle"):
        get_head("logreg").load(path)


@pytest.mark.parametrize("pooling", ["flatten", "avg"])
def test_pooling_option(pooling: str) -> None:
    head = get_head("logreg").fit(data(), {"pooling": pooling}, 0, None)
    assert head.coef.shape[1] == (32 if pooling == "flatten" else 8)


def test_unknown_head_param_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"heads\.dense\.epoch: unknown key"):
        get_head("dense").fit(data(), {"epoch": 3}, 0, None)


def test_logreg_auto_C_is_chosen_on_validation(tmp_path: Path) -> None:
    from pipeline.heads.logreg import C_GRID

    builder = get_head("logreg")
    training = data()

    def validation_accuracy(c: float) -> float:
        probabilities = builder.fit(training, {"C": c}, 0, None).predict_proba(training.x_val)
        return float((probabilities.argmax(axis=1) == training.y_val).mean())

    head = builder.fit(training, {"C": "auto"}, 0, None)
    scores = {c: validation_accuracy(c) for c in C_GRID}
    assert head.C in C_GRID and scores[head.C] == max(scores.values())
    head.save(tmp_path / "head.npz")
    assert builder.load(tmp_path / "head.npz").C == head.C
