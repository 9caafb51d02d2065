"""The real `dvc repro` end to end on a small subset, the proof that swapping a head recomputes no features, and a
sweep of head params the DVC way (`dvc exp run --queue -S ...` per value, `dvc queue start -j N`, every
experiment's metrics in `dvc exp show`, no feature recomputed), all on the one reproduced project."""

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY_PARAMS, check_test_metrics, make_project, run

from pipeline.heads import load_head
from pipeline.store.index import FeatureStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, sample_zip_40) -> tuple[Path, Path]:
    """The project after one `dvc repro`, and a copy of it taken then, for a test that needs it as it was
    (the other tests change params and code in the first, each leaving it reproduced)."""
    root = make_project(tmp_path_factory.mktemp("dvc") / "project", sample_zip_40, TINY_PARAMS)
    result = run(["dvc", "repro"], root)
    assert "Running stage 'featurize@vgg16'" in result.stdout
    pristine = root.parent / "pristine"
    shutil.copytree(root, pristine, symlinks=True)
    return root, pristine


@pytest.fixture(scope="module")
def project(reproduced: tuple[Path, Path]) -> Path:
    return reproduced[0]


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def test_repro_end_to_end(project: Path) -> None:
    test = FeatureStore(project / "features" / "vgg16.h5").split("test")
    for head in ("dense", "logreg"):
        metrics = check_test_metrics(project / "metrics" / "vgg16" / head, images=20)
        probabilities = load_head(head, project / "models" / "vgg16" / head).predict_proba(test.features)
        assert metrics["test/accuracy"] == round(float((probabilities.argmax(axis=1) == test.labels).mean()), 4)
    shown = run(["dvc", "metrics", "show"], project).stdout
    assert "metrics/vgg16/dense/metrics.json" in shown and "metrics/vgg16/logreg/metrics.json" in shown
    curves = project / "dvclive" / "dense" / "vgg16" / "accuracy.tsv"
    lines = curves.read_text().splitlines()
    assert lines[0] == "epoch\ttrain\tvalidation" and len(lines) == 1 + TINY_PARAMS["heads.dense.epochs"]
    c_curve = (project / "dvclive" / "logreg" / "vgg16" / "accuracy.tsv").read_text().splitlines()
    assert c_curve[0] == "log10_C\ttrain\tvalidation" and len(c_curve) == 1 + 5  # every C that C: auto tried
    for png in ("dvclive/dense/vgg16/loss.png", "metrics/vgg16/logreg/plots/sklearn/confusion_matrix.png"):
        assert (project / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(metrics) == {"test/accuracy", "test/loss", "test/images", "test/misclassified"}  # one short row
    assert run(["dvc", "status"], project).stdout.strip() == "Data and pipelines are up to date."
    plots = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    assert "metrics/vgg16/dense/plots/sklearn/confusion_matrix.json" in plots
    curve = plots["dvclive/dense/vgg16/accuracy.tsv"][0]["content"]  # a top-level plot: train and validation
    assert {point["field"] for point in curve["data"]["values"]} == {"train", "validation"}
    assert plots["dvclive/logreg/vgg16/accuracy.tsv"][0]["content"]["encoding"]["x"]["field"] == "log10_C"


def test_head_param_change_recomputes_no_features(project: Path) -> None:
    store = project / "features" / "vgg16.h5"
    before = (store.stat().st_mtime_ns, store.stat().st_ino, store.read_bytes())
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["heads"]["logreg"]["C"] = 0.25
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["dvc", "repro"], project)
    # logreg has no visualize stage (visualize.heads: [dense]); the report reads the new metrics
    ran = ["train@vgg16-logreg", "evaluate@vgg16-logreg", "report"]
    assert ran_stages(result.stdout) == ran
    assert (store.stat().st_mtime_ns, store.stat().st_ino, store.read_bytes()) == before


def test_predict_cli(project: Path) -> None:
    images = sorted((project / "data" / "split" / "test" / "dog").iterdir())[:2]
    command = [sys.executable, "-m", "pipeline", "predict", *map(str, images), "--head", "logreg", "--format", "csv"]
    lines = run(command, project).stdout.strip().splitlines()  # the default backbone: vgg16, the one with a store
    assert lines[0] == "image,rank,class,probability,error" and len(lines) == 3
    store = FeatureStore(project / "features" / "vgg16.h5")
    test = store.split("test")
    probabilities = load_head("logreg", project / "models" / "vgg16" / "logreg").predict_proba(test.features)
    for line, image in zip(lines[1:], images, strict=True):  # what the head says of the store's rows of them
        path, rank, label, probability, error = line.split(",")
        row = test.ids.index(f"test/dog/{image.name}")
        assert (path, rank, error) == (str(image), "1", "")
        assert label == store.classes[probabilities[row].argmax()]
        assert float(probability) == pytest.approx(probabilities[row].max(), abs=1e-3)


def test_store_info_cli(project: Path) -> None:
    result = run([sys.executable, "-m", "pipeline", "store", "info", "features/vgg16.h5"], project)
    assert "backbone: vgg16" in result.stdout and "train: 40 rows" in result.stdout


def test_visualize_stage_renders_image_plots(project: Path) -> None:
    pictures = sorted(str(p.relative_to(project)) for p in (project / "plots" / "vgg16" / "dense").rglob("*.png"))
    assert not (project / "plots" / "vgg16" / "logreg").exists()  # logreg has no picture to draw, no stage
    assert pictures == [
        "plots/vgg16/dense/1_gradcam/gradcam_cat.30.png",
        "plots/vgg16/dense/1_gradcam/gradcam_dog.30.png",
        "plots/vgg16/dense/2_filters/filters_block3_conv1.png",
        "plots/vgg16/dense/3_activations/activations_cat.30_01_block1_conv1.png",
        "plots/vgg16/dense/3_activations/activations_cat.30_02_block1_conv2.png",
        "plots/vgg16/dense/3_activations/activations_dog.30_01_block1_conv1.png",
        "plots/vgg16/dense/3_activations/activations_dog.30_02_block1_conv2.png",
    ]
    shown = run(["dvc", "plots", "show", "--json"], project).stdout
    assert all(picture in shown for picture in pictures)


def test_export_stage_exists_only_when_asked_and_writes_the_model_and_its_check(project: Path) -> None:
    """deploy's lists are empty by default: no export stage. Listing vgg16 x logreg makes export@vgg16-logreg,
    which `dvc repro` runs alone (its inputs are up to date): model files, the parity check as DVC metrics, and
    on stdout only the command's own lines (no converter output)."""
    assert not [line for line in run(["dvc", "stage", "list"], project).stdout.splitlines() if "export" in line]
    params_file = project / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["deploy"] |= {"backbones": ["vgg16"], "heads": ["logreg"], "formats": ["tflite"], "check_limit": 6}
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        listed = [line.split()[0] for line in run(["dvc", "stage", "list"], project).stdout.splitlines()]
        assert [name for name in listed if name.startswith("export")] == ["export@vgg16-logreg"]
        result = run(["dvc", "repro", "export@vgg16-logreg"], project)
        status = run(["dvc", "status", "export@vgg16-logreg"], project).stdout.strip()
        shown = run(["dvc", "metrics", "show", "--json"], project).stdout
    finally:
        params_file.write_text(original)
    assert ran_stages(result.stdout) == ["export@vgg16-logreg"]
    out = project / "exports" / "vgg16" / "logreg"
    files = ["check.json", "model.dynamic-range.tflite", "model.json", "model.keras", "model.tflite"]
    assert sorted(p.name for p in out.iterdir()) == files
    command_lines = result.stdout.split("export.json\n", 1)[1].split("\nUpdating lock file")[0].strip().splitlines()
    sizes = {name: (out / name).stat().st_size / 1e6 for name in files}
    table = [line.split()[0] for line in command_lines[6:]]
    assert command_lines[:6] == [
        f"keras                 exports/vgg16/logreg/model.keras  ({sizes['model.keras']:.2f} MB)",
        f"tflite                exports/vgg16/logreg/model.tflite  ({sizes['model.tflite']:.2f} MB)",
        "tflite-dynamic-range  exports/vgg16/logreg/model.dynamic-range.tflite"
        f"  ({sizes['model.dynamic-range.tflite']:.2f} MB)",
        "metadata              exports/vgg16/logreg/model.json  (classes ['cat', 'dog'], recipe, image gate)",
        "",
        "check on the test split (6 images, one image a call; exports/vgg16/logreg/check.json):",
    ], result.stdout
    assert table == ["format", "predict", "keras", "tflite", "tflite-dynamic-range"], result.stdout
    metrics = json.loads((project / "metrics" / "vgg16" / "logreg" / "export.json").read_text())
    assert (metrics["split"], metrics["images"]) == ("test", 6)
    assert [metrics[name]["within_tolerance"] for name in ("keras", "tflite", "tflite-dynamic-range")] == [True] * 3
    assert metrics["keras"]["top1_agreement"] == metrics["tflite"]["top1_agreement"] == 1.0, metrics
    assert metrics["keras"]["accuracy"] == metrics["predict_accuracy"]
    assert "metrics/vgg16/logreg/export.json" in shown
    assert status == "Data and pipelines are up to date."


def test_a_code_change_reruns_featurize_without_computing_a_row(project: Path) -> None:
    """featurize depends on its code (dvc.yaml), yet its rows are keyed by the recipe, not the code: a change that
    leaves the recipe alone reruns the stage, which computes nothing and keeps every chunk."""
    chunks = project / "features" / "vgg16.chunks"
    before = {p.name: p.stat().st_mtime_ns for p in chunks.iterdir()}
    code = project / "pipeline" / "compute" / "local.py"
    code.write_text(code.read_text() + "\n# a refactoring that changes no number\n")
    assert "featurize@vgg16" in json.loads(run(["dvc", "status", "--json"], project).stdout)
    start = time.perf_counter()
    result = run(["dvc", "repro", "featurize@vgg16"], project)
    seconds = time.perf_counter() - start
    assert ran_stages(result.stdout) == ["featurize@vgg16"]
    assert "vgg16: computed 0 of 80 images" in result.stdout
    assert {p.name: p.stat().st_mtime_ns for p in chunks.iterdir()} == before
    print(f"featurize rerun after a code change: {seconds:.1f} s for `dvc repro featurize@vgg16`, 0 rows computed")


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


def test_a_queue_of_three_C_values_runs_each_without_featurize(reproduced: tuple[Path, Path]) -> None:
    """docs/performance-heads.md's sweep, from the reproduced project (as `dvc repro` left it) committed as the
    baseline."""
    project = reproduced[1]
    assert run(["dvc", "status"], project).stdout.strip() == "Data and pipelines are up to date."
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
