"""Stage evaluate: a head's test accuracy, loss and confusion matrix, as dvclive metrics and plots."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from dvclive import Live

from pipeline.curves import confusion_png
from pipeline.store import FeatureStore
from pipeline.train import load_head


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    confusion: np.ndarray
    predicted: np.ndarray

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


def branch_metric(backbone: str, head: str) -> str:
    """`vgg16/dense`: the test accuracy's name that no other evaluate branch shares."""
    return f"{backbone}/{head}"


def evaluate(store_path: Path, head: str, head_dir: Path, out_dir: Path, split: str = "test") -> Evaluation:
    """Score the trained head on one split of the store and write metrics.json and the confusion plot."""
    store = FeatureStore(store_path)
    data = store.split(split)
    result = score(load_head(head, head_dir).predict_proba(data.features), data.labels, len(store.classes))
    shutil.rmtree(out_dir, ignore_errors=True)
    with Live(str(out_dir), dvcyaml=False, save_dvc_exp=False) as live:
        live.summary.update(
            {
                f"{split}/accuracy": round(result.accuracy, 4),
                f"{split}/loss": round(result.loss, 4),
                f"{split}/images": result.count,
                # the same accuracy under a name unique to this branch: a short column in `dvc exp show`
                branch_metric(store.attrs["backbone"], head): round(result.accuracy, 4),
            }
        )
        names = np.array(store.classes)
        live.log_sklearn_plot(
            "confusion_matrix",
            names[data.labels].tolist(),
            names[result.predicted].tolist(),
            name="confusion_matrix.json",
        )
    title = f"{head} on {store_path.stem}\n{split} accuracy {result.accuracy:.4f}"
    confusion_png(result.confusion, store.classes, title, out_dir / "plots" / "sklearn" / "confusion_matrix.png")
    return result
