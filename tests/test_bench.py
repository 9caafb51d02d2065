"""The benchmark's arithmetic and a tiny end-to-end run of `python -m pipeline bench`."""

import re
import sys

import pytest
from conftest import SAMPLE_ZIP, run

from pipeline.backbones import get_backbone
from pipeline.tools.bench import model_flops


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
            "--batch-size",
            "8",
        ],
        tmp_path,
    )
    out = result.stdout
    assert re.search(r"\(a\) the book's loop, float32: 8 images in [\d.]+ s = [\d.]+ img/s", out)
    # 6 per class x 2 classes x 2 copies; the steady state leaves out the first batch of 8
    assert re.search(r"\(b\) featurize, float32, end to end \(start-up included\): 24 images in [\d.]+ s", out)
    assert re.search(r"\(b\) featurize, float32, steady state \(after the first batch\): 16 images in [\d.]+ s", out)
    assert re.search(r"GEMM 2048\^3: float32 \d+ GFLOP/s, bfloat16 \d+ GFLOP/s", out)
    assert re.search(r"peak resident memory: [\d.]+ GiB for 24 images", out)
    assert "same images: the book's loop read 8, the first 8 of featurize's 24 (sha256)" in out


def test_scratch_convnet_flops_by_hand() -> None:
    from pipeline.training.convnet import build_scratch_model

    convs = [(3, 32, 148), (32, 64, 72), (64, 128, 34), (128, 128, 15)]  # (in, out, output side) of 3x3 convs
    expected = sum(2 * 9 * cin * cout * side * side for cin, cout, side in convs) + 2 * (7 * 7 * 128 * 512 + 512)
    assert model_flops(build_scratch_model(150, 2)) == expected  # about 0.47 GFLOP forward


@pytest.mark.slow
def test_bench_train_prints_each_row(tmp_path) -> None:
    args = ["--source", str(SAMPLE_ZIP), "--per-class", "4", "--size", "48", "--steps", "1", "--rounds", "2", "--quick"]
    out = run([sys.executable, "-m", "pipeline", "bench-train", *args], tmp_path).stdout
    assert re.search(r"GFLOP per training image; GEMM 2048\^3 float32: \d+ GFLOP/s", out)
    for method, batch in (("scratch", 20), ("augment", 32)):
        for label in ("before: from disk", "after: in memory, one warp"):
            pattern = rf"{method} \(batch {batch}\), .*{re.escape(label)}.*: [\d.]+ img/s, \d+ GFLOP/s \(\d+% of the"
            assert re.search(pattern, out), out
    assert "XLA" not in out and "bfloat16" not in out  # --quick: only before and after
