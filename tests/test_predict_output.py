"""predict's inputs (files, folders, globs) and its three output formats, without a model."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from pipeline.stages.predict import Prediction, expand_inputs, render


def test_inputs_expand_folders_globs_and_say_what_is_missing(tmp_path: Path) -> None:
    for name in ("b/img_10.jpg", "b/img_9.jpg", "b/sub/x.png", "b/notes.txt", "c/a.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    inputs = expand_inputs(
        [tmp_path / "b", f"{tmp_path}/c/*.jpg", f"{tmp_path}/*.gif", tmp_path / "empty", tmp_path / "gone.jpg"]
    )
    assert [(str(i.path.relative_to(tmp_path)), i.error) for i in inputs] == [
        ("b/img_9.jpg", ""),  # natural order, image extensions only
        ("b/img_10.jpg", ""),
        ("b/sub/x.png", ""),
        ("c/a.jpg", ""),
        ("*.gif", "no file matches this pattern"),
        ("empty", "no image files (.jpg, .png, ...) in this folder"),
        ("gone.jpg", "not found"),
    ]


PREDICTIONS = [
    Prediction(Path("a.jpg"), "dog", 0.9, [("dog", 0.9), ("cat", 0.07)]),
    Prediction(Path("bad.jpg"), "", float("nan"), [], "empty: the file has 0 bytes"),
]


def test_formats() -> None:
    rows = json.loads(render(PREDICTIONS, "json", 2))
    assert rows[0] == {
        "image": "a.jpg",
        "class": "dog",
        "probability": 0.9,
        "top_k": [{"class": "dog", "probability": 0.9}, {"class": "cat", "probability": 0.07}],
        "error": None,
    }
    assert rows[1]["class"] is None and rows[1]["error"].startswith("empty")
    table = list(csv.DictReader(io.StringIO(render(PREDICTIONS, "csv", 2))))
    assert [(r["image"], r["rank"], r["class"], r["error"]) for r in table] == [
        ("a.jpg", "1", "dog", ""),
        ("a.jpg", "2", "cat", ""),
        ("bad.jpg", "", "", "empty: the file has 0 bytes"),
    ]
    lines = render(PREDICTIONS, "table", 2).splitlines()
    assert lines[0].split() == ["image", "class", "probability", "top-k", "error"]
    assert lines[1].split() == ["a.jpg", "dog", "0.9000", "dog", "0.9000,", "cat", "0.0700"]
    assert lines[2].split()[:4] == ["bad.jpg", "-", "-", "empty:"]
    assert render(PREDICTIONS[:1], "table", 1).splitlines()[0].split() == ["image", "class", "probability"]
    with pytest.raises(ValueError, match="--format must be one of"):
        render(PREDICTIONS, "xml", 1)
