"""The preflight (`python -m pipeline doctor`), the pending list after `dvc repro --keep-going`, and the
filter that keeps TensorFlow's startup lines off stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, child_env, sample_images, write_zip
from network_guard import offline_command, offline_env, refused

from pipeline.cli.quiet import is_noise
from pipeline.core.config import load_config
from pipeline.tools import doctor as doctor_module
from pipeline.tools.doctor import diagnose, exit_code, pending_report, projected_bytes

NO_PROXY = {"NO_PROXY": "*", "no_proxy": "*"}  # offline through the network guard, which no variable undoes


def project(tmp_path: Path, **params) -> Path:
    """params.yaml of this project with `paths.raw` and backbone settings changed, in tmp_path."""
    config = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in params.items():
        section = config
        *parents, key = dotted.split("__")
        for part in parents:
            section = section[part]
        section[key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp_path


def doctor(cwd: Path, *args: str, home: Path) -> subprocess.CompletedProcess:
    env = offline_env({**os.environ, **NO_PROXY, "KERAS_HOME": str(home), "PYTHONPATH": str(ROOT)})
    command = offline_command([sys.executable, "-m", "pipeline", "doctor", *args])
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_no_raw_data_nothing_can_run_and_says_where_it_goes(tmp_path: Path) -> None:
    result = doctor(project(tmp_path), home=tmp_path / "keras")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "data/raw/dogs-vs-cats.zip (paths.raw in params.yaml) is not there" in result.stdout
    assert "kaggle competitions download -c dogs-vs-cats -p data/raw" in result.stdout
    assert "Get the photos with `python -m pipeline get-data` (Microsoft's download, no account" in result.stdout


def test_a_train_zip_beside_the_expected_name_is_pointed_at(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "data" / "raw").mkdir(parents=True)
    write_zip(root / "data" / "raw" / "train.zip", sample_images(2))
    result = doctor(root, home=tmp_path / "keras")
    assert result.returncode == 2 and "fix: set paths.raw: data/raw/train.zip in params.yaml" in result.stdout


def test_offline_vgg16_imagenet_blocks_only_vgg16_with_the_exact_fix(tmp_path: Path) -> None:
    root = project(tmp_path, paths__raw="train.zip")
    write_zip(root / "train.zip", sample_images(2))
    start = time.perf_counter()
    result = doctor(root, home=tmp_path / "keras")
    assert time.perf_counter() - start < 30  # no TensorFlow import, no long network wait
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ERROR    weights   vgg16: ImageNet weights are not in" in result.stdout
    assert f"copy vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 into {tmp_path / 'keras' / 'models'}/" in (
        result.stdout
    )
    assert "ok       weights   efficientnet_lite0: ImageNet, from the pip package" in result.stdout
    assert "can run all but the stages of vgg16" in result.stdout
    assert "GPU" in result.stdout and "bfloat16" in result.stdout


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_scratch_convnets_on_an_emulating_cpu_are_a_warning(tmp_path: Path, monkeypatch, native) -> None:
    """Only the methods set to run in bfloat16 are flagged, only where bf16 is emulated, and never as an error."""
    root = project(
        tmp_path,
        methods__run__scratch=[42],
        methods__run__augment=[],
        methods__scratch__precision="bfloat16",
        methods__augment__precision="bfloat16",
    )
    monkeypatch.setattr(doctor_module, "cpu_supports_bf16", lambda: native)
    monkeypatch.setattr(doctor_module, "gpus_seen", lambda: [])
    findings = doctor_module.check_method_precision(load_config(root / "params.yaml"))
    if native:
        assert findings == []
    else:
        assert [(f.level, f.fix) for f in findings] == [("warning", "set methods.scratch.precision: float32")]
        assert "methods.scratch.precision is bfloat16" in findings[0].message


def test_doctor_does_not_import_tensorflow(tmp_path: Path) -> None:
    root = project(tmp_path, paths__raw="train.zip", backbones__vgg16__weights="none")
    write_zip(root / "train.zip", sample_images(2))
    code = (
        "import sys; from typer.testing import CliRunner; from pipeline.cli import app; "
        "r = CliRunner().invoke(app, ['doctor']); print(r.output); "
        "assert 'tensorflow' not in sys.modules, 'imported TensorFlow'; sys.exit(r.exit_code)"
    )
    env = offline_env({**os.environ, **NO_PROXY, "PYTHONPATH": str(ROOT)})
    command = offline_command([sys.executable, "-c", code])
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ready: `dvc repro` can run every stage" in result.stdout


def test_missing_weights_file_blocks_its_backbone(tmp_path: Path, monkeypatch) -> None:
    root = project(tmp_path, paths__raw="train.zip", backbones__vgg16__weights="weights/mine.h5")
    write_zip(root / "train.zip", sample_images(2))
    monkeypatch.chdir(root)
    findings = diagnose(load_config(root / "params.yaml"))
    vgg = next(f for f in findings if f.message.startswith("vgg16"))
    assert vgg.level == "error" and "weights/mine.h5, which is not there" in vgg.message and vgg.blocks == "vgg16"
    assert exit_code(findings) == 1


def test_projected_disk_counts_each_store(tmp_path: Path, monkeypatch) -> None:
    root = project(tmp_path, featurize__backbones=["vgg16"], featurize__storage_dtype="float16")
    monkeypatch.chdir(root)
    config = load_config(root / "params.yaml")
    rows = 2 * (1000 + 500 + 500)
    assert projected_bytes(config, raw_size=0) == 2 * rows * 4 * 4 * 512 * 2  # (4, 4, 512) at 150 px, float16


def test_pending_report_groups_stages_by_cause_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    root = project(tmp_path, paths__raw="train.zip")
    write_zip(root / "train.zip", sample_images(2))
    monkeypatch.chdir(root)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for key, value in NO_PROXY.items():
        monkeypatch.setenv(key, value)
    stages = ["weights@vgg16", "featurize@vgg16", "train@vgg16-dense", "visualize@vgg16-logreg", "mnist@42"]
    with refused():
        lines = pending_report(load_config(root / "params.yaml"), stages)
    assert lines[0] == "could not run 5 stage(s):"
    assert lines[1] == "  - weights@vgg16, featurize@vgg16, train@vgg16-dense, visualize@vgg16-logreg"
    assert lines[2].startswith("      why: vgg16: ImageNet weights are not in")
    assert lines[3].startswith("      fix: on a machine with internet download")
    assert lines[4:] == [
        "  - mnist@42",
        "      why: they failed or depend on a stage that failed: see its error in the log above",
    ]


# Lines TensorFlow 2.21 printed on this project's CPU machine at import and first device query.
TF_STARTUP = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796049382.511188    9052 port.cc:153] oneDNN custom operations are on. You may see slightly",
    "I0000 00:00:1796049382.511508    9052 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will",
    "E0000 00:00:1796049387.542910    9052 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other operations, "
    "rebuild TensorFlow with the appropriate compiler flags.",
]


def test_noise_patterns() -> None:
    assert all(is_noise(line) for line in TF_STARTUP)
    kept = ["error: Raw data not found at x.zip", "Traceback (most recent call last):", "E0000 00:00:1.2 1 x.cc:1] OOM"]
    assert not any(is_noise(line) for line in kept)


@pytest.mark.slow
def test_tensorflow_startup_is_silenced_unless_verbose(tmp_path: Path) -> None:
    code = (
        "import sys; from pipeline.cli.quiet import silence_tensorflow_noise; silence_tensorflow_noise(sys.argv[1:]); "
        "import tensorflow as tf; tf.config.list_physical_devices('GPU'); print('still here', file=sys.stderr)"
    )
    env = child_env(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="", PIPELINE_VERBOSE="")
    quiet = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    loud = subprocess.run([sys.executable, "-c", code, "--verbose"], env=env, capture_output=True, text=True)
    assert quiet.returncode == 0 and loud.returncode == 0
    assert quiet.stderr.strip() == "still here"
    assert any(is_noise(line) for line in loud.stderr.splitlines())
