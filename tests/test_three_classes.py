"""Three classes end to end through a real `dvc repro`: a class-folder dataset (any file names, a top folder,
PNG digits beside JPEG pets, an empty and a corrupt file) -> split, features, heads, evaluate with error
analysis, visualize, a method stage and the report; then predict on it in each format, with a bad file, and
open the report and `dvc plots show`'s page in headless Chromium with the network off."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from browser import open_offline, require_chromium
from conftest import MNIST_DIR, make_project, run, sample_images
from PIL import Image

from pipeline.heads import load_head
from pipeline.store.index import FeatureStore
from pipeline.training.idx import read_idx

pytestmark = pytest.mark.slow

PER_CLASS = 22  # 12 train, 4 validation, 6 test
PARAMS = {
    "split.train": 12,
    "split.validation": 4,
    "split.test": 6,
    "featurize.backbones": ["efficientnet_lite0"],
    "backbones.efficientnet_lite0.input_size": 96,
    "heads.dense.epochs": 10,
    "heads.dense.pooling": "avg",
    "heads.dense.learning_rate": 1.0e-3,
    "heads.logreg.C": 1.0,
    "visualize.layers": 1,
    "visualize.filters": 2,
    "visualize.steps": 2,
    "visualize.filter_size": 32,
    "methods.run.scratch": [42],
    "methods.scratch.input_size": 48,
    "methods.scratch.epochs": 1,
    "methods.scratch.batch_size": 8,
}


def digit_pngs(count: int) -> dict[str, bytes]:
    """Real MNIST test digits, upscaled to 96 px RGB PNGs."""
    digits = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:count]
    files = {}
    for i, digit in enumerate(digits):
        buffer = io.BytesIO()
        Image.fromarray(np.stack([digit] * 3, axis=-1)).resize((96, 96)).save(buffer, "PNG")
        files[f"mnist {i + 1}.png"] = buffer.getvalue()
    return files


def three_class_zip(path: Path) -> Path:
    """my-images/{cat,dog,digit}/<any name>, plus digit/0 empty.png (0 bytes) and digit/0 cut.png (truncated)."""
    pets = sample_images(PER_CLASS)
    files = {f"my-images/{name.split('.')[0]}/photo_{name.split('.')[1]}.jpg": data for name, data in pets.items()}
    digits = digit_pngs(PER_CLASS)
    files |= {f"my-images/digit/{name}": data for name, data in digits.items()}
    files["my-images/digit/0 empty.png"] = b""
    files["my-images/digit/0 cut.png"] = digits["mnist 1.png"][:100]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("three")
    raw = three_class_zip(root / "my-images.zip")
    project = make_project(root / "project", raw, PARAMS)
    result = run(["dvc", "repro"], project)
    print(result.stdout)  # the record: evaluate prints accuracy and the per-class table
    return project


def trivial_floor(labels: np.ndarray, classes: list[str]) -> float:
    """Above what a head gets by telling digits from pets and calling every pet one class (12 of 18 here),
    by two images: the pets must be told apart too."""
    counts = {name: int((labels == i).sum()) for i, name in enumerate(classes)}
    rule = (counts["digit"] + max(counts["cat"], counts["dog"])) / len(labels)
    return rule + 2 / len(labels)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_repro_three_classes(project: Path) -> None:
    rows = read_csv(project / "data" / "split" / "manifest.csv")
    assert sorted({row["class"] for row in rows}) == ["cat", "digit", "dog"]
    assert {row["path"] for row in rows} >= {"train/cat/photo_0.jpg", "test/digit/mnist 22.png"}
    rejects = read_csv(project / "data" / "split" / "rejects.csv")
    assert [(r["path"], r["reason"].split(":")[0]) for r in rejects] == [
        ("digit/0 cut.png", "truncated"),
        ("digit/0 empty.png", "empty"),
    ]
    for head in ("dense", "logreg"):
        folder = project / "metrics" / "efficientnet_lite0" / head
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["test/images"] == 18
        per_class = read_csv(folder / "per_class.csv")  # a plot, not a metric
        assert [(row["class"], row["support"]) for row in per_class] == [("cat", "6"), ("digit", "6"), ("dog", "6")]
        store = FeatureStore(project / "features" / "efficientnet_lite0.h5")
        test, classes = store.split("test"), store.classes
        probabilities = load_head(head, project / "models" / "efficientnet_lite0" / head).predict_proba(test.features)
        predicted = probabilities.argmax(axis=1)
        assert metrics["test/accuracy"] == round(float((predicted == test.labels).mean()), 4)  # the head's own
        assert metrics["test/accuracy"] >= trivial_floor(test.labels, classes), metrics
        mistakes = read_csv(folder / "misclassified.csv")
        assert len(mistakes) == metrics["test/misclassified"]
        wrong = np.flatnonzero(predicted != test.labels)
        assert {m["id"]: (m["true"], m["predicted"]) for m in mistakes} == {
            test.ids[i]: (classes[test.labels[i]], classes[predicted[i]]) for i in wrong
        }
        top = dict(zip(test.ids, probabilities.max(axis=1), strict=True))
        assert all(float(m["probability"]) == pytest.approx(top[m["id"]], abs=1e-4) for m in mistakes)
        assert [float(m["probability"]) for m in mistakes] == sorted(
            (float(m["probability"]) for m in mistakes), reverse=True
        )
        sheet = Image.open(folder / "plots" / "misclassified.png")
        assert sheet.format == "PNG" and sheet.size[0] >= 134 * min(len(mistakes), 8)
    scratch = json.loads((project / "metrics" / "methods" / "scratch" / "42" / "metrics.json").read_text())
    assert scratch["test/images"] == 18
    gradcams = sorted(p.name for p in (project / "plots" / "efficientnet_lite0" / "dense" / "1_gradcam").iterdir())
    assert gradcams == ["gradcam_cat_photo_16.png", "gradcam_digit_mnist_17.png", "gradcam_dog_photo_16.png"]
    plots = run(["dvc", "plots", "show", "--json"], project).stdout
    assert "misclassified.png" in plots
    assert run(["dvc", "status"], project).stdout.strip() == "Data and pipelines are up to date."


def predict(project: Path, *args: str) -> tuple[int, str, str]:
    result = run([sys.executable, "-m", "pipeline", "predict", *args], project, check=False)
    return result.returncode, result.stdout, result.stderr


def test_predict_formats_folders_globs_and_bad_files(project: Path) -> None:
    (project / "bad").mkdir()
    (project / "bad" / "empty.jpg").write_bytes(b"")
    (project / "bad" / "notes.jpg").write_text("not an image")
    code, out, err = predict(project, "data/split/test/digit", "--format", "json", "--top-k", "3")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 6 and all(len(r["top_k"]) == 3 and r["error"] is None for r in rows)
    assert sum(r["class"] == "digit" for r in rows) >= 5
    assert rows[0]["image"].endswith("mnist 17.png")  # natural order: 17 before 18 ... 22

    bad = ["bad/empty.jpg", "bad/notes.jpg", "missing.jpg"]
    code, out, err = predict(project, "data/split/test/*/photo_2*.jpg", *bad, "-f", "csv")
    assert code == 1 and "3 of 7 image(s) could not be classified" in err
    assert "Traceback" not in err
    table = list(csv.DictReader(io.StringIO(out)))
    assert [r["image"] for r in table] == [
        *(f"data/split/test/{cls}/photo_{n}.jpg" for cls in ("cat", "dog") for n in (20, 21)),
        *bad,
    ]
    assert [r["error"].split(":")[0] for r in table[4:]] == ["empty", "not an image", "not found"]
    assert all(r["class"] in ("cat", "dog", "digit") and r["rank"] == "1" and not r["error"] for r in table[:4])


def test_report_opens_offline_in_chromium(project: Path, tmp_path: Path) -> None:
    """The report stage's page, zipped-and-mailed (copied elsewhere): every chart drawn, every image shown,
    no console error and no network request, in headless Chromium with the network off."""
    require_chromium()
    mailed = tmp_path / "mailed"
    shutil.copytree(project / "report", mailed)
    seen = open_offline(mailed / "index.html", ".chart", screenshot=tmp_path / "report.png")
    assert seen.console_errors == [] and seen.network_requests == []
    # accuracy; then learning curves, confusion matrix and per-class bars for each of dense and logreg
    assert len(seen.charts) == 7 and seen.undrawn_charts() == []
    copied = sorted(p.name for p in (mailed / "images").iterdir())
    assert sorted(Path(i["src"]).name for i in seen.images) == copied and seen.broken_images() == []
    shown = {name.split("_", 1)[1] for name in copied}
    assert {"misclassified.png", "map.png", "label_issue.png", "gradcam_cat_photo_16.png", "accuracy.png"} <= shown
    page = (mailed / "index.html").read_text()
    assert "digit/0 cut.png" in page and "weights_file_sha256" in page  # the split's rejects, the store's provenance


def test_dvc_plots_show_draws_offline(project: Path, tmp_path: Path) -> None:
    """`dvc plots show` with the shipped template (.dvc/plots.html): no CDN, every Vega chart drawn."""
    require_chromium()
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], project)
    page = tmp_path / "plots" / "index.html"
    charts = re.findall(r"vegaEmbed\('(#[^']+)'", page.read_text())
    assert len(charts) >= 10 and "cdn.jsdelivr" not in page.read_text()
    seen = open_offline(page, ", ".join(charts))
    assert seen.console_errors == [] and seen.network_requests == []
    assert len(seen.charts) == len(charts) and seen.undrawn_charts() == []
    assert len(seen.images) >= 10 and seen.broken_images() == []


def test_metrics_show_is_one_short_row_per_file(project: Path) -> None:
    """Per-class numbers are no metric; the default stages' metrics files fit 200 columns, whatever the number
    of classes or branches (the methods, scratch@42 here, add columns of their own: epochs, parameters...)."""
    header = run(["dvc", "metrics", "show"], project).stdout.splitlines()[0].split()
    assert not {"cat", "dog", "digit"} & {part for column in header for part in re.split(r"[/.]", column)}
    branches = [f"metrics/efficientnet_lite0/{head}/metrics.json" for head in ("dense", "logreg")]
    files = ["metrics/split.json", *branches, "audit/efficientnet_lite0/metrics.json"]
    shown = run(["dvc", "metrics", "show", *files], project).stdout.splitlines()
    assert len(shown) == 1 + len(files) and max(map(len, shown)) <= 200, "\n".join(shown)
