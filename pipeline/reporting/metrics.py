"""Metrics: the test arithmetic (accuracy, cross-entropy, confusion matrix) and the one dvclive writer.

Every stage that reports numbers writes them here: train's curves (`log_epoch`, one step per epoch, the same
keys for Keras and scikit-learn heads), evaluate's and the methods' `metrics.json` and confusion matrix
(`write_test_metrics`). numpy and dvclive only: scoring a scikit-learn head never imports TensorFlow.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from dvclive import Live


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    confusion: np.ndarray
    predicted: np.ndarray
    per_class: dict = field(default_factory=dict)  # {class: {precision, recall, f1, support}} (evaluate)
    report: str = ""  # classification_report's table (evaluate)

    @property
    def count(self) -> int:
        return len(self.predicted)


def score(probabilities: np.ndarray, labels: np.ndarray, n_classes: int) -> Evaluation:
    """Accuracy, mean cross-entropy and the confusion matrix (rows: true class, columns: predicted)."""
    predicted = probabilities.argmax(axis=1)
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return Evaluation(float((predicted == labels).mean()), float(-np.log(picked).mean()), confusion, predicted)


def per_class_report(labels: np.ndarray, predicted: np.ndarray, classes: list[str]) -> tuple[dict, str]:
    """scikit-learn's classification_report: {class: {precision, recall, f1, support}} and its printed table."""
    from sklearn.metrics import classification_report

    kwargs = {"labels": list(range(len(classes))), "target_names": classes, "zero_division": 0, "digits": 4}
    table = classification_report(labels, predicted, **kwargs)
    report = classification_report(labels, predicted, output_dict=True, **kwargs)
    per_class = {
        cls: {
            "precision": round(report[cls]["precision"], 4),
            "recall": round(report[cls]["recall"], 4),
            "f1": round(report[cls]["f1-score"], 4),
            "support": int(report[cls]["support"]),
        }
        for cls in classes
    }
    return per_class, table


@contextmanager
def live_dir(folder: Path, fresh: bool = True) -> Iterator[Live]:
    """A dvclive logger writing into `folder` (emptied first unless fresh=False); no dvc.yaml, no experiment."""
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    with Live(str(folder), dvcyaml=False, save_dvc_exp=False) as live:
        yield live


def log_epoch(live: Live, logs: Mapping[str, float]) -> None:
    """One step of the training curves: `loss`/`accuracy` -> train/..., `val_...` -> validation/..."""
    for key, value in logs.items():
        split = "validation" if key.startswith("val_") else "train"
        live.log_metric(f"{split}/{key.removeprefix('val_')}", float(value))
    live.next_step()


def write_test_metrics(
    result: Evaluation,
    labels: np.ndarray,
    classes: list[str],
    out_dir: Path,
    extra: dict[str, Any] | None = None,
    split: str = "test",
    fresh: bool = True,
) -> None:
    """metrics.json (`<split>/accuracy`, loss, image count, and `extra`) and the confusion matrix plot; fresh=False
    keeps what `out_dir` already holds (e.g. evaluate's misclassified.csv)."""
    with live_dir(out_dir, fresh) as live:
        live.summary.update(
            {
                f"{split}/accuracy": round(result.accuracy, 4),
                f"{split}/loss": round(result.loss, 4),
                f"{split}/images": result.count,
            }
        )
        live.summary.update(extra or {})
        names = np.array(classes)
        live.log_sklearn_plot(
            "confusion_matrix", names[labels].tolist(), names[result.predicted].tolist(), name="confusion_matrix.json"
        )
