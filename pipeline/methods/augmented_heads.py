"""Heads on augmented features: train one head (pipeline.heads, with its `heads.<name>` params and `train.seed`)
on plain + augmented training features, and the same head on the plain features alone, and score both on the
plain test features: the metrics say whether augmentation helped."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.config import Config
from pipeline.core.errors import StoreError
from pipeline.heads import TrainingData, get_head, save_head
from pipeline.reporting.metrics import live_dir, score
from pipeline.store.index import FeatureStore
from pipeline.training.augmented_store import AugmentedRows, augmented_path, read_augmented
from pipeline.training.common import method_dirs

VARIANTS = ("augmented", "plain")


@dataclass(frozen=True)
class HeadComparison:
    head: str
    augmented: float  # test accuracy trained on plain + augmented features
    plain: float  # test accuracy trained on plain features only
    train_rows: int


def check_compatible(store: FeatureStore, rows: AugmentedRows, train_ids: list[str], path: Path) -> None:
    """The augmented rows must come from the same base, input and classes as the plain store's train split."""
    for key in ("backbone", "weights_sha256", "input_size", "resize", "precision", "mirror"):
        if str(rows.attrs.get(key)) != str(store.attrs.get(key, "float32" if key == "precision" else None)):
            raise StoreError(
                f"{path} has {key}={rows.attrs.get(key)!r}, {store.path} {store.attrs.get(key)!r}: "
                "re-run the augmented_features stage."
            )
    if list(rows.attrs.get("classes", [])) != store.classes or rows.features.shape[1:] != store.feature_shape:
        raise StoreError(f"{path} does not match {store.path} (classes or feature shape).")
    unknown = sorted(set(rows.ids) - set(train_ids))
    if unknown:
        raise StoreError(f"{path} holds rows of images outside {store.path}'s train split, e.g. {unknown[:3]}.")


def train_head(config: Config, backbone: str, head: str) -> HeadComparison:
    """Fit `head` both ways, save both under models/methods/augmented_features/<backbone>/<head>/<variant>/,
    curves under dvclive/..., and the comparison as metrics/methods/augmented_features/<backbone>/<head>/."""
    builder, params = get_head(head), config.head(head)
    store = FeatureStore(config.paths.store(backbone))
    path = augmented_path(config.paths.features, backbone)
    rows = read_augmented(path)
    train, validation, test = store.split("train"), store.split("validation"), store.split("test")
    check_compatible(store, rows, train.ids, path)
    both = (np.concatenate([train.features, rows.features]), np.concatenate([train.labels, rows.labels]))
    dirs = method_dirs(config.paths, "augmented_features", f"{backbone}/{head}")
    for folder in (dirs.model, dirs.curves, dirs.metrics):
        shutil.rmtree(folder, ignore_errors=True)
    summary: dict[str, float | int] = {"passes": int(rows.attrs["passes"]), "train_rows": len(both[1])}
    accuracy = {}
    for variant, (x, y) in zip(VARIANTS, (both, (train.features, train.labels)), strict=True):
        data = TrainingData(x, y, validation.features, validation.labels, store.classes, store.attrs["default_pooling"])
        with live_dir(dirs.curves / variant) as live:
            model = builder.fit(data, params, config.train.seed, live)
        result = score(model.predict_proba(test.features), test.labels, len(store.classes))
        save_head(model, builder, dirs.model / variant)
        summary[f"{variant}/test/accuracy"] = round(result.accuracy, 4)
        summary[f"{variant}/test/loss"] = round(result.loss, 4)
        accuracy[variant] = result.accuracy
    summary["gain"] = round(accuracy["augmented"] - accuracy["plain"], 4)
    with live_dir(dirs.metrics) as live:
        live.summary.update(summary | {"test/images": len(test.labels)})
    return HeadComparison(head, accuracy["augmented"], accuracy["plain"], len(both[1]))
