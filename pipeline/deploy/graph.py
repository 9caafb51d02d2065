"""The exported graph: raw uint8 images of any size in, class probabilities out, built from built-in Keras
layers and ops only, so the `.keras` file loads in safe mode in a plain Keras install.

image (N, H, W, 3) uint8 -> float32 -> resize to the store's input size with its method -> the store's channel
order, offsets and scale -> the conv base (BatchNormalization folded, float32) [mirror-averaged] -> the head
(a dense head as saved; a logistic regression as its standardization + Dense) -> probabilities (N, classes).
Every number comes from the store's attributes (the recipe its rows were made with) and the head's files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from pipeline.backbones.folding import FoldedBatchNorm
from pipeline.compute.conv_base import conv_base_of_store
from pipeline.core.config import BackboneConfig
from pipeline.core.errors import InputError
from pipeline.heads import get_head, load_head
from pipeline.heads.dense import GLOBAL_POOLS
from pipeline.heads.logreg import LogRegHead


@dataclass(frozen=True)
class Recipe:
    """How the store's rows were made from pixels: what the exported graph does before the head."""

    backbone: str
    input_size: int
    resize: str
    channel_order: str
    offset: tuple[float, float, float]
    scale: float
    mirror: bool
    weights: str
    weights_sha256: str
    fingerprint: str

    @classmethod
    def of_store(cls, attrs: dict) -> Recipe:
        pre = attrs["preprocessing"]
        return cls(
            backbone=attrs["backbone"],
            input_size=int(attrs["input_size"]),
            resize=attrs["resize"],
            channel_order=pre["channel_order"],
            offset=tuple(float(v) for v in pre["offset"]),
            scale=float(pre["scale"]),
            mirror=bool(attrs.get("mirror", False)),
            weights=str(attrs.get("weights", "")),
            weights_sha256=str(attrs.get("weights_sha256", "")),
            fingerprint=str(attrs.get("fingerprint", "")),
        )

    def as_dict(self) -> dict:
        return asdict(self)


def portable_base(base: keras.Model) -> keras.Model:
    """The folded conv base without this package's FoldedBatchNorm pass-throughs: built-in layers only."""

    folded = {layer.name for layer in base.layers if isinstance(layer, FoldedBatchNorm)}

    def clone(layer: layers.Layer) -> layers.Layer:
        if layer.name in folded:
            return layers.Identity(name=layer.name)  # never called: `call` passes its input on
        return layer.__class__.from_config(layer.get_config())

    def call(layer: layers.Layer, *args, **kwargs):  # `layer` is the clone
        return args[0] if layer.name in folded else layer(*args, **kwargs)

    copy = keras.models.clone_model(base, clone_function=clone, call_function=call)
    for layer in base.layers:
        if layer.weights:
            copy.get_layer(layer.name).set_weights(layer.get_weights())
    copy.trainable = False
    return copy


def preprocessed(images: keras.KerasTensor, recipe: Recipe) -> keras.KerasTensor:
    """uint8 RGB of any size -> the conv base's input, as featurize made it (decode_and_resize, then preprocess)."""
    x = ops.cast(images, "float32")  # tf.image.resize of uint8 computes in float32; Resizing would round back
    x = layers.Resizing(recipe.input_size, recipe.input_size, interpolation=recipe.resize, name="resize")(x)
    if recipe.channel_order == "BGR":
        x = ops.flip(x, axis=-1)
    elif recipe.channel_order != "RGB":
        raise InputError(f"Unknown channel order in the store's recipe. Received: {recipe.channel_order!r}")
    offset = [-v * recipe.scale for v in recipe.offset]
    return layers.Rescaling(recipe.scale, offset=offset, name="preprocess")(x)  # (x - offset) * scale


def features(x: keras.KerasTensor, base: keras.Model, mirror: bool) -> keras.KerasTensor:
    """The conv base's map; with `mirror`, averaged with the mirror image's map flipped back (MirrorAverage)."""
    if not mirror:
        return base(x)
    mirrored = ops.flip(base(ops.flip(x, axis=2)), axis=2)
    return layers.Average(name="mirror_average")([base(x), mirrored])


def two_columns(p: keras.KerasTensor) -> keras.KerasTensor:
    """A sigmoid's (N, 1) as (N, 2) [1 - p, p], as DenseHead.predict_proba returns it."""
    return layers.Concatenate(name="probabilities")([ops.subtract(1.0, p), p])


def dense_head_graph(x: keras.KerasTensor, head_model: keras.Model) -> keras.KerasTensor:
    """The saved dense head (its weights, without its optimizer's state) on the features."""
    copy = keras.models.clone_model(head_model)
    copy.set_weights(head_model.get_weights())
    p = copy(x)
    return two_columns(p) if p.shape[-1] == 1 else layers.Identity(name="probabilities")(p)


def pooling_layer(pooling: str) -> keras.Layer:
    """The Keras layer that pools a map as a head's `pooling` does (avg, max: the dense head's own layers; flatten)."""
    if pooling in GLOBAL_POOLS:
        return GLOBAL_POOLS[pooling](name="pool")
    return layers.Flatten(name="flatten")


def logreg_head_graph(x: keras.KerasTensor, head: LogRegHead) -> keras.KerasTensor:
    """pool -> standardize ((x - mean) / scale of the train split, as Rescaling) -> Dense(coef, intercept).

    Rescaling rather than Normalization: its numbers are config, traced as constants, where Normalization's
    are tensors captured from outside the graph, which the TFLite and ONNX converters turn into inputs."""
    x = pooling_layer(head.pooling)(x)
    scale = np.asarray(head.scale, np.float64)
    standardize = layers.Rescaling((1.0 / scale).tolist(), offset=(-head.mean / scale).tolist(), name="standardize")
    coef = np.asarray(head.coef, np.float32)
    dense = layers.Dense(coef.shape[0], activation="sigmoid" if coef.shape[0] == 1 else "softmax", name="logreg")
    p = dense(standardize(x))
    dense.set_weights([coef.T, np.asarray(head.intercept, np.float32)])
    return two_columns(p) if coef.shape[0] == 1 else layers.Identity(name="probabilities")(p)


def export_model(
    store_path: Path, backbone_config: BackboneConfig, head: str, head_dir: Path
) -> tuple[keras.Model, Recipe, list[str]]:
    """The end-to-end model of a store's conv base and a head trained on it, its recipe and class names."""
    store, _spec, base = conv_base_of_store(store_path, backbone_config, as_recorded=False, precision="float32")
    recipe = Recipe.of_store(store.attrs)
    trained = load_head(head, head_dir)
    images = keras.Input((None, None, 3), dtype="uint8", name="image")
    x = features(preprocessed(images, recipe), portable_base(base), recipe.mirror)
    if get_head(head).file_suffix == ".keras":
        probabilities = dense_head_graph(x, trained.model)
    else:
        probabilities = logreg_head_graph(x, trained)
    model = keras.Model(images, probabilities, name=f"{recipe.backbone}_{head}")
    model.trainable = False
    return model, recipe, store.classes
