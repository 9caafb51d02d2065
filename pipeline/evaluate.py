"""Stage evaluate: a head's test accuracy, loss and confusion matrix, as dvclive metrics and plots."""

from __future__ import annotations

from pathlib import Path

from pipeline.heads import load_head
from pipeline.metrics import Evaluation, score, write_test_metrics
from pipeline.store import FeatureStore


def evaluate(store_path: Path, head: str, head_dir: Path, out_dir: Path, split: str = "test") -> Evaluation:
    """Score the trained head on one split of the store and write metrics.json and the confusion plot."""
    store = FeatureStore(store_path)
    data = store.split(split)
    result = score(load_head(head, head_dir).predict_proba(data.features), data.labels, len(store.classes))
    write_test_metrics(result, data.labels, store.classes, out_dir, split=split)
    return result
