"""Grad-CAM: where in the image the last conv layer's evidence for a class lies (Selvaraju et al., 2017)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from pipeline.core.errors import InputError
from pipeline.visualize.activations import probe_model
from pipeline.visualize.figures import DPI

CONV_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


@dataclass(frozen=True)
class GradCam:
    heatmap: np.ndarray  # (h, w) in [0, 1], the conv layer's grid
    layer: str
    class_index: int  # the class the heatmap explains
    probabilities: np.ndarray  # (n_classes,)

    @property
    def predicted(self) -> int:
        return int(self.probabilities.argmax())

    def peak(self, image_shape: tuple[int, int]) -> tuple[float, float]:
        """(row, column) of the heatmap's maximum, in the pixels of an image of `image_shape` (cell centres)."""
        row, col = np.unravel_index(int(self.heatmap.argmax()), self.heatmap.shape)
        return (
            (row + 0.5) * image_shape[0] / self.heatmap.shape[0],
            (col + 0.5) * image_shape[1] / self.heatmap.shape[1],
        )


def last_conv_layer(model: keras.Model) -> str:
    """The name of the model's last top-level convolution: Grad-CAM's layer for a plain convnet."""
    for layer in reversed(model.layers):
        if isinstance(layer, CONV_LAYERS):
            return layer.name
    raise InputError(f"Model '{model.name}' has no top-level Conv2D layer; Grad-CAM needs one.")


def output_layer(model: keras.Model) -> keras.Layer:
    """The layer that makes the model's output, looking inside a nested model (a head stacked on a base)."""
    layer = model.layers[-1]
    while isinstance(layer, keras.Model):
        layer = layer.layers[-1]
    return layer


@contextmanager
def logits_of(model: keras.Model) -> Iterator[str | None]:
    """Make the output layer return logits while inside; yields the activation removed (softmax, sigmoid, None)."""
    layer = output_layer(model)
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    if name not in ("softmax", "sigmoid"):
        yield None
        return
    layer.activation = keras.activations.linear
    try:
        yield name
    finally:
        layer.activation = activation


def class_scores(outputs: tf.Tensor, activation: str | None) -> tuple[tf.Tensor, tf.Tensor]:
    """(scores, probabilities), both (N, n_classes); a single sigmoid unit becomes two classes (-z, z)."""
    if outputs.shape[-1] == 1:
        scores = tf.concat([-outputs, outputs], axis=-1)
        p = tf.sigmoid(outputs) if activation == "sigmoid" else outputs
        return scores, tf.concat([1.0 - p, p], axis=-1)
    return outputs, tf.nn.softmax(outputs) if activation == "softmax" else outputs


def grad_cam(model: keras.Model, image: np.ndarray, layer: str, class_index: int | None = None) -> GradCam:
    """Grad-CAM of `layer` for one preprocessed image (1, h, w, 3): channels weighted by the mean gradient of the
    class's logit (the predicted class unless `class_index`), summed, ReLU, scaled to [0, 1]."""
    probe = probe_model(model, [layer])
    inputs = tf.convert_to_tensor(np.asarray(image, dtype=np.float32))
    with logits_of(model) as activation, tf.GradientTape() as tape:
        tape.watch(inputs)  # records the path through a frozen conv base, whose weights the tape does not watch
        feature_map, outputs = probe(inputs, training=False)
        scores, probabilities = class_scores(outputs, activation)
        target = int(tf.argmax(probabilities[0])) if class_index is None else class_index
        if not 0 <= target < scores.shape[-1]:
            raise InputError(f"class_index must be in [0, {scores.shape[-1]}). Received: class_index={class_index}")
        score = scores[0, target]
    gradients = tape.gradient(score, feature_map)[0]
    weights = tf.reduce_mean(gradients, axis=(0, 1))
    cam = tf.nn.relu(tf.reduce_sum(feature_map[0] * weights, axis=-1)).numpy()
    peak = cam.max()
    heatmap = cam / peak if peak > 0 else np.zeros_like(cam)
    return GradCam(heatmap, layer, target, probabilities[0].numpy())


def heatmap_figure(cam: GradCam, image: np.ndarray, classes: list[str], title: str, alpha: float) -> Figure:
    """The heatmap alone and over the image (uint8 (H, W, 3), any size), titled with class and probability."""
    figure = Figure(figsize=(11, 5.2), dpi=DPI, layout="constrained")
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    shown = left.imshow(cam.heatmap, cmap="jet", vmin=0, vmax=1, interpolation="nearest")
    size = f"{cam.layer}, {cam.heatmap.shape[0]}x{cam.heatmap.shape[1]}"
    empty = "" if cam.heatmap.max() > 0 else f"\nall zero: no positive evidence for {classes[cam.class_index]}"
    left.set_title(f"heatmap ({size}){empty}", fontsize=11)
    figure.colorbar(shown, ax=left, fraction=0.046, pad=0.03)
    right.imshow(image)
    height, width = image.shape[:2]
    right.imshow(cam.heatmap, cmap="jet", vmin=0, vmax=1, alpha=alpha, extent=(0, width, height, 0),
                 interpolation="bilinear")  # fmt: skip
    right.set_title(f"over the image (alpha {alpha})", fontsize=11)
    for axes in (left, right):
        axes.set_axis_off()
    predicted = cam.predicted
    headline = f"predicted {classes[predicted]} (p = {cam.probabilities[predicted]:.3f})"
    if cam.class_index != predicted:
        headline += f"; heatmap for {classes[cam.class_index]} (p = {cam.probabilities[cam.class_index]:.3f})"
    figure.suptitle(f"{title}\nGrad-CAM: {headline}", fontsize=13)
    return figure
