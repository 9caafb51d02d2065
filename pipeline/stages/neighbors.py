"""`python -m pipeline neighbors IMAGE`: the images of a store nearest to IMAGE, as a table and a contact sheet.

An image the store holds (same sha256 as one of its rows) is looked up; any other image is run through
the conv base that made the store, with the store's own recipe (input size, resize, preprocessing,
precision, weights checked by sha256), as `predict` does. The search is exact: cosine distance of the
pooled features against every row, one matrix product.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.config import BackboneConfig
from pipeline.reporting.contact_sheet import contact_sheet
from pipeline.store.pooled import PooledRows, load_pooled
from pipeline.store.similarity import nearest, unit_vectors


@dataclass(frozen=True)
class Neighbor:
    rank: int
    id: str
    split: str
    label: str
    distance: float


@dataclass(frozen=True)
class NeighborsResult:
    image: Path
    in_store: bool  # True: the image's features came from the store (a row with its sha256)
    neighbors: list[Neighbor]


def featurize_image(image: Path, store_path: Path, backbone_config: BackboneConfig) -> np.ndarray:
    """The (1, h, w, c) features of one image file, made the way the store's rows were."""
    from pipeline.compute.conv_base import conv_base_of_store
    from pipeline.images.decode import image_batches

    store, spec, base = conv_base_of_store(store_path, backbone_config)
    batches = image_batches([str(image)], int(store.attrs["input_size"]), store.attrs["resize"], 1, spec.preprocess)
    return np.concatenate([np.asarray(base.predict_on_batch(batch), dtype=np.float32) for batch in batches])


def query_vector(
    image: Path, rows: PooledRows, store_path: Path, backbone_config: BackboneConfig, pooling: str
) -> tuple[np.ndarray, bool]:
    """The image's unit vector: its store row when the store holds its content, else computed now."""
    key = hashlib.sha256(image.read_bytes()).hexdigest()
    if key in rows.keys:
        return unit_vectors(rows.features[rows.keys.index(key)][None], "flatten"), True
    return unit_vectors(featurize_image(image, store_path, backbone_config), pooling), False


def neighbors(
    image: Path, store_path: Path, split_dir: Path, backbone_config: BackboneConfig, k: int, pooling: str = "avg"
) -> NeighborsResult:
    """The k rows nearest to `image` (the image's own row, when it is one of the store's files, left out)."""
    if not image.is_file():
        raise FileNotFoundError(f"Image file not found: {image}")
    if k < 1:
        raise ValueError(f"-k must be at least 1. Received: k={k}")
    rows = load_pooled(store_path, pooling)
    query, in_store = query_vector(image, rows, store_path, backbone_config, pooling)
    own = [i for i, row_id in enumerate(rows.ids) if (split_dir / row_id).resolve() == image.resolve()]
    vectors = unit_vectors(rows.features, "flatten")
    found = nearest(query, vectors, min(k + len(own), len(rows)))
    picks = [(int(i), float(d)) for i, d in zip(found.indices[0], found.distances[0], strict=True) if i not in own]
    return NeighborsResult(
        image,
        in_store,
        [
            Neighbor(rank, rows.ids[i], str(rows.splits[i]), rows.classes[rows.labels[i]], distance)
            for rank, (i, distance) in enumerate(picks[:k], start=1)
        ],
    )


def table(result: NeighborsResult) -> list[str]:
    lines = ["rank\tdistance\tsplit\tlabel\tid"]
    lines += [f"{n.rank}\t{n.distance:.4f}\t{n.split}\t{n.label}\t{n.id}" for n in result.neighbors]
    return lines


def short(row_id: str) -> str:
    return row_id.rsplit("/", 1)[-1]


def write_sheet(result: NeighborsResult, split_dir: Path, out: Path) -> Path:
    """The query image, then its neighbors nearest first, captioned with rank, id and distance."""
    images = [result.image] + [split_dir / n.id for n in result.neighbors]
    captions = [f"query\n{result.image.name}\n" + ("(in the store)" if result.in_store else "(featurized now)")]
    captions += [f"{n.rank}. {short(n.id)}\n{n.split} {n.label}\nd={n.distance:.4f}" for n in result.neighbors]
    return contact_sheet(images, captions, out, columns=min(len(images), 9), title=f"nearest to {result.image}")
