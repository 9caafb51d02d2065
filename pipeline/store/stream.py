"""One split's feature maps read chunk by chunk, for readers that need the (h, w, c) maps and must not hold them all.

A flatten head (the seed's dense head on VGG16's (4, 4, 512)) trains, validates and is evaluated on a
`MapStream`: each chunk is read and checked as `FeatureStore.split` checks it (fletcher32, recipe, row shape,
finiteness, the key beside each row against the index), and the rows the split uses come out in blocks of at
most `block_rows`. Memory is one chunk plus one block, whatever the split's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.store.index import FeatureStore, SplitRows, chunk_folder, rows_by_chunk

BLOCK_ROWS = 256  # rows handed out at a time


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

    def chunk_order(self, seed: int | None) -> list[tuple[str, np.ndarray]]:
        """(chunk, places in the stream of the rows it holds), in split order, or shuffled by `seed`."""
        groups = list(rows_by_chunk([self.index.chunks[p] for p in self.positions]).items())
        if seed is None:
            return groups
        return [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]

    def blocks(self, seed: int | None = None) -> Iterator[MapBlock]:
        """Every row once, a chunk at a time (in split order, or chunks shuffled by `seed`), each chunk checked."""
        for chunk, places in self.chunk_order(seed):
            path = chunk_folder(self.store.path) / chunk
            positions = self.positions[places]
            data = self.store.read_chunk(path)
            self.store.check_identity(path, data.keys, self.index, positions)
            rows = self.index.rows[positions]
            for start in range(0, len(rows), self.block_rows):
                part = slice(start, start + self.block_rows)
                yield MapBlock(
                    places[part],
                    data.features[rows[part]].astype(np.float32, copy=False),
                    self.index.labels[positions[part]].astype(np.int64),
                )
            del data

    def map_bytes(self) -> int:
        """What the split's maps would take in memory as float32."""
        return len(self) * int(np.prod(self.row_shape)) * 4
