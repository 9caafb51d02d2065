"""The book's augmentation as one composed warp, checked against Keras 2.0's ImageDataGenerator arithmetic
(its matrices, offset and scipy resampling, transcribed here) and against points mapped by hand."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from pipeline.core.config import AugmentationConfig
from pipeline.images.augmentation import WarpDraws, augmenter, draw_warps, warp, warp_matrices

PARAMS = {"theta": 0.5, "tx": 3.0, "ty": -5.0, "shear": 0.2, "zx": 0.9, "zy": 1.15, "flip": 1.0}
SCIPY_MODE = {"nearest": "nearest", "reflect": "reflect", "constant": "grid-constant"}


def keras2_apply(x: np.ndarray, theta, tx, ty, shear, zx, zy, flip, fill_mode: str, order: int = 0) -> np.ndarray:
    """Keras 2.0 random_transform after drawing: rotation @ shift @ shear @ zoom about (h/2 + 0.5, w/2 + 0.5),
    scipy affine_transform per channel (Keras 2.0: order 0; order 1 is the bilinear default here), then flip_axis
    on the columns."""
    c, s = np.cos(theta), np.sin(theta)
    matrix = (
        np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
        @ np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]])
        @ np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1.0]])
        @ np.diag([zx, zy, 1.0])
    )
    o_x, o_y = x.shape[0] / 2 + 0.5, x.shape[1] / 2 + 0.5
    offset = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1.0]])
    reset = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1.0]])
    matrix = offset @ matrix @ reset
    channels = [
        ndimage.affine_transform(x[..., k], matrix[:2, :2], matrix[:2, 2], order=order, mode=fill_mode, cval=0.0)
        for k in range(x.shape[-1])
    ]
    out = np.stack(channels, axis=-1)
    return out[:, ::-1] if flip else out


def draws(**values: float) -> WarpDraws:
    return WarpDraws(**{key: tf.constant([value], tf.float32) for key, value in values.items()})


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return ndimage.gaussian_filter(rng.uniform(0, 255, (30, 40, 3)), (2, 2, 0)).astype("float32")


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "constant"])
@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_one_warp_equals_keras2_image_data_generator(image: np.ndarray, fill_mode: str, flip: float) -> None:
    params = {**PARAMS, "flip": flip}
    ours = warp(tf.constant(image[None]), warp_matrices(draws(**params), 30, 40), fill_mode).numpy()[0]
    reference = keras2_apply(image.astype("float64"), **params, fill_mode=SCIPY_MODE[fill_mode], order=1)
    np.testing.assert_allclose(ours, reference, atol=2e-3)


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "constant"])
@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_nearest_interpolation_equals_keras2_order_0(image: np.ndarray, fill_mode: str, flip: float) -> None:
    """Keras 2.0 resampled with order 0: each output pixel copies its nearest input pixel, the same one here
    (float32 coordinates could round apart from scipy's float64 only exactly halfway between two pixels)."""
    params = {**PARAMS, "flip": flip}
    matrices = warp_matrices(draws(**params), 30, 40)
    ours = warp(tf.constant(image[None]), matrices, fill_mode, "nearest").numpy()[0]
    reference = keras2_apply(image.astype("float64"), **params, fill_mode=SCIPY_MODE[fill_mode], order=0)
    same = np.isclose(ours, reference, atol=1e-3).all(axis=-1)
    assert same.all(), same.mean()
    assert not np.isclose(warp(tf.constant(image[None]), matrices, fill_mode).numpy()[0], reference).all()


def test_matrix_maps_points_as_composed_by_hand() -> None:
    """Shear alone about the center: output (r, c) reads input (r - sin(s) dc, cos(s) dc) + center."""
    height, width, s = 30, 40, 0.3
    matrix = warp_matrices(draws(theta=0, tx=0, ty=0, shear=s, zx=1, zy=1, flip=0), height, width).numpy()[0]
    o_r, o_c = height / 2 + 0.5, width / 2 + 0.5
    for r, c in [(0, 0), (7, 31), (29, 39)]:
        expected = (r - np.sin(s) * (c - o_c), o_c + np.cos(s) * (c - o_c), 1)
        np.testing.assert_allclose(matrix @ (r, c, 1), expected, atol=1e-4)
    # rotation by 90 degrees then a shift of 2 rows, and a flip: output column c reads the mirror column first
    matrix = warp_matrices(draws(theta=np.pi / 2, tx=2, ty=0, shear=0, zx=1, zy=1, flip=1), height, width)
    r, c = 4.0, 9.0
    mirrored = width - 1 - c
    expected = (o_r - (mirrored - o_c), o_c + (r - o_r) + 2)  # [[0,-1],[1,0]] @ (dr + 2, dc)
    np.testing.assert_allclose((matrix.numpy()[0] @ (r, c, 1))[:2], expected, atol=1e-4)


def test_a_bright_pixel_lands_where_the_inverse_matrix_says() -> None:
    image = np.zeros((1, 41, 41, 1), np.float32)
    image[0, 10, 25, 0] = 1000.0
    d = draws(theta=0.4, tx=-3, ty=4, shear=0.15, zx=1.1, zy=0.95, flip=1)
    matrix = warp_matrices(d, 41, 41).numpy()[0]
    out = warp(tf.constant(image), tf.constant(matrix[None]), "constant").numpy()[0, ..., 0]
    landed = np.linalg.solve(matrix, (10.0, 25.0, 1.0))[:2]
    peak = np.unravel_index(np.argmax(out), out.shape)
    assert np.abs(np.array(peak) - landed).max() <= 1.0


def test_draws_have_the_seeds_ranges() -> None:
    config = AugmentationConfig(rotation=40, width_shift=0.2, height_shift=0.1, shear=0.2, zoom=0.2)
    d = draw_warps(tf.constant(4000), 150, 100, config, keras.random.SeedGenerator(1))
    assert np.abs(d.theta).max() <= np.deg2rad(40) + 1e-6 and np.abs(d.theta).max() > np.deg2rad(38)
    assert np.abs(d.tx).max() <= 15 + 1e-4 and np.abs(d.tx).max() > 14  # height fraction x rows
    assert np.abs(d.ty).max() <= 20 + 1e-4 and np.abs(d.ty).max() > 19  # width fraction x columns
    assert np.abs(d.shear).max() <= 0.2 + 1e-6  # radians
    assert float(tf.reduce_min(d.zx)) >= 0.8 - 1e-6 and float(tf.reduce_max(d.zy)) <= 1.2 + 1e-6
    assert abs(np.corrcoef(d.zx, d.zy)[0, 1]) < 0.1  # rows and columns zoom independently
    assert 0.45 < float(tf.reduce_mean(d.flip)) < 0.55


def test_augmenter_keeps_shape_and_range_and_varies() -> None:
    images = tf.constant(np.random.default_rng(1).uniform(0, 255, (4, 40, 40, 3)).astype("float32"))
    augment = augmenter(AugmentationConfig(), seed=3)
    first, second = augment(images).numpy(), augment(images).numpy()
    assert first.shape == images.shape and first.min() >= 0 and first.max() <= 255
    assert not np.allclose(first, images) and not np.allclose(first, second)
    flip_only = augmenter(AugmentationConfig(0, 0, 0, 0, 0, True), seed=3)(images).numpy()
    for out, original in zip(flip_only, images.numpy(), strict=True):
        assert np.allclose(out, original, atol=1e-3) or np.allclose(out, original[:, ::-1], atol=1e-3)


def test_every_pass_over_a_dataset_draws_new_transforms() -> None:
    """One-pass epochs start a new iterator each time: the draws must not restart (as op-seeded ops would)."""
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    augment = augmenter(AugmentationConfig(), seed=3)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(4).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    first, second = ([batch.numpy() for batch in dataset] for _ in range(2))
    assert not np.allclose(first[0], first[1]) and not np.allclose(first[0], second[0])


def test_the_schema_refuses_what_image_data_generator_would_not_take() -> None:
    for bad in ({"fill_mode": "mirror"}, {"rotation": -1}, {"zoom": 1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AugmentationConfig(**bad)
