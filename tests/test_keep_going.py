"""`make run` offline with a backbone whose weights are missing: the preflight says so, every other branch
runs to the end, and the run ends non-zero with one list of what did not run and the fix."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_PARAMS, make_project, sample_images, tool_env, write_zip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("make") is None, reason="needs make"),
]

RAW = "data/raw/dogs-vs-cats.zip"
PARAMS = {
    **TINY_PARAMS,
    "paths.raw": RAW,
    "featurize.backbones": ["vgg16", "efficientnet_lite0"],
    "backbones.vgg16.weights": "weights/missing.h5",
    "backbones.efficientnet_lite0.weights": "none",
    "backbones.efficientnet_lite0.input_size": 32,
    "train.heads": ["logreg"],
    "visualize.heads": [],  # logreg has no picture to draw
}


def test_make_run_finishes_what_it_can_and_lists_the_rest(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project", Path(RAW), PARAMS)
    write_zip(root / RAW, sample_images(40))
    bin_dir = Path(sys.executable).parent
    # -o .venv/.installed: use this interpreter's environment instead of making the project's own .venv
    result = subprocess.run(
        ["make", "-o", ".venv/.installed", "run", f"BIN={bin_dir}"],
        cwd=root, env=tool_env(), capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "ERROR    weights   vgg16: backbones.vgg16.weights names weights/missing.h5, which is not there" in out
    assert "doctor: can run all but the stages of vgg16" in out
    metrics_path = root / "metrics" / "efficientnet_lite0" / "logreg" / "metrics.json"
    assert metrics_path.is_file(), out  # the other branch ran end to end
    metrics = json.loads(metrics_path.read_text())
    assert metrics["test/images"] == 20  # the other branch ran end to end
    listed = out[out.index("could not run ") :].splitlines()
    blocked = set(listed[1].removeprefix("  - ").split(", "))
    expected = {
        "weights@vgg16",
        "featurize@vgg16",
        "train@vgg16-logreg",
        "evaluate@vgg16-logreg",
    }
    assert expected <= blocked and all("@vgg16" in stage for stage in blocked), listed[1]  # one group: vgg16's
    assert listed[0] == f"could not run {len(blocked) + 1} stage(s):"  # + the report, which reads every branch
    assert listed[2] == "      why: vgg16: backbones.vgg16.weights names weights/missing.h5, which is not there"
    assert listed[3].startswith("      fix: put the file there")
    assert listed[4:6] == [
        "  - report",
        "      why: they failed or depend on a stage that failed: see its error in the log above",
    ]
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    offered = [line[3:] for line in status.splitlines()]
    cached = ("data/", "features/", "models/")
    assert not [path for path in offered if path.startswith(cached)], "git offers DVC's cached outputs"
