"""Weights sources: the offline ImageNet error for VGG16 is clear and quick; paths are checked."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from network_guard import offline_command, offline_env, refused

from pipeline.backbones import WeightsUnavailableError, get_backbone
from pipeline.backbones.vgg16 import WEIGHTS_FILE

NO_PROXY = {"NO_PROXY": "*", "no_proxy": "*"}  # no proxy variable can route around the guard


def test_vgg16_imagenet_offline_error_names_file_and_folder(tmp_path: Path, monkeypatch) -> None:
    """Offline for real (the network guard refuses every remote host) and the cache empty (KERAS_HOME, read at
    call time), so this passes on a machine with internet or with VGG16 in ~/.keras too."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for key, value in NO_PROXY.items():
        monkeypatch.setenv(key, value)
    start = time.monotonic()
    with refused(), pytest.raises(WeightsUnavailableError) as err:
        get_backbone("vgg16").resolve_weights("imagenet")
    assert time.monotonic() - start < 30  # generous: a refused connection fails at once (0.0 s here)
    message = str(err.value)
    assert WEIGHTS_FILE in message and str(tmp_path / "keras" / "models") in message


def test_vgg16_offline_cli_exits_cleanly(tmp_path: Path) -> None:
    env = {"KERAS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", **NO_PROXY}
    env = offline_env(env | {key: value for key, value in os.environ.items() if key == "PYTHONPATH"})
    start = time.monotonic()
    (tmp_path / "p.yaml").write_text("backbones: {vgg16: {weights: imagenet}}\npaths: {features: f}\n")
    result = subprocess.run(
        offline_command([sys.executable, "-m", "pipeline", "weights", "vgg16", "--params", "p.yaml"]),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert time.monotonic() - start < 90  # generous: TensorFlow's start-up, 10-20 s here with two workers busy
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]  # TensorFlow's C++ start-up lines come first
    assert last_line.startswith("error: VGG16 ImageNet weights are not cached") and "Traceback" not in result.stderr


def test_weights_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="not found"):
        get_backbone("vgg16").resolve_weights(str(tmp_path / "nope.h5"))


def test_weights_from_a_file_are_loaded_and_hashed(tmp_path: Path) -> None:
    spec = get_backbone("vgg16")
    random = spec.conv_base(32, spec.resolve_weights("none"))
    path = tmp_path / "vgg16.weights.h5"
    random.save_weights(path)
    resolved = spec.resolve_weights(str(path))
    assert len(resolved.sha256) == 64
    loaded = spec.conv_base(32, resolved)
    assert all((a == b).all() for a, b in zip(random.get_weights(), loaded.get_weights(), strict=True))


def test_unknown_backbone_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"Received: backbone='resnet'.*vgg16"):
        get_backbone("resnet")
