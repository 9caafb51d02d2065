"""The book's small convnet trained from scratch on the split images: shared by the scratch and augment methods."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import keras

from pipeline.backbones.registry import native_bf16
from pipeline.core.config import Config, ScratchConfig
from pipeline.core.errors import ConfigError
from pipeline.core.weights_sources import emulated_bf16_problem
from pipeline.images.augmentation import augmenter
from pipeline.training.common import (
    IN_MODEL,
    ImageInput,
    MethodReport,
    classifier,
    compile_model,
    read_splits,
    run_image_method,
)

FILTERS = (32, 64, 128, 128)
MIN_INPUT = 46  # four conv + pool steps leave a 1x1 map
DTYPE_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}  # methods.<scratch|augment>.precision


@contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Layers built inside compute in `precision`: bfloat16 is Keras' mixed_bfloat16 (bf16 activations and
    matmuls, float32 weights and optimizer state); the global policy is restored after."""
    if precision not in DTYPE_POLICIES:
        raise ConfigError(f"precision must be one of {sorted(DTYPE_POLICIES)}. Received: precision={precision!r}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(DTYPE_POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def warn_emulated_bf16(key: str, precision: str) -> None:
    """On stderr: param `key` asks for bfloat16 where it is emulated (a CPU without AVX512_BF16 or AMX, no GPU),
    where mixed precision trains slower than float32 instead of faster."""
    if precision == "bfloat16" and not native_bf16():
        problem, fix = emulated_bf16_problem(key)
        print(f"warning: {problem}. Fix: {fix}.", file=sys.stderr)


def build_scratch_model(
    input_size: int = 150, n_classes: int = 2, dropout: float = 0.0, precision: str = "float32"
) -> keras.Model:
    """Rescaling(1/255) -> [Conv2D(32..128, 3x3, relu) -> MaxPool] x4 -> Flatten -> [Dropout] -> Dense(512, relu)
    -> classifier. Its input is pixels in [0, 255]. At 150 px and two classes: 3,453,121 parameters, as the book's.
    With precision bfloat16 every layer but the classifier computes in bf16; the classifier's probabilities and
    the loss stay float32."""
    if input_size < MIN_INPUT:
        raise ConfigError(
            f"The scratch convnet needs inputs of {MIN_INPUT} px or more. Received: input_size={input_size}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1). Received: dropout={dropout}")
    with dtype_policy(precision):
        layers: list[keras.Layer] = [
            keras.Input((input_size, input_size, 3), name="image"),
            keras.layers.Rescaling(1 / 255, name="rescale"),  # the book's rescale=1./255, inside: input is pixels
        ]
        for index, filters in enumerate(FILTERS, start=1):
            layers.append(keras.layers.Conv2D(filters, 3, activation="relu", name=f"conv{index}"))
            layers.append(keras.layers.MaxPooling2D(2, name=f"pool{index}"))
        layers.append(keras.layers.Flatten(name="flatten"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout, name="dropout"))
        layers.append(keras.layers.Dense(512, activation="relu", name="dense"))
        layers.append(classifier(n_classes))
    return keras.Sequential(layers, name="scratch_convnet")


def train_convnet(config: Config, method: str, params: ScratchConfig, seed: int, augment: bool) -> MethodReport:
    """Train the scratch convnet (RMSprop, the book's loss) with or without the book's augmentation."""
    warn_emulated_bf16(f"methods.{method}.precision", params.precision)
    keras.utils.set_random_seed(seed)
    splits = read_splits(config.paths.split)
    n_classes = len(splits["train"].classes)
    model = build_scratch_model(params.input_size, n_classes, params.dropout, params.precision)
    compile_model(model, params.learning_rate, n_classes)
    return run_image_method(
        model,
        method,
        seed,
        config.paths,
        splits,
        ImageInput(params.input_size, config.methods.resize, IN_MODEL),
        params,
        seed,
        augment=augmenter(config.methods.augmentation, seed) if augment else None,
        info={"dropout": params.dropout, "augmented": augment, "precision": params.precision},
    )
