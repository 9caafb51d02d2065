"""Commands whose work needs no TensorFlow never import it: each runs as the real CLI in a fresh interpreter,
which then reports whether tensorflow or keras (or scikit-learn) reached sys.modules. The logreg head's stages
import no scikit-learn either (scipy's L-BFGS-B fits it, numpy scores it)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, make_split, tool_env

from pipeline.core.config import BackboneConfig, FeaturizeConfig
from pipeline.stages.featurize import featurize

# Runs `python -m pipeline ARGS` in this interpreter, then prints the heavy modules it imported.
PROBE = """
import runpy, sys
sys.argv = ["pipeline", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("pipeline", run_name="__main__")
except SystemExit as exit:
    code = exit.code or 0
heavy = sorted(name for name in ("tensorflow", "keras", "sklearn") if name in sys.modules)
print(f"HEAVY={','.join(heavy)} EXIT={code}", file=sys.stderr)
"""

COMMANDS = {
    "train logreg": ["train", "vgg16", "logreg"],
    "evaluate logreg": ["evaluate", "vgg16", "logreg"],
    "audit": ["audit", "run", "vgg16"],
    "store verify": ["store", "verify"],
    "store info": ["store", "info", "features/vgg16.h5"],
    "store export": ["store", "export", "features/vgg16.h5", "-f", "npy", "--pooling", "avg"],
    "weights none": ["weights", "vgg16"],  # the project's vgg16 weights: none
    "weights lite0": ["weights", "efficientnet_lite0"],  # imagenet: the pip package's .pth, hashed
    "doctor": ["doctor"],
    "params": ["params"],
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A featurized store (VGG16, random weights, 32 px) and a params.yaml that points at it."""
    root = tmp_path_factory.mktemp("imports")
    manifest = make_split(root, 15, 9, 3, 3)
    backbone = BackboneConfig(weights="none", input_size=32)
    featurize("vgg16", backbone, FeaturizeConfig(), manifest, root / "features" / "vgg16.h5")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["paths"] |= {"raw": "raw.zip", "split": "split", "features": "features", "audit": "audit"}
    params["featurize"]["backbones"] = ["vgg16"]
    params["backbones"]["vgg16"] = {"weights": "none", "input_size": 32}
    params["train"]["heads"] = ["logreg"]
    params["visualize"]["heads"] = []
    params["heads"]["logreg"]["C"] = 0.1
    params["audit"]["folds"] = 3
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "raw.zip").write_bytes(b"")
    # evaluate needs a trained head whichever worker or order runs it: train it here, not in another test
    subprocess.run(
        [sys.executable, "-m", "pipeline", "train", "vgg16", "logreg"],
        cwd=root,
        env=tool_env(),
        check=True,
        timeout=300,
    )
    return root


def heavy_modules(project: Path, args: list[str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=project, env=tool_env(), capture_output=True, text=True, timeout=300
    )
    line = next((x for x in result.stderr.splitlines() if x.startswith("HEAVY=")), None)
    assert line is not None, result.stderr[-3000:]
    assert line.endswith(" EXIT=0") or args[0] == "doctor", result.stdout + result.stderr[-3000:]
    return line.split()[0].removeprefix("HEAVY=")


WITHOUT_SKLEARN = ("train logreg", "evaluate logreg")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_runs_without_importing_tensorflow(project: Path, command: str) -> None:
    heavy = set(filter(None, heavy_modules(project, COMMANDS[command]).split(",")))
    assert heavy - ({"sklearn"} if command not in WITHOUT_SKLEARN else set()) == set()


def test_the_probe_sees_tensorflow_where_a_command_needs_it(project: Path) -> None:
    """The dense head trains with Keras: the same probe must report it, or the test above could not fail."""
    heavy = heavy_modules(project, ["train", "vgg16", "dense", "--params", "params.yaml"]).split(",")
    assert {"keras", "tensorflow"} <= set(heavy)  # and sklearn, which TensorFlow's import pulls in
