"""Make tests/data/efficientnet-lite0-top1.json: EfficientNet-Lite0's ImageNet top-1 class for each of the 300
fixture images (tests/data/dogs-vs-cats-300.zip), the reference tests/test_efficientnet_lite.py compares with.

Run from the project root: `python -m tests.lite0_golden` (about a minute on 2 CPU cores). Each image is decoded
as RGB, resized to 224 x 224 (bilinear, float32), scaled by the backbone's `preprocess_input` and classified by
`efficientnet_lite0(include_top=True)` with the packaged ImageNet weights, in float32 on the CPU. The file holds,
per image, the top-1 class id and the gap between the two highest logits (how far the image is from a tie).

Rerun it only when the model is meant to change (new weights); a file regenerated to make a failing test pass
hides the bug the test is there for.
"""

from __future__ import annotations

import io
import json
import platform
import zipfile
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent / "data" / "efficientnet-lite0-top1.json"
SAMPLE_ZIP = Path(__file__).resolve().parent / "data" / "dogs-vs-cats-300.zip"
NAMES = tuple(f"{kind}.{i}.jpg" for kind in ("cat", "dog") for i in range(150))
SIZE = 224


def fixture_images() -> list[np.ndarray]:
    """The 300 fixture images in NAMES order, RGB uint8."""
    from PIL import Image

    with zipfile.ZipFile(SAMPLE_ZIP) as archive:
        return [np.asarray(Image.open(io.BytesIO(archive.read(f"train/{n}"))).convert("RGB")) for n in NAMES]


def logits(model, images: list[np.ndarray]) -> np.ndarray:
    """ImageNet logits (or probabilities, if the model ends in softmax) of each image at SIZE x SIZE."""
    import tensorflow as tf

    from pipeline.backbones.efficientnet_lite import preprocess_input

    resized = np.stack([tf.image.resize(tf.cast(x, tf.float32), (SIZE, SIZE), method="bilinear") for x in images])
    return np.asarray(model.predict(preprocess_input(resized), batch_size=50, verbose=0), dtype="float64")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform module says."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def main() -> None:
    from pipeline.backbones.efficientnet_lite import efficientnet_lite0, fetch_imagenet_weights

    model = efficientnet_lite0(include_top=True, weights=fetch_imagenet_weights(), classifier_activation=None)
    scores = logits(model, fixture_images())
    ranked = np.sort(scores, axis=1)
    golden = {
        "made_by": "python -m tests.lite0_golden (see its docstring)",
        "machine": f"{cpu_model()} ({platform.machine()}), float32",
        "top1": {name: int(row.argmax()) for name, row in zip(NAMES, scores, strict=True)},
        "logit_gap": {name: round(float(r[-1] - r[-2]), 4) for name, r in zip(NAMES, ranked, strict=True)},
    }
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {GOLDEN}: {len(NAMES)} images, smallest logit gap {(ranked[:, -1] - ranked[:, -2]).min():.3f}")


if __name__ == "__main__":
    main()
