"""The Python API (pipeline.api), store export, the console command and the API snippet of README.md and
docs/api.md, on a real EfficientNet-Lite0 store of sample images."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, make_split, run, tool_env
from network_guard import offline_env

from pipeline.api import export, load_dataset, load_split
from pipeline.core.config import BackboneConfig, FeaturizeConfig
from pipeline.stages.featurize import featurize
from pipeline.store.index import FeatureStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder with split/ (6 train, 3 validation, 3 test per class) and features/efficientnet_lite0.h5."""
    root = tmp_path_factory.mktemp("api")
    manifest = make_split(root, 12, train=6, validation=3, test=3)
    store = root / "features" / "efficientnet_lite0.h5"
    featurize(
        "efficientnet_lite0", BackboneConfig("imagenet", 64), FeaturizeConfig(precision="float32"), manifest, store
    )
    return root


def test_load_split_as_numpy(project: Path) -> None:
    store = project / "features" / "efficientnet_lite0.h5"
    features, labels, ids, classes = load_split(str(store), "train")
    assert features.shape == (12, 2, 2, 1280) and features.dtype == np.float32
    assert labels.dtype == np.int64 and labels.tolist() == [0] * 6 + [1] * 6
    assert classes == ["cat", "dog"] and ids[0] == "train/cat/cat.0.jpg" and all(type(i) is str for i in ids)
    pooled = load_split(store, "train", pooling="avg")
    assert pooled.features.shape == (12, 1280)
    assert np.allclose(pooled.features, features.mean(axis=(1, 2)))
    assert load_split(store, "test", pooling="max").features.shape == (6, 1280)
    assert load_split(store, "test", pooling="flatten").features.shape == (6, 5120)
    assert load_split(store, "test", pooling="auto").features.shape == (6, 1280)  # the backbone's default: avg
    assert FeatureStore(str(store)).classes == ["cat", "dog"]
    with pytest.raises(ValueError, match="pooling must be one of"):
        load_split(store, "test", pooling="mean")


def test_load_dataset(project: Path) -> None:
    dataset = load_dataset(project / "features" / "efficientnet_lite0.h5", "train", pooling="avg", batch_size=5)
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    assert [x.shape for x, _ in batches] == [(5, 1280), (5, 1280), (2, 1280)]
    assert np.concatenate([y for _, y in batches]).tolist() == [0] * 6 + [1] * 6


def test_export_npy_and_parquet(project: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    store = project / "features" / "efficientnet_lite0.h5"
    export(store, tmp_path, pooling="avg")
    test = load_split(store, "test", pooling="avg")
    assert np.array_equal(np.load(tmp_path / "test_features.npy"), test.features)
    assert np.load(tmp_path / "test_labels.npy").tolist() == test.labels.tolist()
    assert np.load(tmp_path / "test_ids.npy").tolist() == test.ids
    table = pq.read_table(tmp_path / "test.parquet")
    assert table.column_names == ["id", "label", "class", "features"]
    assert table.column("id").to_pylist() == test.ids
    assert table.column("class").to_pylist() == ["cat"] * 3 + ["dog"] * 3
    assert np.allclose(np.array(table.column("features").to_pylist(), dtype=np.float32), test.features)
    assert json.loads(table.schema.metadata[b"classes"]) == ["cat", "dog"]
    assert json.loads((tmp_path / "store.json").read_text())["backbone"] == "efficientnet_lite0"


def test_store_export_cli(project: Path) -> None:
    result = run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "store",
            "export",
            "features/efficientnet_lite0.h5",
            "-o",
            "out",
            "-f",
            "npy",
        ],
        project,
    )
    assert "out/train_features.npy" in result.stdout and not list((project / "out").glob("*.parquet"))
    assert np.load(project / "out" / "train_features.npy").shape == (12, 2, 2, 1280)
    bad = run([sys.executable, "-m", "pipeline", "store", "export", "features/x.h5"], project, check=False)
    assert bad.returncode == 2 and "Feature store not found" in bad.stderr and "Traceback" not in bad.stderr


def test_console_command_is_declared_and_runs() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()  # tomllib is Python 3.11+; the project supports 3.10
    section = pyproject.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    module, function = re.search(r'^convnet-store = "([\w.]+):(\w+)"$', section, re.M).groups()
    code = f"import sys; sys.argv = ['convnet-store', '--help']; from {module} import {function}; {function}()"
    result = subprocess.run([sys.executable, "-c", code], env=tool_env(), capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "predict" in result.stdout and "store" in result.stdout


def api_snippet(page: str) -> str:
    text = (ROOT / page).read_text()
    match = re.search(r"<!-- api-snippet[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, f"{page} has no api-snippet python block"
    return match.group(1)


@pytest.mark.parametrize("page", ["README.md", "docs/api.md"])
def test_the_documented_api_snippet_runs(project: Path, page: str) -> None:
    env = offline_env(tool_env() | {"PYTHONPATH": str(ROOT)})  # the snippet imports this tree, offline
    result = subprocess.run(
        [sys.executable, "-c", api_snippet(page)], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "(12, 1280) float32 ['cat', 'dog'] train/cat/cat.0.jpg"
    from sklearn.linear_model import LogisticRegression

    store = project / "features" / "efficientnet_lite0.h5"
    train, test = load_split(store, "train", pooling="avg"), load_split(store, "test", pooling="avg")
    accuracy = LogisticRegression(max_iter=1000).fit(train.features, train.labels).score(test.features, test.labels)
    assert lines[1] == f"test accuracy {accuracy:.3f}"  # the snippet's model, refitted here
    majority = np.bincount(test.labels).max() / len(test.labels)  # calling every pet the commoner class
    assert accuracy >= majority + 2 / len(test.labels), accuracy  # ImageNet features tell 2 more images apart
    assert lines[2].startswith("(6, 1280) [0 0 0 1 1 1]")
