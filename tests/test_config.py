"""The params schema: defaults equal params.yaml, every bad value is refused before any work with the key named."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from pipeline.core.config import BACKBONES, DEFAULT_INPUT_SIZES, HEADS, KERAS_HEADS, Config, load_config, validate
from pipeline.core.errors import ConfigError
from pipeline.core.params_table import markdown_table
from tests.conftest import ROOT, tool_env

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_value(dotted: str, value: object) -> dict:
    """A copy of params.yaml with one key set."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    *parents, last = dotted.split(".")
    section = params
    for key in parents:
        section = section.setdefault(key, {})
    section[last] = value
    return params


def test_the_schema_defaults_are_params_yaml() -> None:
    loaded = asdict(load_config(ROOT / "params.yaml"))
    defaults = asdict(Config())
    loaded.pop("raw"), defaults.pop("raw")
    assert loaded == defaults


def test_known_names_are_the_registries() -> None:
    from pipeline.backbones import backbone_names
    from pipeline.heads import HEADS as HEAD_MODULES

    assert sorted(BACKBONES) == backbone_names()
    assert sorted(HEADS) == sorted(HEAD_MODULES)


def test_keras_heads_are_the_heads_that_save_a_keras_model() -> None:
    from pipeline.heads import is_keras_head

    assert tuple(head for head in HEADS if is_keras_head(head)) == KERAS_HEADS


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"visualize": {"heads": ["logreg"]}}, "params: visualize.heads[0]: received 'logreg'; allowed: 'dense'"),
        (
            {"train": {"heads": ["logreg"]}},
            "params: visualize.heads: received ['dense']; dense is not in train.heads ['logreg']: add it there or "
            "remove it from visualize.heads",
        ),
    ],
)
def test_visualize_heads_are_trained_keras_heads(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate(raw)
    assert str(caught.value) == message


def test_visualize_heads_may_be_empty() -> None:
    assert validate({"train": {"heads": ["logreg"]}, "visualize": {"heads": []}}).visualize.heads == ()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("split.train", -5, "split.train: received -5; allowed: a whole number of images >= 1 or a fraction"),
        ("heads.dense.epochs", -3, "heads.dense.epochs: received -3; allowed: greater than or equal to 1"),
        ("split.train", "lots", "split.train: received 'lots'; allowed: a whole number of images >= 1 or a"),
        ("split.shuffle", 1, "split.shuffle: received 1; allowed: a valid boolean"),
        ("featurize.resize", "lanczos", "featurize.resize: received 'lanczos'; allowed: 'bilinear', 'nearest'"),
        ("featurize.precision", "int8", "featurize.precision: received 'int8'; allowed: 'auto', 'float32'"),
        (
            "featurize.backbones",
            ["vgg17"],
            "featurize.backbones[0]: received 'vgg17'; allowed: 'vgg16', 'efficientnet_lite0',",
        ),
        ("train.heads", ["svm"], "train.heads[0]: received 'svm'; allowed: 'dense' or 'logreg'"),
        ("heads.logreg.C", 0, "heads.logreg.C: received 0; allowed: 'auto' or a number > 0"),
        ("heads.dense.dropout", True, "heads.dense.dropout: received True; allowed: a number, not a boolean"),
        ("methods.augmentation.fill_mode", "mirror", "fill_mode: received 'mirror'; allowed: 'nearest',"),
        ("methods.augment.precision", "float16", "methods.augment.precision: received 'float16'; allowed: 'float32'"),
        ("split.trian", 3, "split.trian: unknown key. Allowed here: ['train', 'validation'"),
        (
            "backbones.resnet50",
            {"weights": "none"},
            "backbones.resnet50: unknown key. Allowed: 'vgg16', 'efficientnet_lite0',",
        ),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(with_value(key, value), "params.yaml")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("deploy", "message"),
    [
        (
            {"backbones": ["efficientnet_lite1"], "heads": ["logreg"]},
            "params.yaml: deploy.backbones[0]: received 'efficientnet_lite1'; it must be one of featurize.backbones"
            " (['vgg16', 'efficientnet_lite0']): the export reads what the pipeline built for it",
        ),
        (
            {"backbones": ["vgg16"], "heads": ["logreg", "svm"]},
            "params.yaml: deploy.heads[1]: received 'svm'; allowed: 'dense' or 'logreg'",
        ),
        (
            {"backbones": ["vgg16"], "heads": []},
            "params.yaml: deploy.backbones and deploy.heads: set both (or neither); one empty list exports nothing."
            " Received: backbones=['vgg16'], heads=[]",
        ),
    ],
)
def test_an_export_names_a_built_store_and_a_trained_head(deploy: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(with_value("deploy", PARAMS["deploy"] | deploy), "params.yaml")
    assert str(info.value) == message


def test_an_export_of_a_head_train_does_not_train_is_refused() -> None:
    params = with_value("deploy", PARAMS["deploy"] | {"backbones": ["vgg16"], "heads": ["dense"]})
    params["train"]["heads"] = ["logreg"]
    with pytest.raises(ConfigError) as info:
        validate(params, "params.yaml")
    assert str(info.value) == (
        "params.yaml: deploy.heads[0]: received 'dense'; it must be one of train.heads (['logreg']):"
        " the export reads what the pipeline built for it"
    )
    params["train"]["heads"] = ["logreg", "dense"]
    assert validate(params).deploy.heads == ("dense",)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("split.train", -5, "split.train: received -5"),
        ("heads.dense.epochs", -3, "heads.dense.epochs: received -3"),
        ("split.train", "lots", "split.train: received 'lots'"),
    ],
)
def test_the_cli_exits_2_before_any_work(tmp_path: Path, key: str, value: object, message: str) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value(key, value)))
    (tmp_path / "data" / "images").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "split"], cwd=tmp_path, env=tool_env(), capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: params.yaml: ") and message in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["images"]  # no split folder: no work done


def test_the_params_page_table_is_the_schema() -> None:
    page = (ROOT / "docs" / "params.md").read_text()
    assert markdown_table() in page, "docs/params.md's table is stale: paste `python -m pipeline params`'s table"


def test_the_params_table_shows_each_backbones_own_input_size() -> None:
    row = next(line for line in markdown_table().splitlines() if line.startswith("| `backbones.<name>.input_size`"))
    expected = ", ".join(f"{name}: {size}" for name, size in sorted(DEFAULT_INPUT_SIZES.items()))
    assert f"| `{{{expected}}}` |" in row, row
    weights = next(line for line in markdown_table().splitlines() if line.startswith("| `backbones.<name>.weights`"))
    assert "| `imagenet` |" in weights, weights
