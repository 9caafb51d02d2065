"""The backbone registry: a name resolves to a BackboneSpec (builder, preprocessing, weights source)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.errors import ConfigError, InputError, WeightsUnavailableError
from pipeline.core.weights_sources import CPUINFO, cpu_supports_bf16  # native_bf16 reads CPUINFO (tests repoint it)

if TYPE_CHECKING:  # Keras and TensorFlow load when a conv base is built, not when weights are resolved
    import keras
    import tensorflow as tf

RANDOM_INIT_SEED = 0


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a conv base's weights come from: `identifier` is what params said, `path` the local file."""

    identifier: str
    path: Path | None
    sha256: str

    @property
    def is_random(self) -> bool:
        return self.path is None

    @property
    def fingerprint_id(self) -> str:
        """What identifies these weights in a feature recipe: the file's sha256, or the random-init seed."""
        return self.sha256 or f"random-init-seed-{RANDOM_INIT_SEED}"


@dataclass(frozen=True)
class Preprocessing:
    """What a backbone's `preprocess` does to float RGB pixels in [0, 255], as data (it keys the feature recipe):
    reorder the channels to `channel_order`, subtract `offset` (per channel, in that order), multiply by `scale`.
    tests/test_featurize.py checks each backbone's function against this description."""

    channel_order: str  # "RGB" or "BGR"
    offset: tuple[float, float, float]
    scale: float

    def as_dict(self) -> dict:
        return {"channel_order": self.channel_order, "offset": list(self.offset), "scale": self.scale}


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the pipeline needs to know about one pretrained conv base.

    build(input_shape, weights_path) returns the conv base (no classifier top) with stable layer names.
    preprocess maps float32 RGB pixels in [0, 255] to the model's input; it travels with the weights.
    fetch_imagenet returns the local path of the ImageNet weights file, downloading it if it can.
    """

    name: str
    build: Callable[[tuple[int, int, int], Path | None], keras.Model]
    preprocess: Callable[[tf.Tensor], tf.Tensor]
    preprocessing: Preprocessing
    fetch_imagenet: Callable[[], Path]
    default_input_size: int
    default_pooling: str
    gradcam_layer: str
    finetune_from: str

    def resolve_weights(self, weights: str) -> ResolvedWeights:
        """Turn a params value (imagenet | none | path) into a local file and its sha256."""
        if weights in ("none", "None", "", None):
            return ResolvedWeights("none", None, "")
        if weights == "imagenet":
            path = self.fetch_imagenet()
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise WeightsUnavailableError(
                    f"Weights file for backbone '{self.name}' not found: {path}. "
                    "Use 'imagenet', 'none', or the path of an existing weights file."
                )
        return ResolvedWeights(weights, path, sha256_of(path))

    def conv_base(self, input_size: int, weights: ResolvedWeights, precision: str = "float32") -> keras.Model:
        """Build the conv base for square inputs of `input_size` pixels with the given weights.

        precision: float32, or bfloat16 / float16 compute with float32 weights (Keras mixed precision).
        """
        import keras

        if input_size < 32:
            raise ConfigError(f"input_size must be at least 32 pixels. Received: input_size={input_size}")
        policy = compute_policy(precision)
        if weights.is_random:
            keras.utils.set_random_seed(RANDOM_INIT_SEED)  # 'none' weights: the same random base every run
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy)
        try:
            model = self.build((input_size, input_size, 3), weights.path)
        finally:
            keras.config.set_dtype_policy(previous)
        model.trainable = False
        return model

    def inference_base(
        self, input_size: int, weights: ResolvedWeights, precision: str = "float32", mirror: bool = False
    ) -> keras.Model:
        """The conv base for feature extraction: frozen, with BatchNormalization folded into the convolutions;
        with `mirror`, its output averaged over the image and its left-right mirror."""
        from pipeline.backbones.folding import fold_batchnorm
        from pipeline.backbones.mirror import mirror_averaged

        base = fold_batchnorm(self.conv_base(input_size, weights, precision))
        return mirror_averaged(base) if mirror else base


PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def native_bf16() -> bool:
    """A GPU, or a CPU with native bfloat16 arithmetic (AVX512_BF16 or AMX); elsewhere bf16 is emulated (slow)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU")) or cpu_supports_bf16(CPUINFO)


def resolve_precision(precision: str) -> str:
    """'auto' is bfloat16 on a GPU or a CPU with native bf16 (AVX512_BF16, AMX), else float32."""
    if precision != "auto":
        return precision
    return "bfloat16" if native_bf16() else "float32"


def compute_policy(precision: str) -> str:
    """The Keras dtype policy for a precision param; float16 needs a GPU (CPUs emulate it slowly)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"featurize.precision must be one of {sorted(PRECISIONS)}. Received: precision={precision!r}")
    import tensorflow as tf

    if precision == "float16" and not tf.config.list_physical_devices("GPU"):
        raise ConfigError(
            "featurize.precision float16 needs a GPU: CPUs have no fast float16 convolutions. "
            "Use bfloat16 on CPUs with AVX512_BF16 or AMX, or float32."
        )
    return PRECISIONS[precision]


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"Backbone '{spec.name}' is registered twice.")
    _REGISTRY[spec.name] = spec
    return spec


def get_backbone(name: str) -> BackboneSpec:
    """The spec registered under `name`; the error lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"Unknown backbone. Received: backbone={name!r}. Known: {sorted(_REGISTRY)}") from None


def backbone_names() -> list[str]:
    return sorted(_REGISTRY)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
