"""Image input for the conv bases: decode a file, resize it, preprocess batches (tf ops, in tf.data).

The one place images become model input, so featurize, its ray backend, predict, visualize and the methods
see the same pixels: decode (any format TensorFlow reads; grayscale and RGBA become RGB), resize to a square
with one of RESIZE_METHODS, float32 in [0, 255]; a backbone's `preprocess` then maps them to its input.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from pipeline.core.config import RESIZE_METHODS
from pipeline.core.errors import ConfigError

Preprocess = Callable[[tf.Tensor], tf.Tensor]


def check_resize(method: str, key: str = "featurize.resize") -> None:
    if method not in RESIZE_METHODS:
        raise ConfigError(f"{key}: received {method!r}; allowed: {', '.join(RESIZE_METHODS)}")


def decode_image(path: tf.Tensor | str) -> tf.Tensor:
    """File path -> uint8 RGB (H, W, 3), the first frame of an animation."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def decode_and_resize(path: tf.Tensor | str, size: int, method: str) -> tf.Tensor:
    """File path -> float32 RGB (size, size, 3) in [0, 255]. Grayscale and RGBA become RGB."""
    image = tf.image.resize(decode_image(path), (size, size), method=method)
    return tf.ensure_shape(tf.cast(image, tf.float32), (size, size, 3))


def image_batches(paths: list[str], size: int, method: str, batch_size: int, preprocess: Preprocess) -> tf.data.Dataset:
    """Stream preprocessed batches from disk: parallel decode, deterministic order, prefetch."""
    check_resize(method)
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(paths, dtype=tf.string))
    dataset = dataset.map(
        lambda p: decode_and_resize(p, size, method), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return dataset.batch(batch_size).map(preprocess).prefetch(tf.data.AUTOTUNE)
