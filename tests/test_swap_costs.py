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


def stage_deps(root: Path, name: str, item: dict | None = None, keys: tuple[str, ...] = ("deps",)) -> list[Path]:
    """A stage's deps (or other path lists) in the project's dvc.yaml, resolved (params.yaml paths, matrix item)."""
    stage = yaml.safe_load((root / "dvc.yaml").read_text())["stages"][name]
    entries = [entry for key in keys for entry in stage.get(key, [])]
    return [(root / resolve(e if isinstance(e, str) else next(iter(e)), item)).resolve() for e in entries]


def reads(mode: str | None, flags: int) -> bool:
    """Whether an `open` audit event opens for reading only (what a stage writes is its output)."""
    if mode is not None:
        return not set(mode) & set("wax+")
    return not flags & (os.O_WRONLY | os.O_RDWR)


def files_read(root: Path, work) -> list[Path]:
    """The files under `root` that `work()` opens for reading, in this process."""
    opened: list[Path] = []
    recording = [True]

    def record(event: str, args: tuple) -> None:
        if recording[0] and event == "open" and isinstance(args[0], (str, Path)) and reads(*args[1:]):
            opened.append(Path(args[0]).resolve())

    sys.addaudithook(record)  # an audit hook cannot be removed: it records only while `recording` holds True
    try:
        work()
    finally:
        recording[0] = False
    return sorted({p for p in opened if root.resolve() in p.parents})


def not_covered(files: list[Path], deps: list[Path]) -> list[Path]:
    return [p for p in files if not any(p == d or d in p.parents for d in deps)]


def test_the_report_reads_only_its_deps(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file the report opens lies under a dep of its stage; no dep holds the split's images or the chunks."""
    monkeypatch.chdir(project)
    config = load_config("params.yaml")
    summaries: list = []
    read = files_read(project, lambda: summaries.append(build_report(config, Path("report"), "deps")))
    deps = stage_deps(project, "report")
    assert read and not_covered(read, deps) == []
    images = (project / config.paths.split / "train").resolve()
    chunks = (project / config.paths.features / "vgg16.chunks").resolve()
    assert not [d for d in deps if d in (images, chunks) or d in images.parents or d in chunks.parents]
    page = summaries[0].index.read_text()
    fingerprint = json.loads((project / config.paths.store_summary("vgg16")).read_text())["attrs"]["fingerprint"]
    assert "rows (train)" in page and fingerprint in page


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


def test_evaluate_reads_only_its_deps_and_not_the_training_images(project: Path, monkeypatch) -> None:
    """evaluate draws its mistakes from the test split: its deps name the test images, not the whole split."""
    from pipeline.cli.stages import evaluate
    from pipeline.stages.train import train

    monkeypatch.chdir(project)
    config = load_config("params.yaml")
    head_dir = config.paths.head_dir("vgg16", "logreg")
    curves = config.paths.curves_dir("vgg16", "logreg")
    train(config.paths.store("vgg16"), "logreg", config.head("logreg"), 42, head_dir, curves, None)
    read = files_read(project, lambda: evaluate("vgg16", "logreg", Path("params.yaml")))
    item = {"backbone": "vgg16", "head": "logreg"}
    deps = stage_deps(project, "evaluate", item)
    outputs = stage_deps(project, "evaluate", item, ("outs", "metrics", "plots"))
    allowed = [*deps, (project / "params.yaml").resolve(), *outputs, *(o.parent for o in outputs)]
    assert read and not_covered(read, allowed) == []
    train_images = (project / config.paths.split / "train").resolve()
    assert not [d for d in deps if d == train_images or d in train_images.parents]
