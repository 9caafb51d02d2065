"""Stage evaluate: a head's test accuracy and loss (dvclive metrics), confusion matrix (a plot), per-class
precision, recall, F1 and support (per_class.csv, a plot: one row per class, so `dvc metrics show` stays one
short row however many classes there are); plus error analysis: the misclassified test images as a CSV (worst
first) and a contact sheet of the worst of them.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.core.errors import StoreError
from pipeline.heads import Head, load_head
from pipeline.reporting.contact_sheet import contact_sheet
from pipeline.reporting.curve_plots import confusion_png
from pipeline.reporting.metrics import Evaluation, per_class_report, score, write_test_metrics
from pipeline.store.index import FeatureStore
from pipeline.store.pooled import pooled_split
from pipeline.store.stream import MapStream

MISCLASSIFIED_FIELDS = ("id", "true", "predicted", "probability", "true_probability")
PER_CLASS_FIELDS = ("class", "precision", "recall", "f1", "support")
WORST_SHOWN = 32  # misclassified images on the contact sheet


@dataclass(frozen=True)
class Mistake:
    id: str  # the manifest path, e.g. test/cat/cat.1503.jpg
    true: str
    predicted: str
    probability: float  # of the predicted class
    true_probability: float


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


def write_per_class(per_class: dict[str, dict], path: Path) -> None:
    """per_class.csv: one row per class (precision, recall, F1, support), in the store's class order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PER_CLASS_FIELDS)
        writer.writerows([name, *(row[key] for key in PER_CLASS_FIELDS[1:])] for name, row in per_class.items())


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


def streamed_probabilities(model: Head, stream: MapStream) -> np.ndarray:
    """The head's class probabilities of every row of `stream`, read a chunk at a time, in the stream's order."""
    probabilities = None
    for block in stream.blocks():
        found = model.predict_proba(block.features)
        if probabilities is None:
            probabilities = np.empty((len(stream), found.shape[1]), dtype=found.dtype)
        probabilities[block.order] = found
    if probabilities is None:
        raise StoreError(f"{stream.store.path} has no rows in split {stream.split!r}.")
    return probabilities


def evaluate(
    store_path: Path, head: str, head_dir: Path, out_dir: Path, split: str = "test", split_dir: Path | None = None
) -> Evaluation:
    """Score the trained head on one split of the store; write metrics.json, per_class.csv, the confusion plot,
    misclassified.csv and, given the split folder holding the images, plots/misclassified.png. A head that pools
    avg or max reads the pooled view; flatten streams the maps chunk by chunk."""
    store = FeatureStore(store_path)
    model = load_head(head, head_dir)
    if model.pooling == "flatten":
        data = MapStream(store, split)
        probabilities = streamed_probabilities(model, data)
    else:
        data = pooled_split(store, split, model.pooling)
        probabilities = model.predict_proba(data.features)
    result = score(probabilities, data.labels, len(store.classes))
    per_class, table = per_class_report(data.labels, result.predicted, store.classes)
    result = replace(result, per_class=per_class, report=table)
    wrong = mistakes(probabilities, data.labels, data.ids, store.classes)
    shutil.rmtree(out_dir, ignore_errors=True)
    write_mistakes(wrong, out_dir / "misclassified.csv")
    write_per_class(per_class, out_dir / "per_class.csv")
    if split_dir is not None:
        label = f"{store.attrs.get('backbone', store_path.stem)}/{head}, {split}"
        mistakes_sheet(wrong, split_dir, out_dir / "plots" / "misclassified.png", label)
    extra = {
        f"{split}/misclassified": len(wrong),
    }
    write_test_metrics(result, data.labels, store.classes, out_dir, extra, split=split, fresh=False)
    title = f"{head} on {store_path.stem}\n{split} accuracy {result.accuracy:.4f}"
    confusion_png(result.confusion, store.classes, title, out_dir / "plots" / "sklearn" / "confusion_matrix.png")
    return result
