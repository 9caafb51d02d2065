"""A sweep of head params the DVC way: `dvc exp run --queue -S ...` per value, `dvc queue start -j N`, and every
experiment's metrics in `dvc exp show`, with no feature recomputed."""

import json
import time
from pathlib import Path

import pytest
from conftest import TINY_PARAMS, make_project, run

pytestmark = pytest.mark.slow

C_VALUES = (0.01, 0.1, 1.0)


def queue_settled(project: Path) -> bool:
    status = run(["dvc", "queue", "status"], project).stdout
    return not any(word in status for word in ("Queued", "Running"))


def experiments(project: Path) -> list[dict]:
    """Each experiment of the workspace's baseline: its params and metrics as `dvc exp show --json` gives them."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    found = []
    for baseline in shown:
        for branch in baseline.get("experiments") or []:
            for revision in branch["revs"]:
                data = revision["data"]
                found.append(
                    {
                        "name": revision.get("name"),
                        "C": data["params"]["params.yaml"]["data"]["heads"]["logreg"]["C"],
                        "metrics": data["metrics"]["metrics/vgg16/logreg/metrics.json"]["data"],
                    }
                )
    return found


def test_a_queue_of_three_C_values_runs_each_without_featurize(tmp_path: Path, sample_zip_40: Path) -> None:
    overrides = {**TINY_PARAMS, "train.heads": ["logreg"], "visualize.heads": []}
    project = make_project(tmp_path / "project", sample_zip_40, overrides)
    run(["dvc", "repro"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], project)
    for c in C_VALUES:
        run(["dvc", "exp", "run", "--queue", "-S", f"heads.logreg.C={c}"], project)
    run(["dvc", "queue", "start", "-j", "2"], project)
    deadline = time.monotonic() + 600
    while not queue_settled(project):
        assert time.monotonic() < deadline, run(["dvc", "queue", "status"], project).stdout
        time.sleep(2)
    run(["dvc", "queue", "stop"], project, check=False)
    found = experiments(project)
    assert sorted(float(e["C"]) for e in found) == list(C_VALUES), found
    for experiment in found:
        metrics = experiment["metrics"]
        assert metrics["test/images"] == 20 and 0.0 <= metrics["test/accuracy"] <= 1.0
        log = run(["dvc", "queue", "logs", experiment["name"]], project).stdout
        assert "Running stage 'train@vgg16-logreg'" in log
        assert "Running stage 'featurize@vgg16'" not in log and "Running stage 'audit@vgg16'" not in log, log
