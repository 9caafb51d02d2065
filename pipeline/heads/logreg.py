"""A scikit-learn logistic-regression baseline, saved as plain arrays (npz) and loaded without unpickling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import InputError
from pipeline.heads.base import TrainingData, head_params
from pipeline.heads.pooling import pool, resolve_pooling
from pipeline.reporting.metrics import log_epoch, score
from pipeline.reporting.progress import Progress

ARRAY_KEYS = ("coef", "intercept", "mean", "scale", "meta")
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
CURVE_X = "log10_C"  # the curves' x axis: each C tried (C: auto searches C_GRID)


class LogRegHead:
    """A linear model over pooled, optionally standardized features: everything is an array."""

    file_suffix = ".npz"

    def __init__(
        self, coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, scale: np.ndarray, pooling: str, C: float
    ) -> None:
        self.coef, self.intercept, self.mean, self.scale, self.pooling = coef, intercept, mean, scale, pooling
        self.C = C

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Maps, or rows already pooled (the store's pooled view): pooling a pooled row leaves it as it is."""
        x = (pool(features, self.pooling) - self.mean) / self.scale
        return x @ self.coef.T + self.intercept

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        scores = self.decision(features)
        if scores.shape[1] == 1:
            positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.stack([1.0 - positive, positive], axis=1)
        scores = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)

    def save(self, path: Path) -> None:
        meta = json.dumps({"pooling": self.pooling, "C": self.C})
        with open(path, "wb") as handle:
            np.savez(
                handle, coef=self.coef, intercept=self.intercept, mean=self.mean, scale=self.scale, meta=np.array(meta)
            )


def log_fit_quality(live: Any, head: LogRegHead, data: TrainingData) -> None:
    """One step of the curves per C tried (x: log10 C): accuracy and loss on train and validation."""
    live.log_metric(CURVE_X, float(np.log10(head.C)))
    logs = {}
    for prefix, x, y in (("", data.x_train, data.y_train), ("val_", data.x_val, data.y_val)):
        result = score(head.predict_proba(x), y, len(data.classes))  # the test metrics' own arithmetic
        logs |= {f"{prefix}accuracy": result.accuracy, f"{prefix}loss": result.loss}
    log_epoch(live, logs)


def standardization(x: np.ndarray, enabled: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of the train split (constant features keep scale 1)."""
    if not enabled:
        return np.zeros(x.shape[1]), np.ones(x.shape[1])
    scale = x.std(axis=0)
    scale[scale < 10 * np.finfo(scale.dtype).eps] = 1.0
    return x.mean(axis=0), scale


def fit_one(
    x: np.ndarray, y: np.ndarray, c: float, max_iter: int, seed: int, mean: np.ndarray, scale: np.ndarray, pooling: str
) -> LogRegHead:
    from sklearn.linear_model import LogisticRegression  # here: loading a head for evaluate/predict needs numpy only

    model = LogisticRegression(C=c, max_iter=max_iter, random_state=seed).fit((x - mean) / scale, y)
    return LogRegHead(model.coef_, model.intercept_, mean, scale, pooling, c)


def validation_accuracy(head: LogRegHead, data: TrainingData) -> float:
    return float((head.predict_proba(data.x_val).argmax(axis=1) == data.y_val).mean())


class LogRegHeadBuilder:
    file_suffix = ".npz"
    curve_x = CURVE_X
    streams = False  # scikit-learn's solver holds the rows: flatten rows are read into memory

    def fit(self, data: TrainingData, params: dict[str, Any], seed: int, live: Any) -> LogRegHead:
        p = head_params("logreg", params)
        pooling = resolve_pooling(p["pooling"], data.default_pooling)
        x_train = pool(data.x_train, pooling)
        mean, scale = standardization(x_train, p["standardize"])
        candidates = C_GRID if p["C"] == "auto" else (float(p["C"]),)
        fits, accuracies = [], {}
        with Progress(len(candidates), f"train logreg ({len(x_train)} rows)", "C", enabled=len(candidates) > 1) as bar:
            for c in candidates:
                fits.append(fit_one(x_train, data.y_train, c, p["max_iter"], seed, mean, scale, pooling))
                accuracies[c] = validation_accuracy(fits[-1], data)
                bar.update(1, f"C {c:g}: val_accuracy {accuracies[c]:.4f}")
        head = max(fits, key=lambda h: (accuracies[h.C], -h.C))  # ties: the stronger regularization
        if live is not None:
            for fit in fits:
                log_fit_quality(live, fit, data)
            live.summary["C"] = head.C
        return head

    def load(self, path: Path) -> LogRegHead:
        """Read the arrays back; object arrays (pickles) are refused by numpy, missing keys named."""
        with np.load(path, allow_pickle=False) as arrays:
            missing = sorted(set(ARRAY_KEYS) - set(arrays.files))
            if missing:
                raise InputError(f"{path} is not a logreg head: it lacks {missing}.")
            values = {key: arrays[key] for key in ARRAY_KEYS}
        meta = json.loads(str(values.pop("meta")))
        return LogRegHead(**values, pooling=meta["pooling"], C=meta["C"])
