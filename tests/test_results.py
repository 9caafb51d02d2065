"""Results people can read: learning-curve tables and PNGs, the confusion PNG, progress lines in a log."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sample_images

from pipeline.heads import TrainingData, get_head
from pipeline.heads.logreg import C_GRID
from pipeline.reporting.curve_plots import CurveRecorder, confusion_png
from pipeline.reporting.metrics import per_class_report
from pipeline.reporting.progress import Progress, Steps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_curves_put_train_and_validation_in_one_table_and_png(tmp_path) -> None:
    curves = CurveRecorder("epoch")
    for epoch in range(3):
        curves.log_metric("train/accuracy", 0.5 + epoch / 10)
        curves.log_metric("validation/accuracy", 0.4 + epoch / 10)
        curves.log_metric("train/loss", 1.0 - epoch / 10)
        curves.log_metric("validation/loss", 1.1 - epoch / 10)
        curves.next_step()
    written = sorted(p.name for p in curves.write(tmp_path, "dense on vgg16"))
    assert written == ["accuracy.png", "accuracy.tsv", "loss.png", "loss.tsv"]
    assert (tmp_path / "accuracy.tsv").read_text().splitlines() == [
        "epoch\ttrain\tvalidation",
        "1\t0.5\t0.4",
        "2\t0.6\t0.5",
        "3\t0.7\t0.6",
    ]
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG_MAGIC


def test_logreg_curve_is_validation_accuracy_against_every_c_tried(tmp_path) -> None:
    """Each row is (log10 C, train accuracy, validation accuracy) of the head fitted at that C, in that order."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 1, 1, 8)).astype(np.float32)
    y = (x[:, 0, 0, 0] + rng.normal(scale=0.8, size=60) > 0).astype(np.int64)  # noisy: train and validation differ
    data = TrainingData(x[:40], y[:40], x[40:], y[40:], ["cat", "dog"], "avg")
    builder = get_head("logreg")
    curves = CurveRecorder(builder.curve_x)
    head = builder.fit(data, {"C": "auto"}, 0, curves)
    rows = curves.table("accuracy")
    expected = []
    for c in C_GRID:
        fitted = builder.fit(data, {"C": c}, 0, None)
        train, validation = (
            float((fitted.predict_proba(xs).argmax(axis=1) == ys).mean())
            for xs, ys in ((data.x_train, data.y_train), (data.x_val, data.y_val))
        )
        expected.append((float(np.log10(c)), train, validation))
    np.testing.assert_allclose(np.array(rows, dtype=float), np.array(expected), rtol=0, atol=1e-9)
    assert any(train != validation for _, train, validation in expected)  # a swap of the columns would show
    best = max(expected, key=lambda row: (row[2], -row[0]))
    assert curves.summary["C"] == head.C == pytest.approx(10 ** best[0])


def test_confusion_png(tmp_path) -> None:
    path = confusion_png(np.array([[8, 2], [1, 9]]), ["cat", "dog"], "logreg on vgg16", tmp_path / "c.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_progress_prints_a_line_each_tenth_when_not_a_terminal(capsys) -> None:
    with Progress(100, "split", "images") as progress:
        for _ in range(100):
            progress.update()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("split: 100/100 images")


def test_split_reports_progress_on_large_inputs(tmp_path, capsys, monkeypatch) -> None:
    import pipeline.stages.split as split_module
    from pipeline.core.config import SplitConfig

    monkeypatch.setattr(split_module, "PROGRESS_FROM", 20)  # the same code path as 2,000 images, on 24
    images = tmp_path / "images"
    images.mkdir()
    for name, data in sample_images(12).items():
        (images / name).write_bytes(data)
    split_module.split(images, tmp_path / "split", SplitConfig(train=8, validation=2, test=2))
    lines = capsys.readouterr().err.splitlines()
    assert lines and lines[-1].startswith("split: 24/24 images")


@pytest.mark.parametrize(
    ("classes", "seed", "rows"),
    [(["cat", "dog"], 0, 200), (["cat", "dog", "horse"], 1, 50), (["a", "b", "c", "d"], 2, 7), (["cat", "dog"], 3, 0)],
)
def test_per_class_report_is_scikit_learns_classification_report(classes: list[str], seed: int, rows: int) -> None:
    """The numpy report prints and returns what classification_report does, classes never seen included."""
    from sklearn.metrics import classification_report

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, max(len(classes) - 1, 1), rows)  # the last class never is a true label
    predicted = np.where(rng.random(rows) < 0.7, labels, rng.integers(0, len(classes), rows))
    per_class, table = per_class_report(labels, predicted, classes)
    kwargs = {"labels": list(range(len(classes))), "target_names": classes, "zero_division": 0, "digits": 4}
    if rows:
        assert table == classification_report(labels, predicted, **kwargs)
        expected = classification_report(labels, predicted, output_dict=True, **kwargs)
        assert per_class == {
            cls: {
                "precision": round(expected[cls]["precision"], 4),
                "recall": round(expected[cls]["recall"], 4),
                "f1": round(expected[cls]["f1-score"], 4),
                "support": int(expected[cls]["support"]),
            }
            for cls in classes
        }
    else:
        assert per_class["cat"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_the_audit_prints_each_step_with_its_seconds_and_the_long_ones_progress(tmp_path, capsys) -> None:
    """In a log (stderr not a terminal): a line per step with its seconds, and progress lines with rows/s and
    the count reached for the folds, the neighbor graph and the image checks."""
    from pipeline.audit.stage import find
    from pipeline.core.config import AuditConfig
    from pipeline.store.pooled import PooledRows

    images = sample_images(12)
    for name, data in images.items():
        (tmp_path / name).write_bytes(data)
    rng = np.random.default_rng(0)
    labels = np.array([name.startswith("dog") for name in images], dtype=np.int64)
    rows = PooledRows(
        features=(rng.normal(size=(24, 8)) + labels[:, None]).astype(np.float32),
        labels=labels,
        ids=list(images),
        splits=np.array(["train"] * 24),
        keys=[f"{i:064x}" for i in range(24)],
        classes=["cat", "dog"],
    )
    seconds: dict[str, float] = {}
    find(rows, AuditConfig(folds=3, neighbors=3, image_workers=1), Steps("audit vgg16", seconds), tmp_path)
    lines = capsys.readouterr().err.splitlines()
    steps = ["out_of_fold", "cleanlab", "neighbors", "flag", "off_class", "image_checks"]
    assert [line for line in lines if line.endswith(" s") and " s, " not in line] == [
        f"audit vgg16: {step} {seconds[step]:.1f} s" for step in steps
    ]
    assert [line.split(" (")[0] for line in lines if " s, " in line] == [
        "audit vgg16 out_of_fold: 1/3 folds",
        "audit vgg16 out_of_fold: 2/3 folds",
        "audit vgg16 out_of_fold: 3/3 folds",
        "audit vgg16 neighbors: 24/24 rows",
        "audit vgg16 image_checks: 24/24 img",
    ]
    assert all(" rows/s" in line for line in lines if "neighbors: 24/24" in line)
