"""The logreg head's own L-BFGS fit: it is scikit-learn's LogisticRegression (same objective, start and solver
options) on the same standardized rows, whatever the block size; with flatten pooling it streams the store's maps
once into a scratch file and fits from there, giving the head the in-memory fit gives, in memory that does not
grow with the rows; a damaged chunk stops it with the store's error, and no scratch file is left behind.

Measured tolerance: on these rows our coefficients and intercepts differ from scikit-learn 1.9's by at most a few
1e-15 relative (both run the same float64 arithmetic and take the same number of iterations); the tests allow
1e-9. Against the plain peer (StandardScaler + LogisticRegression on the raw rows: float64 rows rather than our
float32 standardized ones) they differ by about 1e-7; the tests allow 1e-5.
"""

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipeline.core.errors import InputError, StoreError
from pipeline.heads import TrainingData, get_head, load_head
from pipeline.heads import logreg as logreg_module
from pipeline.heads import row_blocks as row_blocks_module
from pipeline.heads.logistic import fit_logistic
from pipeline.heads.row_blocks import ArrayRows, standardization
from pipeline.stages.train import train, training_data
from pipeline.store.index import FeatureStore, chunk_folder
from pipeline.store.stream import MapStream
from tests.conftest import ROOT, tool_env
from tests.test_streaming import first_data_byte, write_store

TIGHT = 1e-9


def overlapping(n: int, width: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose classes overlap (a finite optimum at every C), with a constant feature and unequal scales."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % n_classes)
    rows = rng.normal(size=(n, width)) * rng.uniform(0.1, 5.0, size=width) + rng.normal(size=width)
    rows[:, :4] += 0.8 * np.eye(n_classes, 4)[labels]
    rows[:, -1] = 2.5  # constant: scale 1
    return rows.astype(np.float32), labels


def standardized_rows(x: np.ndarray) -> np.ndarray:
    """The rows the head fits on: standardized by its own statistics, as float32."""
    raw = ArrayRows(x)
    mean, scale = standardization(raw, True)
    return raw.standardized(mean, scale).rows


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("c", [0.01, 1.0, 10.0])
def test_the_fit_is_scikit_learns_logistic_regression_on_the_same_rows(n_classes: int, c: float) -> None:
    x, y = overlapping(300, 24, n_classes, seed=n_classes)
    x_val, y_val = overlapping(120, 24, n_classes, seed=10 + n_classes)
    data = TrainingData(x, y, x_val, y_val, [f"c{i}" for i in range(n_classes)], "flatten")
    head = get_head("logreg").fit(data, {"C": c, "pooling": "flatten"}, 0, None)
    rows = standardized_rows(x).astype(np.float64)
    reference = LogisticRegression(C=c, max_iter=1000).fit(rows, y)
    assert head.coef.shape == reference.coef_.shape == ((1 if n_classes == 2 else n_classes), 24)
    np.testing.assert_allclose(head.coef, reference.coef_, rtol=TIGHT, atol=TIGHT * np.abs(reference.coef_).max())
    np.testing.assert_allclose(head.intercept, reference.intercept_, rtol=TIGHT, atol=TIGHT)
    x_held = (x_val - head.mean) / head.scale
    np.testing.assert_array_equal(head.predict_proba(x_val).argmax(axis=1), reference.predict(x_held))
    np.testing.assert_allclose(head.predict_proba(x_val), reference.predict_proba(x_held), rtol=1e-6, atol=1e-9)
    # the plain peer: StandardScaler (float64) and LogisticRegression on the raw rows
    scaler = StandardScaler().fit(x)
    np.testing.assert_allclose(head.mean, scaler.mean_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(head.scale, scaler.scale_, rtol=1e-12)
    peer = LogisticRegression(C=c, max_iter=1000).fit(scaler.transform(x), y)
    np.testing.assert_allclose(head.coef, peer.coef_, rtol=1e-5, atol=1e-5 * np.abs(peer.coef_).max())
    np.testing.assert_array_equal(head.predict_proba(x_val).argmax(axis=1), peer.predict(scaler.transform(x_val)))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_block_size_does_not_change_the_fit(n_classes: int) -> None:
    x, y = overlapping(301, 16, n_classes, seed=5)
    scaler = StandardScaler().fit(x)
    for block_rows in (len(x), 7):  # the statistics, merged over blocks of 7 rows, are StandardScaler's
        mean, scale = standardization(ArrayRows(x, block_rows), True)
        np.testing.assert_allclose(mean, scaler.mean_, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(scale, scaler.scale_, rtol=1e-12)
    rows = standardized_rows(x)
    whole = fit_logistic(ArrayRows(rows, block_rows=len(rows)), y, n_classes, 1.0, 1000)
    blocks = fit_logistic(ArrayRows(rows, block_rows=7), y, n_classes, 1.0, 1000)
    assert whole.converged and blocks.converged and whole.iterations == blocks.iterations
    np.testing.assert_allclose(blocks.coef, whole.coef, rtol=TIGHT, atol=TIGHT * np.abs(whole.coef).max())
    np.testing.assert_allclose(blocks.intercept, whole.intercept, rtol=TIGHT, atol=TIGHT)
    assert abs(whole.coef).max() > 0.1  # it learned something


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    """Made-up (4, 4, 16) maps in chunks of 37 rows: chunk and block boundaries do not line up."""
    return write_store(tmp_path, {"train": 300, "validation": 90, "test": 40}, (4, 4, 16), 37)


@pytest.mark.parametrize("C", [0.1, "auto"])
def test_a_streamed_flatten_fit_is_the_in_memory_fit(
    store: Path, tmp_path: Path, C: float | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(row_blocks_module, "BLOCK_BYTES", 23 * 4 * 256)  # blocks of 23 rows
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    opened = FeatureStore(store)
    heads = {}
    for stream in (True, False):
        data = training_data(opened, pooling="flatten", stream=stream, scratch_dir=scratch)
        assert isinstance(data.x_train, MapStream) is stream
        heads[stream] = get_head("logreg").fit(data, {"C": C, "pooling": "flatten"}, 0, None)
    assert list(scratch.iterdir()) == []  # the scratch folder is gone
    for key in ("coef", "intercept", "mean", "scale"):
        np.testing.assert_array_equal(getattr(heads[True], key), getattr(heads[False], key))
    assert heads[True].C == heads[False].C
    test = opened.split("test")
    np.testing.assert_array_equal(heads[True].predict_proba(test.features), heads[False].predict_proba(test.features))
    assert float((heads[True].predict_proba(test.features).argmax(axis=1) == test.labels).mean()) > 0.7


def test_a_damaged_chunk_stops_the_streamed_fit_and_leaves_no_scratch(store: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    params = {"pooling": "flatten", "C": 0.1}
    train(store, "logreg", params, 0, models / "logreg", None)
    chunk = chunk_folder(store) / FeatureStore(store).split_rows("train").chunks[-1]
    raw = bytearray(chunk.read_bytes())
    raw[first_data_byte(chunk) + 101] ^= 0x40
    chunk.write_bytes(bytes(raw))
    fletcher32 = rf"Damaged chunk .*{chunk.name}: damaged: its fletcher32 checksum does not match"
    with pytest.raises(StoreError, match=fletcher32):
        train(store, "logreg", params, 0, models / "again", None)
    assert sorted(p.name for p in models.iterdir()) == ["logreg"]  # no .logreg-scratch-* left beside it


def test_a_streamed_fit_without_disk_room_for_its_scratch_says_so(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk with 0.1 MB free (the figure shutil reports: filling a real disk is not a test's to do)."""
    free = shutil.disk_usage(tmp_path)._replace(free=100_000)
    monkeypatch.setattr(logreg_module.shutil, "disk_usage", lambda path: free)
    models = tmp_path / "models"
    with pytest.raises(InputError) as raised:
        train(store, "logreg", {"pooling": "flatten", "C": 0.1}, 0, models / "logreg", None)
    assert re.fullmatch(
        rf"logreg with pooling flatten writes its 390 flattened rows \(0\.4 MB\) to scratch files in "
        rf"{re.escape(str(models))}/\.logreg-scratch-\w+, which has 0\.1 MB free\. Free some space there, or set "
        r"heads\.logreg\.pooling to avg or max\.",
        str(raised.value),
    ), str(raised.value)
    assert list(models.iterdir()) == []


# A child process: train logreg (flatten) on the store; print its peak RSS (VmHWM) over its RSS before training.
RSS_PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import pipeline.heads.logistic, pipeline.heads.logreg
    from pipeline.heads import get_head
    from pipeline.stages.train import train, training_data
    from pipeline.store.index import FeatureStore

    store, mode, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    params = {"pooling": "flatten", "C": 1.0, "max_iter": 50}
    def status_kb(key):  # this process's own figures (getrusage's maxrss would include what the parent held)
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key + ":"))
        return int(line.split()[1]) * 1024

    before = status_kb("VmRSS")
    if mode == "stage":
        train(store, "logreg", params, 0, out, None)
    else:  # the maps read whole, as a caller passing arrays does
        get_head("logreg").fit(training_data(FeatureStore(store), pooling="flatten"), params, 0, None)
    print(f"GROWTH={status_kb('VmHWM') - before}")
    """
)


def rss_growth(store: Path, mode: str, out: Path) -> int:
    result = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(store), mode, str(out)],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("GROWTH=")), None)
    assert line is not None, result.stdout + result.stderr[-3000:]
    return int(line.removeprefix("GROWTH="))


def test_the_flatten_train_stage_holds_far_less_than_the_maps(tmp_path: Path) -> None:
    """64 MB of training maps (2,000 rows of VGG16's (4, 4, 512)) in chunks of 100 rows: the train stage's peak
    RSS grows by under a third of them; reading them whole grows it by more than all of them."""
    store_path = write_store(tmp_path, {"train": 2000, "validation": 100, "test": 20}, (4, 4, 512), 100)
    maps_bytes = 2000 * 4 * 4 * 512 * 4
    streamed = rss_growth(store_path, "stage", tmp_path / "models" / "logreg")
    in_memory = rss_growth(store_path, "memory", tmp_path / "unused")
    assert in_memory > maps_bytes, (in_memory, maps_bytes)  # the probe sees the split read whole
    assert streamed < maps_bytes / 3, (streamed, maps_bytes)
    assert load_head("logreg", tmp_path / "models" / "logreg").coef.shape == (1, 4 * 4 * 512)
