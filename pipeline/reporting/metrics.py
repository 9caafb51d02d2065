"""Metrics: the test arithmetic (accuracy, cross-entropy, confusion matrix) and the one dvclive writer.

Every stage that reports numbers writes them here: train's curves (`log_epoch`, one step per epoch, the same
keys for Keras and scikit-learn heads), evaluate's and the methods' `metrics.json` and confusion matrix
(`write_test_metrics`). numpy only at import: evaluating a head imports neither TensorFlow, scikit-learn nor
dvclive (the training curves' dvclive logger is imported where it is opened).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from dvclive import Live

REPORT_HEADERS = ("precision", "recall", "f1-score", "support")


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
    """{class: {precision, recall, f1, support}} and the table scikit-learn's classification_report prints
    (digits=4, zero_division=0), computed with numpy from the confusion matrix."""
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (np.asarray(labels), np.asarray(predicted)), 1)
    hits = np.diag(confusion).astype(np.float64)
    support, predicted_count = confusion.sum(axis=1), confusion.sum(axis=0)
    scores = np.stack([ratio(hits, predicted_count), ratio(hits, support), ratio(2 * hits, support + predicted_count)])
    per_class = {
        cls: {
            "precision": round(float(scores[0, i]), 4),
            "recall": round(float(scores[1, i]), 4),
            "f1": round(float(scores[2, i]), 4),
            "support": int(support[i]),
        }
        for i, cls in enumerate(classes)
    }
    return per_class, report_table(classes, scores, support, hits)


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    return np.divide(numerator, denominator, out=out, where=denominator > 0)


def report_table(classes: list[str], scores: np.ndarray, support: np.ndarray, hits: np.ndarray) -> str:
    """classification_report's text: a row per class, then accuracy, macro avg and weighted avg."""
    total = int(support.sum())
    width = max(*(len(name) for name in classes), len("weighted avg"), 4)
    row = "{:>{width}s} " + " {:>9.4f}" * 3 + " {:>9}\n"
    text = ("{:>{width}s} " + " {:>9}" * 4).format("", *REPORT_HEADERS, width=width) + "\n\n"
    for i, name in enumerate(classes):
        text += row.format(name, *scores[:, i], int(support[i]), width=width)
    accuracy = float(hits.sum() / total) if total else 0.0
    weighted = [float(np.average(s, weights=support)) if total else 0.0 for s in scores]
    text += "\n" + ("{:>{width}s} " + " {:>9.4}" * 2 + " {:>9.4f} {:>9}\n").format(
        "accuracy", "", "", accuracy, total, width=width
    )
    text += row.format("macro avg", *(float(np.average(s)) for s in scores), total, width=width)
    return text + row.format("weighted avg", *weighted, total, width=width)


@contextmanager
def live_dir(folder: Path, fresh: bool = True) -> Iterator[Live]:
    """A dvclive logger writing into `folder` (emptied first unless fresh=False); no dvc.yaml, no experiment."""
    from dvclive import Live

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
    """metrics.json (`<split>/accuracy`, loss, image count, and `extra`) and the confusion matrix plot
    (plots/sklearn/confusion_matrix.json, one {actual, predicted} per image), in dvclive's layout and format;
    fresh=False keeps what `out_dir` already holds (e.g. evaluate's misclassified.csv)."""
    if fresh:
        shutil.rmtree(out_dir, ignore_errors=True)
    summary = {
        f"{split}/accuracy": round(result.accuracy, 4),
        f"{split}/loss": round(result.loss, 4),
        f"{split}/images": result.count,
        **(extra or {}),
    }
    names = np.array(classes)
    pairs = [
        {"actual": actual, "predicted": predicted}
        for actual, predicted in zip(names[labels].tolist(), names[result.predicted].tolist(), strict=True)
    ]
    dump_json(summary, out_dir / "metrics.json")
    dump_json(pairs, out_dir / "plots" / "sklearn" / "confusion_matrix.json")


def dump_json(content: Any, path: Path) -> None:
    """JSON as dvclive writes it (indent 4, a final newline; numpy numbers as Python's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=4, default=numpy_value) + "\n", encoding="utf-8")


def numpy_value(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
