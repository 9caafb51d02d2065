"""`python -m pipeline bench-train`: training speed of the scratch and augment convnets, before and after.

before: images read and decoded from disk every epoch, augmented by four Keras preprocessing layers plus a
        shear warp (five resamplings), as the methods did until the in-memory path;
after:  the split decoded once into memory as uint8, the book's augmentation as one composed affine warp
        (pipeline.images.augmentation), float32 in graph mode; plus the variants measured to choose it (bfloat16
        mixed precision, XLA). Each row: img/s of training steps and the achieved GFLOP/s against the model's
        training FLOPs (3x its forward FLOPs), as a fraction of this machine's float32 GEMM rate.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.core.config import AugmentationConfig
from pipeline.images.augmentation import augmenter
from pipeline.images.decode import decode_and_resize
from pipeline.tools.bench import gemm_gflops, model_flops, prepare_images
from pipeline.training.common import ImageSplit, compile_model, image_dataset, read_split
from pipeline.training.convnet import build_scratch_model

TRAINING_FLOPS_PER_FORWARD = 3  # forward, and a backward of about twice its cost


@dataclass(frozen=True)
class Variant:
    label: str
    in_memory: bool  # False: decode from disk every batch and augment with layers (the path before)
    precision: str = "float32"  # methods.scratch.precision: float32 | bfloat16
    jit: bool = False


VARIANTS = (
    Variant("before: from disk, layer augmentation, float32", in_memory=False),
    Variant("after: in memory, one warp, float32", in_memory=True),
    Variant("after + bfloat16 mixed precision", in_memory=True, precision="bfloat16"),
    Variant("after + XLA", in_memory=True, jit=True),
)


def layered_augmenter(config: AugmentationConfig, seed: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """The path before: RandomRotation, RandomTranslation, RandomZoom, RandomFlip, then a shear warp."""
    from pipeline.images.augmentation import WarpDraws, warp, warp_matrices

    fill = config.fill_mode
    layers = [
        keras.layers.RandomRotation(config.rotation / 360.0, fill_mode=fill, seed=seed),
        keras.layers.RandomTranslation(config.height_shift, config.width_shift, fill_mode=fill, seed=seed + 1),
        keras.layers.RandomZoom((-config.zoom, config.zoom), (-config.zoom, config.zoom), fill_mode=fill, seed=seed),
        keras.layers.RandomFlip("horizontal", seed=seed + 3),
    ]

    def augment(images: tf.Tensor) -> tf.Tensor:
        for layer in layers:
            images = layer(images, training=True)
        count = tf.shape(images)[0]
        zero, one = tf.zeros([count]), tf.ones([count])
        shear = tf.random.uniform([count], -config.shear, config.shear)
        draws = WarpDraws(zero, zero, zero, shear, one, one, zero)
        return warp(images, warp_matrices(draws, images.shape[1], images.shape[2]), fill)

    return augment


def streamed_dataset(split: ImageSplit, size: int, batch_size: int, augment) -> tf.data.Dataset:
    """The path before: every batch read and decoded from the files."""
    files = tf.data.Dataset.from_tensor_slices((tf.constant(split.paths), split.labels)).shuffle(len(split.paths))
    dataset = files.repeat().map(lambda p, y: (decode_and_resize(p, size, "bilinear"), y), num_parallel_calls=-1)
    dataset = dataset.batch(batch_size)
    if augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x), y), num_parallel_calls=-1)
    return dataset.prefetch(2)


def prepare(variant: Variant, split: ImageSplit, size: int, batch_size: int, augment: bool):
    """A compiled scratch (or augment) convnet and its endless training dataset, warmed up by two steps."""
    model = build_scratch_model(size, 2, 0.5 if augment else 0.0, variant.precision)
    compile_model(model, 1e-4, 2)
    model.jit_compile = variant.jit
    config = AugmentationConfig()
    if variant.in_memory:
        augment_fn = augmenter(config, 0) if augment else None
        data = image_dataset(split, size, "bilinear", batch_size, lambda x: x, augment_fn, 0, repeat=True)
    else:
        data = streamed_dataset(split, size, batch_size, layered_augmenter(config, 0) if augment else None)
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    return model, data


def images_per_second(model: keras.Model, data: tf.data.Dataset, steps: int, batch_size: int) -> float:
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - start)


def bench_training(
    source: Path, per_class: int, size: int, steps: int, rounds: int, variants: tuple[Variant, ...]
) -> list[str]:
    """Time each variant for scratch (batch 20, no augmentation) and augment (batch 32), in `rounds` interleaved
    rounds of `steps` steps (the median round counts, so a shared machine's load spreads over all rows)."""
    flops = TRAINING_FLOPS_PER_FORWARD * model_flops(build_scratch_model(size, 2))
    roof = gemm_gflops(tf.float32)
    lines = [
        f"scratch convnet at {size} px: {flops / TRAINING_FLOPS_PER_FORWARD / 1e9:.3f} GFLOP forward, "
        f"{flops / 1e9:.3f} GFLOP per training image; GEMM 2048^3 float32: {roof:.0f} GFLOP/s"
    ]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = prepare_images(source, per_class, 1, Path(tmp))
        split = read_split(manifest.parent, "train")
        for method, batch_size, augment in (("scratch", 20, False), ("augment", 32, True)):
            runs = [prepare(variant, split, size, batch_size, augment) for variant in variants]
            rates: list[list[float]] = [[] for _ in variants]
            for _ in range(rounds):
                for index, (model, data) in enumerate(runs):
                    rates[index].append(images_per_second(model, data, steps, batch_size))
            for variant, measured in zip(variants, rates, strict=True):
                rate = float(np.median(measured))
                achieved = rate * flops / 1e9
                lines.append(
                    f"{method} (batch {batch_size}), {variant.label}: {rate:.1f} img/s, {achieved:.0f} GFLOP/s "
                    f"({100 * achieved / roof:.0f}% of the GEMM rate; median of {rounds} x {steps} steps)"
                )
    return lines
