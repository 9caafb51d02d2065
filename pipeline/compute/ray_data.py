"""The `ray` featurize backend: the conv-base pass on Ray Data, writing chunks into the same pool.

featurize() hands this backend what it hands the local one: the images no chunk holds yet
(`ChunkPool.missing`), in the same order. They are grouped as the local path groups them, `chunk_rows` per
chunk, into a Ray Dataset with one row (keys, paths) per chunk; `map_batches` sends each row to one actor of
a fixed pool. An actor (FeaturizeActor) builds the conv base once, then decodes and preprocesses with the
local path's own code (`image_batches`: the same tf ops, so the same pixels), runs the model and writes the
chunk with `write_chunk`, the code `ChunkPool.add` runs. Actors return only the chunk's name and row count;
the driver adopts those chunks into its pool and featurize() writes the index with the same `write_index` as
the local path: the merge is the HDF5 virtual-dataset index over the chunks, whichever process wrote them.

Actors write chunks themselves, so features never travel through Ray's object store or the driver. On a
cluster of several machines, the chunk folder and the images must therefore be on storage every node
mounts at the same path (NFS, Lustre, EFS, a FUSE-mounted bucket), and every node needs this project
installed with the same library versions. A killed run leaves whole chunks only; the rerun skips them.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from pipeline.backbones import BackboneSpec, ResolvedWeights, get_backbone
from pipeline.compute.protocol import ComputeJob
from pipeline.core.config import BackboneConfig, FeaturizeConfig, RayConfig
from pipeline.core.errors import ConfigError
from pipeline.images.decode import image_batches
from pipeline.store.chunks import ChunkPool, fingerprint, write_chunk
from pipeline.store.index import check_weights

LOCAL_ADDRESSES = ("", "local")


def import_ray() -> Any:
    """Ray is an optional dependency: import it only when the ray backend runs."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the `data` extra)
    except ImportError as err:
        raise ConfigError(
            f"featurize.backend is 'ray' but Ray Data is not installed ({err}). "
            "Install it with `pip install -e '.[ray]'`, or set featurize.backend: local."
        ) from err
    return ray


def check_settings(settings: RayConfig) -> None:
    if settings.actors < 1:
        raise ConfigError(f"featurize.ray.actors must be at least 1. Received: actors={settings.actors}")
    if settings.cpus_per_actor < 0 or settings.gpus_per_actor < 0:
        raise ConfigError(
            "featurize.ray.cpus_per_actor and gpus_per_actor must not be negative. Received: "
            f"cpus_per_actor={settings.cpus_per_actor}, gpus_per_actor={settings.gpus_per_actor}"
        )


class FeaturizeActor:
    """One Ray actor: builds the conv base once, then turns each row (one chunk's keys and paths) into a chunk."""

    def __init__(
        self, backbone: str, backbone_config: BackboneConfig, config: FeaturizeConfig, recipe: dict, folder: str
    ) -> None:
        threads = int(config.ray.cpus_per_actor)
        if threads >= 1:  # the CPUs Ray reserved for this actor, not every core of the node
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        self.spec = get_backbone(backbone)
        weights = self.spec.resolve_weights(backbone_config.weights)
        check_weights(
            recipe,
            weights,
            "the driver's recipe",
            f"Every node ({platform.node()} here) must resolve the same weights file.",
        )
        model = self.spec.inference_base(
            backbone_config.input_size, weights, recipe["precision"], recipe.get("mirror", False)
        )
        self.infer = tf.function(lambda x: model(x, training=False))
        self.size, self.config = backbone_config.input_size, config
        self.batch_size = config.ray.batch_size or config.batch_size
        self.folder, self.fingerprint = Path(folder), fingerprint(recipe)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names, counts = [], []
        for keys, paths in zip(batch["keys"], batch["paths"], strict=True):  # one row = one chunk's images
            keys = [str(key) for key in keys]
            images = image_batches(
                [str(p) for p in paths], self.size, self.config.resize, self.batch_size, self.spec.preprocess
            )
            features = np.concatenate([tf.cast(self.infer(x), tf.float32).numpy() for x in images])  # as run_model
            if len(features) != len(keys):
                raise RuntimeError(f"The conv base produced {len(features)} rows for {len(keys)} images.")
            names.append(write_chunk(self.folder, self.fingerprint, features, keys, self.config.storage_dtype).name)
            counts.append(len(keys))
        return {"chunk": np.array(names), "rows": np.array(counts)}


def connect(ray: Any, settings: RayConfig) -> bool:
    """Join the Ray named by featurize.ray.address, or start one here; False if this process already had one."""
    if ray.is_initialized():
        return False
    address = settings.address.strip()
    if address in LOCAL_ADDRESSES:
        ray.init(num_cpus=settings.num_cpus or None, include_dashboard=False)
    else:  # auto: the cluster `ray start` runs on this node; ray://host:10001: a remote cluster's client server
        ray.init(address=address)
    return True


class RayBackend:
    """featurize.backend: ray."""

    name = "ray"

    def compute(self, job: ComputeJob) -> tuple[int, ...]:
        return compute_ray(
            job.spec, job.weights, job.recipe, job.backbone_config, job.config, job.paths, job.keys, job.pool
        )


def compute_ray(
    spec: BackboneSpec,
    weights: ResolvedWeights,
    recipe: dict,
    backbone_config: BackboneConfig,
    config: FeaturizeConfig,
    paths: list[str],
    keys: list[str],
    pool: ChunkPool,
) -> tuple[int, ...]:
    """The ray backend (compute_local's signature): actors write one chunk per block; the driver adopts them."""
    ray = import_ray()
    settings = config.ray
    check_settings(settings)
    step = config.chunk_rows  # the local path's grouping (group_rows): the same chunks, name for name
    units = [
        {"keys": keys[i : i + step], "paths": [str(Path(p).resolve()) for p in paths[i : i + step]]}
        for i in range(0, len(keys), step)
    ]
    connected = connect(ray, settings)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False  # the tqdm bar below counts rows
        chunks = ray.data.from_items(units, override_num_blocks=len(units)).map_batches(
            FeaturizeActor,
            batch_size=1,  # one chunk per call: the unit of work, of retry and of resume
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=settings.actors),
            num_cpus=settings.cpus_per_actor,
            num_gpus=settings.gpus_per_actor,
            fn_constructor_args=(spec.name, backbone_config, config, recipe, str(pool.folder.resolve())),
        )
        with tqdm(total=len(keys), desc=f"featurize {spec.name} (ray)", unit="img", disable=None) as bar:
            for batch in chunks.iter_batches(batch_size=None, batch_format="numpy"):
                for name, rows in zip(batch["chunk"], batch["rows"], strict=True):
                    pool.adopt(str(name))
                    bar.update(int(rows))
    finally:
        if connected:
            ray.shutdown()
    left = pool.missing(keys)
    if left:
        raise RuntimeError(f"The Ray actors wrote no rows for {len(left)} of {len(keys)} images, e.g. {left[0]}.")
    return tuple(pool.feature_shape or ())
