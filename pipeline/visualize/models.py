"""The classifier a picture is made of: a `.keras` image classifier file, or `<backbone>/<head>` (conv base + head).

Either way the result is one Keras model from a preprocessed image to class probabilities, with the conv
layers at its top level (so activations and Grad-CAM can read them by name), the preprocessing and input
size that go with it, the class names and the layer Grad-CAM reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.compute.conv_base import conv_base_of_store
from pipeline.core.config import Config
from pipeline.core.errors import InputError, MissingInputError
from pipeline.heads import load_head
from pipeline.images.decode import check_resize, decode_and_resize, decode_image
from pipeline.visualize.gradcam import last_conv_layer


@dataclass(frozen=True)
class ImageClassifier:
    name: str
    model: keras.Model  # (N, size, size, 3) preprocessed -> (N, 1) sigmoid or (N, k) softmax
    preprocess: Callable[[tf.Tensor], tf.Tensor]  # float RGB [0, 255] -> the model's input
    input_size: int
    resize: str
    classes: list[str]
    gradcam_layer: str

    def load_image(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """(the image as decoded, uint8 (H, W, 3); the model's input for it, (1, size, size, 3))."""
        if not Path(path).is_file():
            raise MissingInputError(f"Image file not found: {path}")
        original = decode_image(str(path)).numpy()
        resized = decode_and_resize(tf.constant(str(path)), self.input_size, self.resize)
        return original, self.preprocess(resized[None]).numpy()


def load_classifier(reference: str, config: Config, classes: list[str] | None = None) -> ImageClassifier:
    """`path/to/model.keras` (an image classifier; input pixels in [0, 255]) or `<backbone>/<head>` (a trained
    Keras head on its conv base, made as the feature store was: input size, resize, weights)."""
    if reference.endswith(".keras"):
        return keras_file_classifier(Path(reference), config.featurize.resize, classes)
    backbone, _, head = reference.partition("/")
    if not backbone or not head or "/" in head:
        raise InputError(
            f"--model must be a .keras file or '<backbone>/<head>' (e.g. efficientnet_lite0/dense). "
            f"Received: model={reference!r}"
        )
    return head_classifier(backbone, head, config)


def keras_file_classifier(path: Path, resize: str, classes: list[str] | None = None) -> ImageClassifier:
    """A saved Keras convnet whose input is the raw image (any scaling, e.g. Rescaling(1/255), inside it)."""
    if not path.is_file():
        raise MissingInputError(f"Model file not found: {path}")
    check_resize(resize)
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[2] != 3 or shape[0] is None or shape[0] != shape[1]:
        raise InputError(f"{path} must take square RGB images of a fixed size; its input shape is {shape}.")
    units = int(model.outputs[0].shape[-1])
    names = list(classes) if classes else [f"class {i}" for i in range(max(units, 2))]
    if len(names) != max(units, 2):
        raise InputError(f"{path} has {max(units, 2)} classes; {len(names)} class names were given: {names}")
    return ImageClassifier(
        path.stem, model, lambda x: tf.cast(x, tf.float32), int(shape[0]), resize, names, last_conv_layer(model)
    )


def head_classifier(backbone: str, head: str, config: Config) -> ImageClassifier:
    """The conv base that made `features/<backbone>.h5` with the trained head stacked on its feature map."""
    store, spec, base = conv_base_of_store(config.paths.store(backbone), config.backbone(backbone), as_recorded=False)
    trained = load_head(head, config.paths.head_dir(backbone, head))
    head_model = getattr(trained, "model", None)
    if not isinstance(head_model, keras.Model):
        raise InputError(f"Head '{head}' is not a Keras model; Grad-CAM and activations need one, e.g. 'dense'.")
    model = keras.Model(base.inputs, head_model(base.outputs[0]), name=f"{backbone}_{head}")
    return ImageClassifier(
        f"{backbone}/{head}",
        model,
        spec.preprocess,
        int(store.attrs["input_size"]),
        str(store.attrs["resize"]),
        store.classes,
        spec.gradcam_layer,
    )
