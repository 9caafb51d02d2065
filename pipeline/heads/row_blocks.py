"""Rows of a linear head read a block at a time: from an array, or from a scratch file that holds flattened maps
streamed once from the store, so a fit over full maps never holds the split.

A scratch file is the rows as float32, one after another in the split's order: a block is read into a reused
buffer with plain file reads (the pages stay in the OS cache, not in the process), never mapped. Standardizing
computes each feature's mean and standard deviation over the blocks in float64 (Chan's pairwise merge of each
block's mean and sum of squares), then rewrites the rows as ((x - mean) / scale) in float32, in place.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.heads.base import RowStream

# float32 rows read or written at a time. Small blocks keep a block's float64 copy and both of its matrix-vector
# products in the CPU cache (and BLAS on one thread): at 20,000 x 8,192, 16 MB blocks made an evaluation 4x slower.
BLOCK_BYTES = 1 << 20


def rows_per_block(width: int) -> int:
    """About BLOCK_BYTES of float32 rows of `width` features, at least one row."""
    return max(1, BLOCK_BYTES // (4 * width))


class RowBlocks(Protocol):
    """(n, width) float32 rows, handed out in order a block at a time."""

    width: int
    block_rows: int

    def __len__(self) -> int: ...

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) for every block in order; the rows may be a buffer reused by the next block."""

    def standardized(self, mean: np.ndarray, scale: np.ndarray) -> RowBlocks:
        """The rows as ((x - mean) / scale) in float32, in the same blocks (a scratch file is rewritten)."""


class ArrayRows:
    """Rows held in memory (the pooled view's rows, or maps a caller passed as an array)."""

    def __init__(self, rows: np.ndarray, block_rows: int | None = None) -> None:
        self.rows = rows.reshape(len(rows), -1)
        self.width = self.rows.shape[1]
        self.block_rows = block_rows or rows_per_block(self.width)

    def __len__(self) -> int:
        return len(self.rows)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        for first in range(0, len(self.rows), self.block_rows):
            yield first, self.rows[first : first + self.block_rows]

    def standardized(self, mean: np.ndarray, scale: np.ndarray) -> ArrayRows:
        out = np.empty(self.rows.shape, dtype=np.float32)
        for first, block in self.blocks():
            out[first : first + len(block)] = standardize_block(block, mean, scale)
        return ArrayRows(out, self.block_rows)


class FileRows:
    """Rows in a scratch file of float32 rows; every pass reads it a block at a time into one buffer."""

    def __init__(self, path: Path, n_rows: int, width: int, block_rows: int | None = None) -> None:
        self.path, self.n_rows, self.width = path, n_rows, width
        self.block_rows = block_rows or rows_per_block(width)
        self.buffer = np.empty((min(self.block_rows, max(n_rows, 1)), width), dtype=np.float32)

    def __len__(self) -> int:
        return self.n_rows

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Each block is read into the same buffer: one pass at a time."""
        with open(self.path, "rb", buffering=0) as handle:
            for first in range(0, self.n_rows, self.block_rows):
                block = self.buffer[: min(self.block_rows, self.n_rows - first)]
                read_exactly(handle, block, self.path)
                yield first, block

    def standardized(self, mean: np.ndarray, scale: np.ndarray) -> FileRows:
        row_bytes = 4 * self.width
        with open(self.path, "r+b", buffering=0) as handle:
            for first, block in self.blocks():
                handle.seek(first * row_bytes)
                handle.write(memoryview(standardize_block(block, mean, scale)).cast("B"))
        return self


def read_exactly(handle, block: np.ndarray, path: Path) -> None:
    """Fill `block` from the file's next bytes (a short read means the file is not the rows it should hold)."""
    view = memoryview(block).cast("B")
    done = 0
    while done < len(view):
        got = handle.readinto(view[done:])
        if not got:
            raise OSError(f"{path} ended {len(view) - done} bytes early")
        done += got


def standardize_block(block: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """((x - mean) / scale) computed in float64, as float32."""
    return ((block - mean) / scale).astype(np.float32)


def spill_stream(stream: RowStream, path: Path, block_rows: int | None = None) -> FileRows:
    """Write every row of `stream` (read once, a block at a time) flattened, as float32, at its place in the
    stream's order, into the scratch file `path`."""
    width = int(np.prod(stream.row_shape))
    row_bytes = 4 * width
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for block in stream.blocks():
            rows = np.ascontiguousarray(block.features.reshape(len(block.order), width), dtype=np.float32)
            for start, stop in consecutive_runs(block.order):
                data = memoryview(rows[start:stop]).cast("B")
                if os.pwrite(fd, data, int(block.order[start]) * row_bytes) != len(data):
                    raise OSError(f"short write to {path}")
            written += len(block.order)
    finally:
        os.close(fd)
    if written != len(stream):
        raise OSError(f"{path}: the stream gave {written} rows of {len(stream)}")
    return FileRows(path, written, width, block_rows)


def consecutive_runs(order: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) spans of `order` whose values rise by one: rows one write can place."""
    breaks = [0, *(np.flatnonzero(np.diff(order) != 1) + 1).tolist(), len(order)]
    return list(zip(breaks[:-1], breaks[1:], strict=True))


def standardization(rows: RowBlocks, enabled: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (population) of the rows, from float64 accumulators merged block
    by block; features indistinguishable from a constant (scikit-learn's StandardScaler test) keep scale 1.
    Disabled: zeros and ones."""
    if not enabled:
        return np.zeros(rows.width), np.ones(rows.width)
    count, mean, squares = 0, np.zeros(rows.width), np.zeros(rows.width)
    for _, block in rows.blocks():
        values = block.astype(np.float64)
        n = len(values)
        block_mean = values.mean(axis=0)
        values -= block_mean
        block_squares = np.einsum("ij,ij->j", values, values)
        delta = block_mean - mean
        total = count + n
        mean += delta * (n / total)
        squares += block_squares + delta**2 * (count * n / total)
        count = total
    variance = squares / max(count, 1)
    eps = np.finfo(np.float64).eps
    constant = variance <= count * eps * variance + (count * mean * eps) ** 2
    scale = np.sqrt(variance)
    scale[constant | (scale < 10 * eps)] = 1.0
    return mean, scale
