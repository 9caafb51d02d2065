"""Stage evaluate: a head's test accuracy, loss, confusion matrix and per-class precision, recall and F1, as
dvclive metrics and plots; plus error analysis: the misclassified test images as a CSV (worst first) and a
contact sheet of the worst of them.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from dvclive import Live

from pipeline.contact_sheet import contact_sheet
from pipeline.store import FeatureStore
from pipeline.train import load_head

MISCLASSIFIED_FIELDS = ("id", "true", "predicted", "probability", "true_probability")
WORST_SHOWN = 32  # misclassified images on the contact sheet


@dataclass(frozen=True)
class Mistake:
    id: str  # the manifest path, e.g. test/cat/cat.1503.jpg
    true: str
    predicted: str
    probability: float  # of the predicted class
    true_probability: float


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


def mistakes(probabilities: np.ndarray, labels: np.ndarray, ids: list[str], classes: list[str]) -> list[Mistake]:
    """The misclassified rows, most confidently wrong first (ties: by id)."""
    predicted = probabilities.argmax(axis=1)
    wrong = [
        Mistake(
            ids[i],
            classes[labels[i]],
            classes[predicted[i]],
            float(probabilities[i, predicted[i]]),
            float(probabilities[i, labels[i]]),
        )
        for i in np.flatnonzero(predicted != labels)
    ]
    return sorted(wrong, key=lambda m: (-m.probability, m.id))


def write_mistakes(wrong: list[Mistake], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MISCLASSIFIED_FIELDS)
        writer.writerows(
            (m.id, m.true, m.predicted, f"{m.probability:.4f}", f"{m.true_probability:.4f}") for m in wrong
        )


def mistakes_sheet(wrong: list[Mistake], split_dir: Path, out: Path, label: str) -> Path:
    """A contact sheet of the worst misclassified images: file name, true -> predicted and its probability."""
    shown = wrong[:WORST_SHOWN]
    return contact_sheet(
        [split_dir / m.id for m in shown],
        [f"{Path(m.id).name}\n{m.true} -> {m.predicted} {m.probability:.2f}" for m in shown],
        out,
        columns=8,
        thumb=128,
        title=f"{label}: {len(shown)} of {len(wrong)} misclassified images, most confident first"
        if wrong
        else f"{label}: no misclassified images",
    )


def evaluate(
    store_path: Path, head: str, head_dir: Path, out_dir: Path, split: str = "test", split_dir: Path | None = None
) -> Evaluation:
    """Score the trained head on one split of the store; write metrics.json (per class too), the confusion plot,
    misclassified.csv and, given the split folder holding the images, plots/misclassified.png."""
    store = FeatureStore(store_path)
    data = store.split(split)
    probabilities = load_head(head, head_dir).predict_proba(data.features)
    result = score(probabilities, data.labels, len(store.classes))
    per_class, table = per_class_report(data.labels, result.predicted, store.classes)
    result = replace(result, per_class=per_class, report=table)
    wrong = mistakes(probabilities, data.labels, data.ids, store.classes)
    shutil.rmtree(out_dir, ignore_errors=True)
    write_mistakes(wrong, out_dir / "misclassified.csv")
    if split_dir is not None:
        label = f"{store.attrs.get('backbone', store_path.stem)}/{head}, {split}"
        mistakes_sheet(wrong, split_dir, out_dir / "plots" / "misclassified.png", label)
    with Live(str(out_dir), dvcyaml=False, save_dvc_exp=False) as live:
        live.summary.update(
            {
                f"{split}/accuracy": round(result.accuracy, 4),
                f"{split}/loss": round(result.loss, 4),
                f"{split}/images": result.count,
                f"{split}/misclassified": len(wrong),
                f"{split}/per_class": per_class,
            }
        )
        names = np.array(store.classes)
        live.log_sklearn_plot(
            "confusion_matrix",
            names[data.labels].tolist(),
            names[result.predicted].tolist(),
            name="confusion_matrix.json",
        )
    return result
