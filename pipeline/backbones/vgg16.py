"""VGG16's conv base (Keras applications), ImageNet weights from Keras' cache or its download."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.backbones.registry import BackboneSpec, Preprocessing, WeightsUnavailableError, register
from pipeline.core.weights_sources import VGG16_WEIGHTS_FILE as WEIGHTS_FILE
from pipeline.core.weights_sources import VGG16_WEIGHTS_MD5 as WEIGHTS_MD5
from pipeline.core.weights_sources import VGG16_WEIGHTS_URL as WEIGHTS_URL
from pipeline.core.weights_sources import keras_cache_dir

if TYPE_CHECKING:  # Keras loads when weights are fetched or a model is built, not when the backbone registers
    import keras
    import tensorflow as tf

DOWNLOAD_TIMEOUT_S = 20


def fetch_imagenet_weights() -> Path:
    """Keras' cached notop weights, downloading them when the network allows."""
    import keras

    cached = keras_cache_dir() / WEIGHTS_FILE
    if cached.is_file():
        if not keras.utils.validate_file(str(cached), WEIGHTS_MD5, algorithm="md5"):
            raise WeightsUnavailableError(
                f"{cached} does not match the md5 {WEIGHTS_MD5} that Keras publishes for it (a partial or "
                "corrupted download?). Delete it and run again to download it afresh."
            )
        return cached
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        path = keras.utils.get_file(  # into the folder named above, read now (Keras reads KERAS_HOME at import)
            WEIGHTS_FILE,
            WEIGHTS_URL,
            cache_dir=str(keras_cache_dir().parent),
            cache_subdir="models",
            file_hash=WEIGHTS_MD5,
        )
    except Exception as err:  # noqa: BLE001 - any failure to download means the same thing to the user
        raise WeightsUnavailableError(
            f"VGG16 ImageNet weights are not cached and could not be downloaded ({type(err).__name__}: "
            f"{err}). Keras expects the file '{WEIGHTS_FILE}' in the folder '{keras_cache_dir()}'. "
            f"On a machine with internet, download {WEIGHTS_URL} and copy it there, or set "
            "backbones.vgg16.weights in params.yaml to the path of the file (or 'none' for random weights)."
        ) from err
    finally:
        socket.setdefaulttimeout(previous)
    return Path(path)


def build_vgg16(input_shape: tuple[int, int, int], weights_path: Path | None) -> keras.Model:
    import keras

    return keras.applications.VGG16(
        include_top=False,
        weights=str(weights_path) if weights_path else None,
        input_shape=input_shape,
    )


def preprocess_vgg16(images: tf.Tensor) -> tf.Tensor:
    import keras

    return keras.applications.vgg16.preprocess_input(images)


VGG16 = register(
    BackboneSpec(
        name="vgg16",
        build=build_vgg16,
        preprocess=preprocess_vgg16,
        preprocessing=Preprocessing("BGR", (103.939, 116.779, 123.68), 1.0),  # keras.applications.vgg16 ("caffe")
        fetch_imagenet=fetch_imagenet_weights,
        default_input_size=150,
        default_pooling="flatten",
        gradcam_layer="block5_conv3",
        finetune_from="block5_conv1",
    )
)
