"""Shared test helpers: subsets of the Dogs vs. Cats fixture in tests/data (see its README), made at test time.
Every test, fixture and tool subprocess runs offline (tests/network_guard.py): loopback only."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from network_guard import offline_env, refused

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SAMPLE_ZIP = DATA / "dogs-vs-cats-300.zip"  # Kaggle layout: train/cat.0.jpg .. train/dog.149.jpg
SAMPLE_PER_CLASS = 150
MNIST_DIR = DATA / "mnist-t10k"
PROJECT_FILES = (
    "pipeline",
    "dvc.yaml",
    "params.yaml",
    ".dvc/config",
    ".dvc/plots.html",
    ".dvcignore",
    "weights",
    "plots/README.md",
    "pyproject.toml",
    "data/raw/.gitignore",
    ".gitignore",
    "Makefile",
)


def sample_images(per_class: int, classes: tuple[str, ...] = ("cat", "dog"), start: int = 0) -> dict[str, bytes]:
    """{'cat.0.jpg': bytes, ...}: `per_class` images of each class from the fixture, numbered from `start`."""
    if start + per_class > SAMPLE_PER_CLASS:
        raise ValueError(f"the fixture {SAMPLE_ZIP.name} holds <class>.0 to <class>.{SAMPLE_PER_CLASS - 1} only")
    with zipfile.ZipFile(SAMPLE_ZIP) as archive:
        return {
            f"{cls}.{i}.jpg": archive.read(f"train/{cls}.{i}.jpg")
            for cls in classes
            for i in range(start, start + per_class)
        }


def make_split(root: Path, per_class: int, train: int, validation: int, test: int) -> Path:
    """Real sample JPEGs in root/images, split into root/split by the split stage; returns the manifest."""
    from pipeline.core.config import SplitConfig
    from pipeline.stages.split import split

    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name, data in sample_images(per_class).items():
        (images / name).write_bytes(data)
    split(images, root / "split", SplitConfig(train=train, validation=validation, test=test))
    return root / "split" / "manifest.csv"


def write_zip(path: Path, files: dict[str, bytes], prefix: str = "train/") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(prefix + name, data)
    return path


def write_competition_zip(path: Path, files: dict[str, bytes]) -> Path:
    """Kaggle's layout: dogs-vs-cats.zip holding train.zip and test1.zip."""
    inner = io.BytesIO()
    write_zip(inner, files)  # type: ignore[arg-type]
    test1 = io.BytesIO()
    write_zip(test1, {"1.jpg": next(iter(files.values()))}, prefix="test1/")  # type: ignore[arg-type]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.zip", inner.getvalue())
        archive.writestr("test1.zip", test1.getvalue())
        archive.writestr("sampleSubmission.csv", "id,label\n1,0\n")
    return path


# The longest files, longest first (pytest -n 2 --durations on a loaded 2-core AMD EPYC (Zen 3), seconds of one
# worker: three_classes 430, reliability 1,125 in 6 tests, team 347, dvc_pipeline 330 plus its DVC queue sweep 679,
# ray_backend 380, keep_going 151, audit_junk 130). `make test` hands whole files to the two workers in collection order
# (--dist loadscope --no-loadscope-reorder): a file's shared fixture (one `dvc repro`) runs once, on one worker,
# and these start first, so no long file starts last, alone.
LONGEST_FIRST = (
    "test_dvc_pipeline.py",
    "test_three_classes.py",
    "test_reliability.py",
    "test_ray_backend.py",
    "test_team.py",
    "test_keep_going.py",
    "test_audit_junk.py",
    "test_deploy.py",
    "test_audit.py",
    "test_methods.py",
    "test_efficientnet_lite.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of LONGEST_FIRST first, in that order; the rest after them, as collected."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def offline() -> Iterator[None]:
    """The whole session, fixtures included, behind the network guard: a connect to any host but loopback is
    refused (Ray runs on 127.0.0.1, a test's server listens there), and every child process, whatever
    environment its test built, starts with the guard installed (network_guard.guarded_popen)."""
    with refused():
        yield


def tool_env() -> dict[str, str]:
    """The environment for `dvc` and `python -m pipeline`: this interpreter's bin first on PATH, and the network
    guard installed in every Python child (its sitecustomize first on PYTHONPATH)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return offline_env(env)


def child_env(**changes: str) -> dict[str, str]:
    """An environment a test builds for a child (this process's, with `changes`; an empty value removes the
    variable), with the network guard's sitecustomize first on PYTHONPATH, even when `changes` sets one."""
    env = {**os.environ, **changes}
    return offline_env({key: value for key, value in env.items() if value != ""})


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def make_project(dest: Path, raw: Path, overrides: dict) -> Path:
    """A copy of this project in `dest` (a git repo with DVC), with params.yaml updated by `overrides`."""
    for name in PROJECT_FILES:
        source = ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["paths"]["raw"] = str(raw)
    for dotted, value in overrides.items():
        section = params
        *parents, key = dotted.split(".")
        for part in parents:
            section = section.setdefault(part, {})
        section[key] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project"], dest)
    return dest


TINY_PARAMS = {
    "split.train": 20,
    "split.validation": 10,
    "split.test": 10,
    "featurize.backbones": ["vgg16"],
    "backbones.vgg16.weights": "none",
    "backbones.vgg16.input_size": 48,
    "heads.dense.epochs": 2,
    "visualize.layers": 2,
    "visualize.filters": 4,
    "visualize.steps": 3,
    "visualize.filter_size": 32,
}


@pytest.fixture(scope="session")
def sample_zip_40(tmp_path_factory) -> Path:
    """A Kaggle-layout train.zip with the first 40 images of each class."""
    return write_zip(tmp_path_factory.mktemp("raw") / "train.zip", sample_images(40))


def confusion_accuracy(metrics_dir: Path) -> tuple[float, int]:
    """Accuracy and image count recomputed from a stage's confusion-matrix plot (one actual/predicted per image)."""
    data = json.loads((metrics_dir / "plots" / "sklearn" / "confusion_matrix.json").read_text())
    pairs = next(value for value in data.values() if isinstance(value, list)) if isinstance(data, dict) else data
    return sum(p["actual"] == p["predicted"] for p in pairs) / len(pairs), len(pairs)


def check_test_metrics(metrics_dir: Path, images: int) -> dict:
    """metrics.json agrees with the confusion matrix written beside it: its accuracy, its image count."""
    metrics = json.loads((metrics_dir / "metrics.json").read_text())
    accuracy, count = confusion_accuracy(metrics_dir)
    assert metrics["test/images"] == count == images
    assert metrics["test/accuracy"] == round(accuracy, 4)
    return metrics
