"""A logistic-regression baseline (scikit-learn's LogisticRegression objective, fitted by pipeline.heads.logistic),
saved as plain arrays (npz) and loaded without unpickling; predicting needs numpy only.

Pooled rows (avg, max) are fitted in memory. Flatten maps come as a stream: written once to a scratch file (in a
temporary folder in `TrainingData.scratch_dir`, removed afterwards, on errors too), standardized there, and read
back a block at a time by every evaluation of the loss, so memory does not grow with the rows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

from pipeline.core.errors import InputError
from pipeline.heads.base import Rows, TrainingData, head_params, is_stream
from pipeline.heads.pooling import pool, resolve_pooling
from pipeline.heads.row_blocks import ArrayRows, RowBlocks, spill_stream, standardization
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


def standardized_probabilities(head: LogRegHead, rows: RowBlocks) -> np.ndarray:
    """The head's class probabilities of rows already standardized by its mean and scale, block by block."""
    plain = LogRegHead(head.coef, head.intercept, np.zeros(1), np.ones(1), "flatten", head.C)
    return np.concatenate([plain.predict_proba(block) for _, block in rows.blocks()] or [np.zeros((0, 2))])


def quality(head: LogRegHead, rows: RowBlocks, labels: np.ndarray, n_classes: int) -> tuple[float, float]:
    """Accuracy and mean cross-entropy (the test metrics' own arithmetic) on standardized rows."""
    result = score(standardized_probabilities(head, rows), labels, n_classes)
    return result.accuracy, result.loss


def log_fit_quality(live: Any, c: float, train: tuple[float, float], validation: tuple[float, float]) -> None:
    """One step of the curves per C tried (x: log10 C): accuracy and loss on train and validation."""
    live.log_metric(CURVE_X, float(np.log10(c)))
    log_epoch(
        live,
        {"accuracy": train[0], "loss": train[1], "val_accuracy": validation[0], "val_loss": validation[1]},
    )


def flat_rows(x: Rows, scratch: Path, name: str, pooling: str) -> RowBlocks:
    """The rows a linear head fits on, (n, d): pooled arrays stay in memory; a stream of maps (flatten) is
    written once, flattened, to a scratch file under `scratch`."""
    if is_stream(x):
        return spill_stream(x, scratch / f"{name}.f32")
    return ArrayRows(pool(x, pooling))


def check_scratch_room(data: TrainingData, scratch: Path) -> None:
    """Refuse to start a streamed fit whose scratch files (the flattened train and validation rows, float32)
    would not fit on the disk of `scratch`."""
    rows = sum(len(x) for x in (data.x_train, data.x_val) if is_stream(x))
    needed = rows * 4 * int(np.prod(data.map_shape))
    free = shutil.disk_usage(scratch).free
    if needed > free:
        raise InputError(
            f"logreg with pooling flatten writes its {rows} flattened rows ({needed / 1e6:,.1f} MB) to scratch "
            f"files in {scratch}, which has {free / 1e6:,.1f} MB free. Free some space there, or set "
            "heads.logreg.pooling to avg or max."
        )


class LogRegHeadBuilder:
    file_suffix = ".npz"
    curve_x = CURVE_X
    streams = True  # flatten maps come as a stream, spilled once to a scratch file read block by block

    def fit(self, data: TrainingData, params: dict[str, Any], seed: int, live: Any) -> LogRegHead:
        """Fit at C (or at each C of C_GRID, keeping the best on validation: ties go to the smaller C); `seed`
        is unused (L-BFGS-B starts from zeros)."""
        from pipeline.heads.logistic import fit_logistic  # here: loading a head for evaluate/predict needs numpy

        p = head_params("logreg", params)
        pooling = resolve_pooling(p["pooling"], data.default_pooling)
        n_classes = len(data.classes)
        candidates = C_GRID if p["C"] == "auto" else (float(p["C"]),)
        with TemporaryDirectory(prefix=".logreg-scratch-", dir=data.scratch_dir) as scratch:
            check_scratch_room(data, Path(scratch))
            raw_train = flat_rows(data.x_train, Path(scratch), "train", pooling)
            mean, scale = standardization(raw_train, p["standardize"])
            train = raw_train.standardized(mean, scale)
            validation = flat_rows(data.x_val, Path(scratch), "validation", pooling).standardized(mean, scale)
            heads, accuracies, curves = [], {}, []
            title = f"train logreg ({len(train)} rows)"
            with Progress(len(candidates), title, "C", enabled=len(candidates) > 1) as bar:
                for c in candidates:
                    fitted = fit_logistic(train, data.y_train, n_classes, c, p["max_iter"])
                    heads.append(LogRegHead(fitted.coef, fitted.intercept, mean, scale, pooling, c))
                    val = quality(heads[-1], validation, data.y_val, n_classes)
                    accuracies[c] = val[0]
                    if live is not None:
                        curves.append((c, quality(heads[-1], train, data.y_train, n_classes), val))
                    bar.update(1, f"C {c:g}: val_accuracy {accuracies[c]:.4f}")
        head = max(heads, key=lambda h: (accuracies[h.C], -h.C))  # ties: the stronger regularization
        if live is not None:
            for c, train_quality, val_quality in curves:
                log_fit_quality(live, c, train_quality, val_quality)
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
