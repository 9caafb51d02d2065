"""The benchmark's arithmetic and a tiny end-to-end run of `python -m pipeline bench`."""

import re
import sys

import pytest
from conftest import SAMPLE_ZIP, run

from pipeline.backbones import get_backbone
from pipeline.bench import model_flops


def test_vgg16_conv_base_flops_match_the_published_count() -> None:
    spec = get_backbone("vgg16")
    flops = model_flops(spec.conv_base(224, spec.resolve_weights("none")))
    assert flops / 2 == pytest.approx(15.35e9, rel=0.01)  # VGG16's conv layers: 15.35 G multiply-adds


def test_bench_runs_both_paths_on_the_same_images(tmp_path) -> None:
    result = run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "bench",
            "--source",
            str(SAMPLE_ZIP),
            "--per-class",
            "6",
            "--repeat",
            "2",
            "--seed-images",
            "8",
            "--size",
            "48",
            "--precision",
            "float32",
        ],
        tmp_path,
    )
    out = result.stdout
    assert re.search(r"\(a\) seed loop, float32: 8 images in [\d.]+ s = [\d.]+ img/s", out)
    assert re.search(r"\(b\) featurize, float32: 24 images in [\d.]+ s", out)  # 6 per class x 2 classes x 2 copies
    assert re.search(r"GEMM 2048\^3: float32 \d+ GFLOP/s, bfloat16 \d+ GFLOP/s", out)
    assert re.search(r"peak resident memory: [\d.]+ GiB for 24 images", out)
