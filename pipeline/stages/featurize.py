"""Stage featurize: run a pretrained conv base once per image, caching rows by content, then index them.

Rows are keyed by the image's sha256 (from the manifest) within a fingerprint of how features are made
(backbone, weights hash, input size, resize, preprocessing as numbers, dtype, precision, recipe version).
Only images that no chunk holds are run through the conv base: a rerun after a crash resumes from the last
whole chunk, and adding images computes just the new ones. `--shard i/n` computes one slice of the missing
rows and leaves indexing to `store merge`, so any scheduler can run the shards.
"""

from __future__ import annotations

import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

from pipeline.backbones import BackboneSpec, ResolvedWeights, get_backbone
from pipeline.backbones.registry import native_bf16, resolve_precision
from pipeline.compute.local import LocalBackend
from pipeline.compute.protocol import ComputeBackend, ComputeJob
from pipeline.compute.ray_data import RayBackend
from pipeline.core.config import SPLITS, BackboneConfig, FeaturizeConfig
from pipeline.core.errors import ChunkError, ConfigError, InputError, MissingInputError, StoreError
from pipeline.store.chunks import ChunkPool, fingerprint
from pipeline.store.index import FeatureStore, SplitIndex, chunk_folder, write_index
from pipeline.store.manifest import ManifestRow, classes_of, read_manifest

RECIPE_VERSION = 2  # bump when decoding, resizing or the conv-base graph change the numbers a row holds


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: a contiguous slice of the manifest's distinct images."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
        if not match or not 0 <= int(match[1]) < int(match[2]):
            raise InputError(f"A shard is 'i/n' with 0 <= i < n. Received: shard={text!r}")
        return cls(int(match[1]), int(match[2]))

    def select(self, keys: list[str]) -> list[str]:
        start, stop = len(keys) * self.index // self.count, len(keys) * (self.index + 1) // self.count
        return keys[start:stop]


@dataclass(frozen=True)
class FeaturizeReport:
    path: Path
    images: int
    computed: int
    seconds: float
    feature_shape: tuple[int, ...]
    indexed: bool
    damaged: tuple[ChunkError, ...] = ()  # chunks found damaged, deleted, their rows recomputed
    notes: tuple[str, ...] = ()  # what the user should know (e.g. the precision an existing store imposed)

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds and self.computed else float("nan")


class FeaturizeInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during featurize; the message says what was kept and that a rerun resumes."""


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
    }


def feature_recipe(
    spec: BackboneSpec, weights: ResolvedWeights, input_size: int, config: FeaturizeConfig, precision: str
) -> dict:
    """Everything besides the image that determines a feature row, as data; its hash keys the chunk pool.

    No prose and nothing about the machine: the preprocessing is its numbers (channel order, offset, scale),
    `precision` is the one chosen (`choose_precision`), and RECIPE_VERSION changes only when the computation
    itself does (decode, resize, model graph), so rewording docs or refactoring code recomputes nothing.
    """
    return {
        "recipe_version": RECIPE_VERSION,
        "backbone": spec.name,
        "weights_sha256": weights.fingerprint_id,
        "input_size": input_size,
        "resize": config.resize,
        "preprocessing": spec.preprocessing.as_dict(),
        "storage_dtype": config.storage_dtype,
        "precision": precision,
        **({"mirror": True} if config.mirror else {}),  # absent when off: older stores keep their fingerprint
    }


def recorded_precision(store_path: Path) -> str | None:
    """The precision an existing store's features were computed in (None: no readable store there)."""
    try:
        return FeatureStore(store_path).attrs.get("precision") if store_path.is_file() else None
    except (OSError, StoreError):
        return None


def choose_precision(setting: str, store_path: Path) -> tuple[str, list[str]]:
    """The precision to compute new rows in, and notes for the user.

    An explicit setting wins. `auto` meets an existing store by keeping the store's precision, so a machine
    that would choose otherwise (a teammate's CPU without bf16) extends the team's store instead of silently
    recomputing and deleting it; the note says so, and that bf16 is slow where it is emulated.
    """
    here = resolve_precision(setting)
    recorded = recorded_precision(store_path) if setting == "auto" else None
    if recorded is None or recorded == here:
        return here, []
    slow = (
        " bfloat16 is emulated on this CPU (no AVX512_BF16/AMX), so new rows compute slowly."
        if (recorded == "bfloat16" and not native_bf16())
        else ""
    )
    note = (
        f"featurize.precision auto: {store_path} holds {recorded} features, so new rows are computed in {recorded} "
        f"too (this machine alone would choose {here}).{slow} Set featurize.precision: {here} to recompute every "
        f"row in {here} instead."
    )
    return recorded, [note]


def store_attrs(recipe: dict, weights: ResolvedWeights, spec: BackboneSpec, classes: list[str], shape) -> dict:
    return {
        **recipe,
        "weights": weights.identifier,
        "fingerprint": fingerprint(recipe),
        "default_pooling": spec.default_pooling,
        "feature_shape": list(shape),
        "classes": classes,
        "versions": library_versions(),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
    }


def featurize(
    backbone: str,
    backbone_config: BackboneConfig,
    config: FeaturizeConfig,
    manifest: Path,
    out_path: Path,
    shard: Shard | None = None,
    compute_missing: bool = True,
) -> FeaturizeReport:
    """Compute the rows no chunk holds yet (of one shard, or all), then write the index unless sharded.

    With compute_missing=False (`store merge`) nothing is computed: missing rows are an error.
    """
    spec = get_backbone(backbone)
    weights = spec.resolve_weights(backbone_config.weights)
    precision, notes = choose_precision(config.precision, out_path)
    recipe = feature_recipe(spec, weights, backbone_config.input_size, config, precision)
    rows = read_manifest(manifest)
    check_images_exist(rows, manifest)
    pool = ChunkPool(chunk_folder(out_path), fingerprint(recipe), config.storage_dtype)
    pool.remove_partials()
    damaged = tuple(pool.discard_damaged())
    wanted = list(dict.fromkeys(row.sha256 for row in rows))
    missing = pool.missing(shard.select(wanted) if shard else wanted)
    if missing and not compute_missing:
        raise StoreError(
            f"Cannot merge {out_path}: {len(missing)} of {len(wanted)} images have no features in "
            f"{pool.folder} yet. Run the missing shards (`python -m pipeline featurize {backbone} --shard i/n`)."
        )
    start = time.perf_counter()
    shape = pool.feature_shape
    if missing:
        paths = {row.sha256: str(manifest.parent / row.path) for row in reversed(rows)}
        job = ComputeJob(spec, weights, recipe, backbone_config, config, [paths[k] for k in missing], missing, pool)
        kept_before = set(pool.rows_per_chunk)
        try:
            shape = compute_backend(config.backend).compute(job)
        except KeyboardInterrupt as err:
            raise interrupted(backbone, pool, kept_before, wanted, shard) from err
    seconds = time.perf_counter() - start
    if shard is None:
        if shape is None:
            raise StoreError(f"No images to featurize: {manifest} lists none.")
        classes = classes_of(rows)
        write_index(
            out_path,
            store_attrs(recipe, weights, spec, classes, shape),
            split_indexes(rows, classes),
            pool,
            shape,
            config.storage_dtype,
        )
        for path in pool.unreferenced({pool.refs[key].chunk for key in wanted}):
            path.unlink()
    return FeaturizeReport(
        out_path, len(rows), len(missing), seconds, tuple(shape or ()), shard is None, damaged, tuple(notes)
    )


def interrupted(
    backbone: str, pool: ChunkPool, kept_before: set[str], wanted: list[str], shard: Shard | None
) -> FeaturizeInterrupted:
    """What an interrupted run kept (whole chunks only) and how to resume."""
    new = [name for name in pool.rows_per_chunk if name not in kept_before]
    rows = sum(pool.rows_per_chunk[name] for name in new)
    left = len(pool.missing(wanted))
    again = f"python -m pipeline featurize {backbone}" + (f" --shard {shard.index}/{shard.count}" if shard else "")
    return FeaturizeInterrupted(
        f"featurize {backbone} interrupted: kept {len(new)} whole chunk(s) written in this run ({rows} rows) in "
        f"{pool.folder}; {len(wanted) - left} of {len(wanted)} images have features, the index was not updated. "
        f"Rerun `{again}` (or `dvc repro`) to resume: it computes only the {left} missing."
    )


BACKENDS: dict[str, ComputeBackend] = {backend.name: backend for backend in (LocalBackend(), RayBackend())}


def compute_backend(name: str) -> ComputeBackend:
    """featurize.backend -> the backend that computes missing rows into the pool."""
    if name not in BACKENDS:
        raise ConfigError(f"featurize.backend: received {name!r}; allowed: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def merge(
    backbone: str, backbone_config: BackboneConfig, config: FeaturizeConfig, manifest: Path, out_path: Path
) -> FeaturizeReport:
    """Index the rows that shards computed; an error counts the images no shard has computed yet."""
    return featurize(backbone, backbone_config, config, manifest, out_path, compute_missing=False)


def split_indexes(rows: list[ManifestRow], classes: list[str]) -> dict[str, SplitIndex]:
    return {
        split: SplitIndex(
            ids=[row.path for row in rows if row.split == split],
            labels=[classes.index(row.cls) for row in rows if row.split == split],
            keys=[row.sha256 for row in rows if row.split == split],
        )
        for split in SPLITS
    }


def check_images_exist(rows: list[ManifestRow], manifest: Path) -> None:
    missing = [row.path for row in rows if not (manifest.parent / row.path).is_file()]
    if missing:
        raise MissingInputError(
            f"{len(missing)} image(s) listed in {manifest} are missing, e.g. {missing[:3]}. Re-run the split stage."
        )
