"""Intermediate activations: every channel of the first conv/pool layers' outputs for one image, as grids."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from matplotlib.figure import Figure

from pipeline.core.errors import InputError
from pipeline.visualize.figures import TILE_INCHES, grid_shape, mosaic, standardize_channels, tile_figure

FEATURE_MAP_LAYERS = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
)
COLOR_RANGE = 2.0  # standardized values beyond +-2 std saturate the colormap (the book's *64+128 clip)


@dataclass(frozen=True)
class ActivationGrid:
    """One layer's activations for one image: `maps` (channels, h, w), each channel standardized."""

    layer: str
    kind: str
    maps: np.ndarray
    per_row: int

    @property
    def channels(self) -> int:
        return self.maps.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of tiles."""
        return grid_shape(self.channels, self.per_row)

    def mosaic(self) -> np.ndarray:
        return mosaic(self.maps, self.per_row)


def feature_map_layers(model: keras.Model, count: int) -> list[keras.Layer]:
    """The first `count` conv/pool layers of the model, in order (the layers a conv base is made of)."""
    if count < 1:
        raise InputError(f"The number of layers must be at least 1. Received: count={count}")
    found = [layer for layer in model.layers if isinstance(layer, FEATURE_MAP_LAYERS)]
    if not found:
        raise InputError(f"Model '{model.name}' has no top-level conv or pooling layer to show.")
    return found[:count]


def probe_model(model: keras.Model, names: list[str]) -> keras.Model:
    """image -> [the named layers' outputs..., the model's output], tapped in the model's own graph. A Sequential
    loaded from a file has its layers called more than once, so it is re-run on a fresh input to tap."""
    if isinstance(model, keras.Sequential):
        inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
        x, taps = inputs, {}
        for layer in model.layers:
            x = taps[layer.name] = layer(x)
        return keras.Model(inputs, [taps[name] for name in names] + [x])
    return keras.Model(model.inputs[0], [model.get_layer(name).output for name in names] + [model.outputs[0]])


def activations(model: keras.Model, image: np.ndarray, count: int, per_row: int = 16) -> list[ActivationGrid]:
    """The activation grids of the first `count` conv/pool layers for one preprocessed image (1, h, w, 3)."""
    layers = feature_map_layers(model, count)
    probe = probe_model(model, [layer.name for layer in layers])
    outputs = probe(np.asarray(image, dtype=np.float32), training=False)[:-1]
    return [
        ActivationGrid(layer.name, type(layer).__name__, standardize_channels(np.asarray(output)[0]), per_row)
        for layer, output in zip(layers, outputs, strict=True)
    ]


def activation_figure(grid: ActivationGrid, image_name: str) -> Figure:
    """Every channel of one layer, `per_row` to a row, viridis, titled with the layer and the image."""
    cols = grid.shape[1]
    height, width = grid.maps.shape[1:]
    title = f"{image_name}: {grid.layer} ({grid.kind}), {grid.channels} channels of {height}x{width}, each standardized"
    width_inches = TILE_INCHES * max(cols, 8)  # a narrow grid (few channels) still gets a readable width
    return tile_figure(grid.mosaic(), title, width_inches, cmap="viridis", vmin=-COLOR_RANGE, vmax=COLOR_RANGE)
