"""What a head swap costs DVC beyond the head's own stages: no visualize stage for a head with no picture to draw,
and a report stage whose deps are only the files it reads (not the split's images, not the stores' chunks), yet
that reruns when a result it shows changes. Real DVC on a project made at test time."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, make_project, run, sample_images, write_zip

from pipeline.core.config import BackboneConfig, FeaturizeConfig, SplitConfig, load_config
from pipeline.report.build import build_report
from pipeline.stages.featurize import featurize
from pipeline.stages.split import split, write_metrics
from pipeline.store.summary import write_store_summary
from tests.test_dvc_deps import resolve

UP_TO_DATE = "Data and pipelines are up to date."


def test_visualize_stages_are_the_keras_heads_of_visualize_heads(tmp_path: Path) -> None:
    """DVC's own stage list for the shipped dvc.yaml and params.yaml: train.heads trains logreg, yet no
    visualize stage of it exists (it has no Keras model to picture)."""
    root = make_project(tmp_path / "p", tmp_path / "raw.zip", {})
    names = run(["dvc", "stage", "list", "--name-only"], root).stdout.split()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert "logreg" in params["train"]["heads"]
    assert [n for n in names if n.startswith("train@")] == [
        f"train@{b}-{h}" for b in params["featurize"]["backbones"] for h in params["train"]["heads"]
    ]
    assert [n for n in names if n.startswith("visualize@")] == [
        f"visualize@{b}-dense" for b in params["featurize"]["backbones"]
    ]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A DVC project holding what the report reads: a real split and store (its summary), and small results.
    visualize.heads is empty, so the pictures folder holds only what git holds (the report depends on it)."""
    root = tmp_path_factory.mktemp("swap")
    overrides = {
        "featurize.backbones": ["vgg16"],
        "train.heads": ["logreg"],
        "visualize.heads": [],
        "backbones.vgg16.weights": "none",
        "backbones.vgg16.input_size": 32,
    }
    root = make_project(root / "p", write_zip(root / "raw.zip", sample_images(6)), overrides)
    config = load_config(root / "params.yaml")
    paths = config.paths
    images = root / paths.images
    images.mkdir(parents=True)
    for name, data in sample_images(6).items():
        (images / name).write_bytes(data)
    result = split(images, root / paths.split, SplitConfig(train=3, validation=1, test=2))
    write_metrics(result, root / paths.split_metrics, root / paths.split_counts)
    store = root / paths.store("vgg16")
    featurize(
        "vgg16",
        BackboneConfig(weights="none", input_size=32),
        FeaturizeConfig(chunk_rows=4),
        root / paths.manifest,
        store,
    )
    write_store_summary(store, root / paths.weights_record("vgg16"), root / paths.store_summary("vgg16"))
    head = root / paths.metrics_dir("vgg16", "logreg")
    head.mkdir(parents=True)
    (head / "metrics.json").write_text(json.dumps({"test/accuracy": 0.75, "test/images": 4}))
    curves = root / paths.curves_dir("vgg16", "logreg")
    curves.mkdir(parents=True)
    (curves / "accuracy.tsv").write_text("log10_C\ttrain\tvalidation\n-1.0\t0.9\t0.8\n")
    (root / paths.audit_dir("vgg16")).mkdir(parents=True)
    (root / paths.audit_dir("vgg16") / "counts.json").write_text(json.dumps({"label_issue": 0}))
    assert not list((root / paths.plots).rglob("*.png"))  # no visualize stage drew; the folder is in git
    return root


def report_deps(root: Path) -> list[Path]:
    stage = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["report"]
    return [root / resolve(dep, None) for dep in stage["deps"]]


def reads(mode: str | None, flags: int) -> bool:
    """Whether an `open` audit event opens for reading only (what the report writes is its output)."""
    if mode is not None:
        return not set(mode) & set("wax+")
    return not flags & (os.O_WRONLY | os.O_RDWR)


def test_the_report_reads_only_its_deps(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file the report opens lies under a dep of its stage; no dep holds the split's images or the chunks."""
    opened: list[Path] = []
    recording = [True]

    def record(event: str, args: tuple) -> None:
        if recording[0] and event == "open" and isinstance(args[0], (str, Path)) and reads(*args[1:]):
            opened.append(Path(args[0]).resolve())

    monkeypatch.chdir(project)
    config = load_config("params.yaml")
    sys.addaudithook(record)  # an audit hook cannot be removed: it records only while `recording` holds True
    try:
        summary = build_report(config, Path("report"), "deps")
    finally:
        recording[0] = False
    here = project.resolve()
    read = sorted({p for p in opened if here in p.parents})
    deps = [dep.resolve() for dep in report_deps(project)]
    unlisted = [str(p.relative_to(project.resolve())) for p in read if not any(p == d or d in p.parents for d in deps)]
    assert read and unlisted == []
    images = (project / config.paths.split / "train").resolve()
    chunks = (project / config.paths.features / "vgg16.chunks").resolve()
    assert not [d for d in deps if d in (images, chunks) or d in images.parents or d in chunks.parents]
    page = summary.index.read_text()
    assert (
        "rows (train)" in page
        and json.loads((project / config.paths.store_summary("vgg16")).read_text())["attrs"]["fingerprint"] in page
    )


def report_status(root: Path) -> str:
    return run(["dvc", "status", "report"], root).stdout.strip()


def test_the_report_reruns_when_a_result_it_shows_changes(project: Path) -> None:
    """dvc status: a new image in the split or a changed chunk leaves the report up to date; the store's rows,
    the split's rejects and a head's metrics each make it stale."""
    config = load_config(project / "params.yaml")
    run([sys.executable, "-m", "pipeline", "report"], project)
    run(["dvc", "commit", "--force", "report"], project)
    assert report_status(project) == UP_TO_DATE
    extra = project / config.paths.split / "train" / "cat" / "cat.999.jpg"
    extra.write_bytes(next(iter(sample_images(1).values())))
    chunk = next((project / config.paths.features / "vgg16.chunks").glob("chunk-*.h5"))
    chunk.write_bytes(chunk.read_bytes() + b"\0")
    assert report_status(project) == UP_TO_DATE
    changes = [
        project / config.paths.store_summary("vgg16"),
        project / config.paths.split / "rejects.csv",
        project / config.paths.metrics_dir("vgg16", "logreg") / "metrics.json",
    ]
    for changed in changes:
        changed.write_text(changed.read_text() + "\n")
        status = report_status(project)
        assert "report:" in status and "changed deps" in status, changed
        run(["dvc", "commit", "--force", "report"], project)


def test_visualize_render_refuses_a_head_with_no_picture_to_draw() -> None:
    """Through the CLI: one error line naming the head and the Keras heads, exit 2, nothing drawn."""
    result = run([sys.executable, "-m", "pipeline", "visualize", "render", "vgg16", "logreg"], ROOT, check=False)
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (
        2,
        "error: visualize render: logreg is not a Keras head, so it has no picture to draw (Keras heads: dense; "
        "visualize.heads lists the ones the pipeline pictures)",
    )
    assert not (ROOT / "plots" / "vgg16" / "logreg").exists()
