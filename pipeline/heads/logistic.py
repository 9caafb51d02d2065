"""L2-regularized logistic regression fitted by L-BFGS-B over rows read a block at a time.

The objective, its start and the solver's options are scikit-learn's LogisticRegression(C, solver="lbfgs",
tol=1e-4, max_iter) (sklearn/linear_model/_logistic.py and _linear_loss.py, version 1.9): two classes, one
coefficient vector and the half binomial loss; more, the multinomial loss with a row per class; the loss is the
mean over the rows plus 0.5 / (C * n_rows) * ||w||^2 (the intercepts are not penalized); zeros to start. The
loss and its gradient are sums over blocks of rows (pipeline.heads.row_blocks), so the rows need not be in memory
at once. Arithmetic in float64, as scikit-learn's on float64 rows.

Imports scipy.optimize (about half a second): import this module where a head is fitted, not where one is loaded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy.special import expit

from pipeline.heads.row_blocks import RowBlocks

TOL = 1e-4  # scikit-learn's default tol: L-BFGS-B's gtol
MAXLS = 50  # scikit-learn's line search limit (scipy's default is 20)
FTOL = 64 * np.finfo(float).eps


@dataclass(frozen=True)
class LogisticFit:
    coef: np.ndarray  # (1, d) for two classes, else (n_classes, d)
    intercept: np.ndarray  # (1,) or (n_classes,)
    iterations: int
    converged: bool


class LogisticObjective:
    """Loss and gradient of the flat parameter vector scikit-learn's lbfgs solver optimizes: [w, b] for two
    classes; for more, the (n_classes, d + 1) matrix [W, b] ravelled in Fortran order."""

    def __init__(self, rows: RowBlocks, labels: np.ndarray, n_classes: int, C: float) -> None:
        self.rows, self.n_classes = rows, n_classes
        self.labels = np.asarray(labels, dtype=np.int64)
        self.l2 = 1.0 / (C * len(rows))
        self.buffer = np.empty((min(rows.block_rows, max(len(rows), 1)), rows.width))

    @property
    def binary(self) -> bool:
        return self.n_classes == 2

    def size(self) -> int:
        return (self.rows.width + 1) * (1 if self.binary else self.n_classes)

    def split(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(weights, intercept): (d,), () for two classes; (n_classes, d), (n_classes,) for more."""
        if self.binary:
            return w[:-1], w[-1:]
        matrix = w.reshape((self.n_classes, -1), order="F")
        return matrix[:, :-1], matrix[:, -1]

    def __call__(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        weights, intercept = self.split(w)
        n_rows = len(self.rows)
        loss_sum = 0.0
        grad_weights, grad_intercept = np.zeros_like(weights), np.zeros_like(intercept)
        for first, block in self.rows.blocks():
            x = self.buffer[: len(block)]
            np.copyto(x, block)
            y = self.labels[first : first + len(block)]
            if self.binary:
                raw = x @ weights + intercept[0]
                loss_sum += float(np.sum(np.logaddexp(0.0, raw) - y * raw))
                pointwise = (expit(raw) - y) / n_rows
                grad_weights += x.T @ pointwise
                grad_intercept += pointwise.sum()
            else:
                raw = x @ weights.T + intercept
                top = raw.max(axis=1, keepdims=True)
                log_norm = top[:, 0] + np.log(np.exp(raw - top).sum(axis=1))
                picked = raw[np.arange(len(y)), y]
                loss_sum += float(np.sum(log_norm - picked))
                pointwise = np.exp(raw - log_norm[:, None])
                pointwise[np.arange(len(y)), y] -= 1.0
                pointwise /= n_rows
                grad_weights += pointwise.T @ x
                grad_intercept += pointwise.sum(axis=0)
        loss = loss_sum / n_rows + 0.5 * self.l2 * float(np.vdot(weights, weights))
        grad_weights += self.l2 * weights
        if self.binary:
            return loss, np.concatenate([grad_weights, grad_intercept])
        return loss, np.column_stack([grad_weights, grad_intercept]).ravel(order="F")


def fit_logistic(rows: RowBlocks, labels: np.ndarray, n_classes: int, C: float, max_iter: int) -> LogisticFit:
    """scikit-learn's LogisticRegression(C=C, max_iter=max_iter).fit(rows, labels), labels 0..n_classes-1;
    warns, as scikit-learn does, when L-BFGS-B stops before it converges."""
    objective = LogisticObjective(rows, labels, n_classes, C)
    result = optimize.minimize(
        objective,
        np.zeros(objective.size()),
        method="L-BFGS-B",
        jac=True,
        options={"maxiter": max_iter, "maxls": MAXLS, "gtol": TOL, "ftol": FTOL},
    )
    iterations = min(int(result.nit), max_iter)
    if result.status != 0:
        warnings.warn(
            f"logreg (C={C:g}): L-BFGS-B did not converge after {iterations} iteration(s): {result.message}"
            + (" Raise heads.logreg.max_iter." if iterations >= max_iter else ""),
            RuntimeWarning,
            stacklevel=2,
        )
    weights, intercept = objective.split(result.x)
    coef = weights[None, :] if objective.binary else weights
    return LogisticFit(np.array(coef), np.array(intercept), iterations, result.status == 0)
