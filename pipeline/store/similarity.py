"""Exact nearest neighbors over pooled feature vectors, by cosine distance (1 - cosine similarity).

Vectors are scaled to unit length once; a block of queries against all rows is one matrix product, so
the full k-nearest-neighbor graph of 25,000 rows costs seconds on a CPU and needs no index library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.heads.pooling import pool

BLOCK_ROWS = 1024  # queries per matrix product: 1024 x 25,000 float32 similarities is 100 MB


@dataclass(frozen=True)
class Neighbors:
    """indices[i] are row i's k nearest other rows, nearest first; distances[i] their cosine distances."""

    indices: np.ndarray  # (N, k) int64
    distances: np.ndarray  # (N, k) float32


def unit_vectors(features: np.ndarray, pooling: str = "avg") -> np.ndarray:
    """(N, ...) feature maps -> (N, d) float32 vectors of length 1 (an all-zero row stays zero)."""
    vectors = pool(np.asarray(features, dtype=np.float32), pooling).astype(np.float32, copy=False)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float32).tiny)


def nearest(
    queries: np.ndarray,
    rows: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
    done: Callable[[int], None] | None = None,
) -> Neighbors:
    """The k rows nearest each query (all unit vectors); `exclude[i]` is a row index query i must not get;
    `done(n)` after each block of n queries."""
    k = min(k, len(rows) - (exclude is not None))
    if k < 1:
        needed = 1 + (exclude is not None)
        raise ValueError(f"Nearest neighbors need at least {needed} rows; the store has {len(rows)}.")
    indices = np.empty((len(queries), k), dtype=np.int64)
    distances = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, len(queries))
        similarity = queries[start:stop] @ rows.T
        if exclude is not None:
            similarity[np.arange(stop - start), exclude[start:stop]] = -np.inf
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        top_similarity = np.take_along_axis(similarity, top, axis=1)
        order = np.argsort(-top_similarity, axis=1, kind="stable")
        indices[start:stop] = np.take_along_axis(top, order, axis=1)
        distances[start:stop] = 1.0 - np.take_along_axis(top_similarity, order, axis=1)
        if done is not None:
            done(stop - start)
    np.clip(distances, 0.0, 2.0, out=distances)  # rounding can put identical vectors a hair below 0
    return Neighbors(indices, distances)


def knn_graph(vectors: np.ndarray, k: int, done: Callable[[int], None] | None = None) -> Neighbors:
    """Every row's k nearest other rows (a row is never its own neighbor; its exact copies are, at 0); `done`
    is called with each block's row count as it finishes."""
    return nearest(vectors, vectors, k, exclude=np.arange(len(vectors)), done=done)
