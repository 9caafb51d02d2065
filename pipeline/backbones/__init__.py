"""Floor 1, pretrained conv bases by name: VGG16 and EfficientNet-Lite0/1/2, their weights and preprocessing.
Imports core only. Adding a backbone is one module calling `register(BackboneSpec(...))`."""

from pipeline.backbones import (
    efficientnet_lite,  # noqa: F401  (registers itself)
    vgg16,  # noqa: F401  (registers itself)
)
from pipeline.backbones.registry import (
    BackboneSpec,
    Preprocessing,
    ResolvedWeights,
    WeightsUnavailableError,
    backbone_names,
    get_backbone,
    register,
    sha256_of,
)

__all__ = [
    "BackboneSpec",
    "Preprocessing",
    "ResolvedWeights",
    "WeightsUnavailableError",
    "backbone_names",
    "get_backbone",
    "register",
    "sha256_of",
]
