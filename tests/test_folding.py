"""Folding BatchNormalization into convolutions keeps outputs and layer names; VGG16 has nothing to fold."""

import keras
import numpy as np

from pipeline.backbones import get_backbone
from pipeline.backbones.efficientnet_lite import preprocess_input
from pipeline.backbones.folding import FoldedBatchNorm


def test_folded_efficientnet_matches_the_original() -> None:
    spec = get_backbone("efficientnet_lite0")
    weights = spec.resolve_weights("imagenet")
    original = spec.conv_base(96, weights)
    folded = spec.inference_base(96, weights)
    assert [layer.name for layer in folded.layers] == [layer.name for layer in original.layers]
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert sum(isinstance(layer, FoldedBatchNorm) for layer in folded.layers) == 49
    images = preprocess_input(np.random.default_rng(0).uniform(0, 255, (4, 96, 96, 3)))
    a, b = original(images).numpy(), folded(images).numpy()
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 1e-5


def test_vgg16_has_no_batchnorm_to_fold() -> None:
    spec = get_backbone("vgg16")
    weights = spec.resolve_weights("none")
    model = spec.inference_base(32, weights)
    assert not any(isinstance(layer, FoldedBatchNorm) for layer in model.layers)
    assert not model.trainable
