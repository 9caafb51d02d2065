"""The local compute backend: tf.data decodes and preprocesses, the conv base runs in this process, and rows
go to the chunk pool chunk by chunk (pipeline.compute.protocol's contract)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from pipeline.compute.protocol import ComputeJob
from pipeline.core.errors import StoreError, raise_pending_interrupt
from pipeline.images.decode import image_batches
from pipeline.reporting.progress import Progress


class LocalBackend:
    """featurize.backend: local."""

    name = "local"

    def compute(self, job: ComputeJob) -> tuple[int, ...]:
        """Run the conv base over the job's images here, writing a chunk every `chunk_rows` rows."""
        spec, size, config = job.spec, job.backbone_config.input_size, job.config
        model = spec.inference_base(size, job.weights, job.recipe["precision"], job.recipe.get("mirror", False))
        shape = tuple(int(d) for d in model.output.shape[1:])
        if job.pool.feature_shape not in (None, shape):
            raise StoreError(
                f"The chunks in {job.pool.folder} hold rows of shape {job.pool.feature_shape}, the conv base makes "
                f"{shape}: delete that folder and rerun featurize."
            )
        job.pool.feature_shape = shape  # every chunk written is checked against it
        batches = image_batches(job.paths, size, config.resize, config.batch_size, spec.preprocess)
        with Progress(len(job.keys), f"featurize {spec.name}", "img") as bar:
            for features, chunk_keys in group_rows(run_model(model, batches, bar), job.keys, config.chunk_rows):
                job.pool.add(features, chunk_keys, config.storage_dtype)
        if steady := bar.steady_line():  # the rate without start-up: `python -m pipeline bench` reads it
            print(steady, file=sys.stderr)
        return shape


def run_model(model: keras.Model, batches: tf.data.Dataset, bar: Progress) -> Iterator[np.ndarray]:
    """The conv base's output for each batch, in order."""
    signature = [tf.TensorSpec((None, *model.input.shape[1:]), tf.float32)]  # one trace, whatever the batch
    infer: Callable = tf.function(lambda x: model(x, training=False), input_signature=signature)
    for batch in batches:
        features = tf.cast(infer(batch), tf.float32).numpy()
        raise_pending_interrupt()  # a signal whose exception landed in a finalizer, where Python ignores it
        bar.update(len(features))
        yield features


def group_rows(
    batches: Iterator[np.ndarray], keys: list[str], chunk_rows: int
) -> Iterator[tuple[np.ndarray, list[str]]]:
    """Regroup model batches into chunks of `chunk_rows` rows, each with its keys."""
    pending: list[np.ndarray] = []
    done = 0
    for features in batches:
        pending.append(features)
        while sum(len(p) for p in pending) >= chunk_rows:
            block = np.concatenate(pending)
            yield block[:chunk_rows], keys[done : done + chunk_rows]
            done += chunk_rows
            pending = [block[chunk_rows:]]
    block = np.concatenate(pending) if pending else np.empty((0,))
    if len(block):
        yield block, keys[done : done + len(block)]
        done += len(block)
    if done != len(keys):
        raise RuntimeError(f"The conv base produced {done} rows for {len(keys)} images.")
