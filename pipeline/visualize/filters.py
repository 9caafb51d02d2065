"""Filter patterns: the input each filter of a conv layer responds to most, found by gradient ascent.

All filters ascend together, one image per filter in one batch: a step is one forward and one backward pass
of the model cut at the layer, whatever the number of filters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from pipeline.backbones import get_backbone
from pipeline.core.errors import InputError
from pipeline.visualize.figures import deprocess, mosaic, tile_figure

PER_ROW = 8


@dataclass(frozen=True)
class FilterPatterns:
    layer: str
    filters: list[int]
    images: np.ndarray  # (n, size, size, 3) float pixels after the ascent (the input space, [0, 255]-ish)
    start_activation: np.ndarray  # (n,) each filter's mean activation on its starting image
    end_activation: np.ndarray  # (n,) and on its pattern

    def patterns(self) -> np.ndarray:
        """(n, size, size, 3) uint8, each pattern deprocessed on its own."""
        return np.stack([deprocess(image) for image in self.images])


def layer_model(base: keras.Model, layer: str) -> keras.Model:
    """The base cut at `layer`: input -> that layer's output; the error lists the conv layers there are."""
    names = [item.name for item in base.layers]
    if layer not in names:
        convs = [item.name for item in base.layers if isinstance(item, keras.layers.Conv2D)]
        raise InputError(f"Model '{base.name}' has no layer {layer!r}. Its Conv2D layers: {', '.join(convs)}")
    return keras.Model(base.inputs, base.get_layer(layer).output)


def gradient_ascent(
    model: keras.Model,
    preprocess: Callable[[tf.Tensor], tf.Tensor],
    filters: list[int],
    size: int,
    steps: int,
    step_size: float,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximize each filter's mean activation from a gray, noisy image (the book's: 128 + U[0, 20)), with steps of
    the gradient divided by its RMS. Returns (images, start activations, end activations)."""
    channels = int(model.outputs[0].shape[-1])
    bad = [f for f in filters if not 0 <= f < channels]
    if bad:
        raise InputError(f"Layer has {channels} filters; no filter {bad}. Received: filters={filters}")
    mask = tf.one_hot(filters, channels, dtype=tf.float32)[:, None, None, :]  # (n, 1, 1, c): image i -> filter i

    def mean_activation(images: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(tf.reduce_sum(model(preprocess(images), training=False) * mask, axis=-1), axis=(1, 2))

    @tf.function(reduce_retracing=True)
    def step(images: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = tf.reduce_sum(mean_activation(images))  # images do not interact: each gets its own gradient
        gradients = tape.gradient(loss, images)
        rms = tf.sqrt(tf.reduce_mean(tf.square(gradients), axis=(1, 2, 3), keepdims=True))
        return images + step_size * gradients / (rms + 1e-5)

    noise = [np.random.default_rng([seed, f]).random((size, size, 3)) for f in filters]  # per filter: batch-free
    images = tf.constant(128.0 + 20.0 * np.stack(noise), dtype=tf.float32)
    start = mean_activation(images).numpy()
    for _ in range(steps):
        images = step(images)
    return images.numpy(), start, mean_activation(images).numpy()


def filter_patterns(
    backbone: str,
    weights: str,
    layer: str,
    count: int,
    size: int,
    steps: int,
    step_size: float,
    seed: int = 0,
) -> FilterPatterns:
    """The first `count` filters of a registry backbone's layer, with the given weights (imagenet | none | path)."""
    spec = get_backbone(backbone)
    base = spec.conv_base(size, spec.resolve_weights(weights))
    model = layer_model(base, layer)
    filters = list(range(min(count, int(model.outputs[0].shape[-1]))))
    images, start, end = gradient_ascent(model, spec.preprocess, filters, size, steps, step_size, seed)
    return FilterPatterns(layer, filters, images, start, end)


def filters_figure(result: FilterPatterns, title: str) -> Figure:
    """The patterns in a grid, 8 to a row, each labelled with its filter index."""
    patterns = result.patterns()
    tiles = mosaic(patterns.astype(np.float32) / 255, PER_ROW, gap=max(2, patterns.shape[1] // 32), fill=1.0)
    figure = tile_figure(tiles, title, 10 * min(len(patterns), PER_ROW) / PER_ROW + 2)
    axes = figure.axes[0]
    step = patterns.shape[1] + max(2, patterns.shape[1] // 32)
    for index, number in enumerate(result.filters):
        row, col = divmod(index, PER_ROW)
        axes.text(col * step + 1, row * step + 1, str(number), color="white", fontsize=8, va="top", ha="left",
                  bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0})  # fmt: skip
    return figure
