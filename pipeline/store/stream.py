"""One split's feature maps read chunk by chunk, for readers that need the (h, w, c) maps and must not hold them all.

A flatten head (the seed's dense head on VGG16's (4, 4, 512)) trains, validates and is evaluated on a
`MapStream`: each chunk is read and checked as `FeatureStore.split` checks it (fletcher32, recipe, row shape,
finiteness, the key beside each row against the index), and the rows the split uses come out in blocks of at
most `block_rows`. Memory is one chunk (one piece, shuffled) plus one block, whatever the split's size.

Shuffled (training), the unit read is a piece of a chunk, about one HDF5 block (PIECE_BYTES, each checked by
its fletcher32), taken in a random order across the whole split: featurize writes chunks in manifest order,
so a chunk often holds one class, and a shuffle buffer fed whole chunks would serve batches of one class.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.store.chunks import HDF5_CHUNK_BYTES
from pipeline.store.index import FeatureStore, SplitRows, chunk_folder, rows_by_chunk

BLOCK_ROWS = 256  # rows handed out at a time
PIECE_BYTES = HDF5_CHUNK_BYTES  # what a shuffled read takes from a chunk at a time: one HDF5 block of rows


@dataclass(frozen=True)
class MapBlock:
    """Some rows of a stream: `order[i]` is the place in the stream of the row `features[i]`, labelled `labels[i]`."""

    order: np.ndarray  # (n,) int64
    features: np.ndarray  # (n, h, w, c) float32
    labels: np.ndarray  # (n,) int64


class MapStream:
    """The rows of one split (all, or those at `positions`) of a store, read block by block, never all at once."""

    def __init__(
        self, store: FeatureStore, split: str, positions: np.ndarray | None = None, block_rows: int = BLOCK_ROWS
    ) -> None:
        self.store = store
        self.split = split
        self.index: SplitRows = store.split_rows(split)
        everything = np.arange(len(self.index.keys), dtype=np.int64)
        self.positions = everything if positions is None else np.asarray(positions, dtype=np.int64)
        self.block_rows = block_rows
        store.check_chunks_present()

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def labels(self) -> np.ndarray:
        return self.index.labels[self.positions].astype(np.int64)

    @property
    def ids(self) -> list[str]:
        return [self.index.ids[p] for p in self.positions]

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.store.feature_shape

    def without(self, ids: set[str]) -> MapStream:
        """The same stream less the rows whose id is in `ids`."""
        keep = np.array([i not in ids for i in self.ids], dtype=bool)
        return MapStream(self.store, self.split, self.positions[keep], self.block_rows)

    def pieces(self, seed: int) -> list[tuple[str, int, np.ndarray]]:
        """(chunk, first row of a piece, places in the stream of the rows the piece holds), in an order
        shuffled by `seed` across every chunk of the split."""
        stored = np.dtype(self.store.attrs.get("storage_dtype") or "float32").itemsize
        piece_rows = max(1, PIECE_BYTES // (stored * int(np.prod(self.row_shape))))
        found = []
        for chunk, places in rows_by_chunk([self.index.chunks[p] for p in self.positions]).items():
            starts = self.index.rows[self.positions[places]] // piece_rows * piece_rows
            for start in np.unique(starts):
                found.append((chunk, int(start), places[starts == start]))
        return [found[i] for i in np.random.default_rng(seed).permutation(len(found))]

    def blocks(self, seed: int | None = None) -> Iterator[MapBlock]:
        """Every row once: in split order a chunk at a time, or (with `seed`) pieces of chunks in a random order."""
        if seed is not None:
            for chunk, start, places in self.pieces(seed):
                yield from self.read(chunk, places, start)
            return
        for chunk, places in rows_by_chunk([self.index.chunks[p] for p in self.positions]).items():
            yield from self.read(chunk, places)

    def read(self, chunk: str, places: np.ndarray, start: int | None = None) -> Iterator[MapBlock]:
        """The rows at `places` (all in `chunk`; from row `start` on, when a piece) read, checked, in blocks."""
        path = chunk_folder(self.store.path) / chunk
        positions = self.positions[places]
        rows = self.index.rows[positions]
        part = None if start is None else slice(start, int(rows.max()) + 1)
        data = self.store.read_chunk(path, part=part)
        self.store.check_identity(path, data.keys, self.index, positions)
        rows = rows - (start or 0)
        for first in range(0, len(rows), self.block_rows):
            block = slice(first, first + self.block_rows)
            yield MapBlock(
                places[block],
                data.features[rows[block]].astype(np.float32, copy=False),
                self.index.labels[positions[block]].astype(np.int64),
            )
