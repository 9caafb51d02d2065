"""The book's image augmentation (Keras 2.0's ImageDataGenerator) as ONE composed affine warp per image.

ImageDataGenerator.random_transform drew, per image, a rotation angle (degrees), a shift along rows (height
fraction) and columns (width fraction), a shear angle (radians: Keras 2.0 read shear_range so), a zoom for
rows and one for columns (independently in [1 - zoom, 1 + zoom]) and a horizontal flip; it multiplied
rotation @ shift @ shear @ zoom into one matrix mapping an output pixel (row, col) to the input pixel it
reads, moved it about the point (h / 2 + 0.5, w / 2 + 0.5), resampled it with scipy's affine_transform at
order 0 (the nearest input pixel; `interpolation: nearest` here, bilinear by default) with its fill mode, and
flipped the result. Here the same matrices, with the flip folded in, are built for the whole
batch and applied by one `ImageProjectiveTransformV3` call instead of five layers with five resamplings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

from pipeline.core.config import AugmentationConfig


@dataclass(frozen=True)
class WarpDraws:
    """Per-image transform parameters, each of shape (N,), as Keras 2.0 drew them (flip: 1.0 or 0.0)."""

    theta: tf.Tensor  # rotation, radians
    tx: tf.Tensor  # shift along rows, pixels
    ty: tf.Tensor  # shift along columns, pixels
    shear: tf.Tensor  # radians
    zx: tf.Tensor  # zoom of rows
    zy: tf.Tensor  # zoom of columns
    flip: tf.Tensor


def draw_warps(
    count: tf.Tensor, height: int, width: int, config: AugmentationConfig, seed: keras.random.SeedGenerator
) -> WarpDraws:
    """Draw each image's parameters as ImageDataGenerator.random_transform did (uniform, independent). The
    generator's state advances with every draw, so each batch, epoch and new iterator gets new transforms."""

    def uniform(bound: float, center: float = 0.0) -> tf.Tensor:
        if not bound:
            return tf.fill([count], tf.constant(center, tf.float32))
        return keras.random.uniform([count], center - bound, center + bound, seed=seed)

    flip = tf.zeros([count])
    if config.horizontal_flip:
        flip = tf.cast(keras.random.uniform([count], seed=seed) < 0.5, tf.float32)
    return WarpDraws(
        theta=uniform(config.rotation) * (3.141592653589793 / 180.0),
        tx=uniform(config.height_shift) * height,
        ty=uniform(config.width_shift) * width,
        shear=uniform(config.shear),
        zx=uniform(config.zoom, 1.0),
        zy=uniform(config.zoom, 1.0),
        flip=flip,
    )


def _matrices(rows: list[list[tf.Tensor]]) -> tf.Tensor:
    """A batch of 3x3 matrices (N, 3, 3) from nested lists of (N,) tensors."""
    return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)


def warp_matrices(draws: WarpDraws, height: int, width: int) -> tf.Tensor:
    """(N, 3, 3) homogeneous matrices mapping an output (row, col) to the input (row, col) it reads: Keras 2.0's
    offset_center(rotation @ shift @ shear @ zoom), times the horizontal flip of the output."""
    one, zero = tf.ones_like(draws.theta), tf.zeros_like(draws.theta)
    cos, sin = tf.cos(draws.theta), tf.sin(draws.theta)
    rotation = _matrices([[cos, -sin, zero], [sin, cos, zero], [zero, zero, one]])
    shift = _matrices([[one, zero, draws.tx], [zero, one, draws.ty], [zero, zero, one]])
    shear = _matrices([[one, -tf.sin(draws.shear), zero], [zero, tf.cos(draws.shear), zero], [zero, zero, one]])
    zoom = _matrices([[draws.zx, zero, zero], [zero, draws.zy, zero], [zero, zero, one]])
    o_row, o_col = height / 2 + 0.5, width / 2 + 0.5  # Keras 2.0's transform_matrix_offset_center
    offset = _matrices([[one, zero, one * o_row], [zero, one, one * o_col], [zero, zero, one]])
    reset = _matrices([[one, zero, -o_row * one], [zero, one, -o_col * one], [zero, zero, one]])
    mirrored = 1.0 - 2.0 * draws.flip  # col -> (width - 1) - col where flip
    flip = _matrices([[one, zero, zero], [zero, mirrored, draws.flip * (width - 1)], [zero, zero, one]])
    return offset @ rotation @ shift @ shear @ zoom @ reset @ flip


def projective_transforms(matrices: tf.Tensor) -> tf.Tensor:
    """(N, 3, 3) (row, col) matrices -> ImageProjectiveTransform's (N, 8) rows [a0 a1 a2 b0 b1 b2 0 0], which map
    an output (x, y) = (col, row) to the input (a0 x + a1 y + a2, b0 x + b1 y + b2)."""
    m = matrices
    zero = tf.zeros_like(m[:, 0, 0])
    return tf.stack([m[:, 1, 1], m[:, 1, 0], m[:, 1, 2], m[:, 0, 1], m[:, 0, 0], m[:, 0, 2], zero, zero], axis=1)


def warp(
    images: tf.Tensor, matrices: tf.Tensor, fill_mode: str = "nearest", interpolation: str = "bilinear"
) -> tf.Tensor:
    """Resample a float batch (N, H, W, C) once through per-image (row, col) matrices, like scipy's
    affine_transform (bilinear: order 1, nearest: order 0) with the same fill mode (constant: 0)."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=projective_transforms(matrices),
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation=interpolation.upper(),
        fill_mode=fill_mode.upper(),
    )


def augmenter(config: AugmentationConfig, seed: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """Float batch (N, H, W, C) in [0, 255] -> the same batch augmented as the book's ImageDataGenerator (the
    params schema has checked the ranges and the fill mode)."""
    generator = keras.random.SeedGenerator(seed)

    def augment(images: tf.Tensor) -> tf.Tensor:
        height, width = images.shape[1], images.shape[2]
        draws = draw_warps(tf.shape(images)[0], height, width, config, generator)
        return warp(images, warp_matrices(draws, height, width), config.fill_mode, config.interpolation)

    return augment
