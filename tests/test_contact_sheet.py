"""The contact sheet library and evaluate's error analysis on real sample images."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import sample_images
from PIL import Image, ImageDraw, ImageFont

from pipeline.reporting.contact_sheet import contact_sheet
from pipeline.reporting.metrics import per_class_report
from pipeline.stages.evaluate import mistakes, mistakes_sheet, write_mistakes


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    paths = []
    for name, data in sample_images(5).items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    return paths


def test_contact_sheet_grid_captions_and_unreadable_cells(tmp_path: Path, photos: list[Path]) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    images = [*photos, tmp_path / "broken.jpg", tmp_path / "missing.jpg"]
    out = contact_sheet(images, [p.name for p in images], tmp_path / "sheet.png", columns=4, thumb=64, title="T")
    sheet = Image.open(out)
    assert sheet.size[0] == 4 * 70 + 6 and sheet.size[1] > 3 * 64  # 12 images: 3 rows of 4
    pixels = np.asarray(sheet.convert("RGB"))
    assert pixels.std() > 20  # real thumbnails, not a blank page
    assert not (tmp_path / "sheet.png.partial").exists()
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        contact_sheet(photos[:2], ["a"], tmp_path / "x.png")


def rendered_text(text: str, font: ImageFont.ImageFont, size: tuple[int, int]) -> np.ndarray:
    """`text` drawn as the sheet draws it (dark gray on white) in `font`, as a boolean ink mask of `size`."""
    canvas = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(canvas).text((0, 0), text, fill=(20, 20, 20), font=font)
    return np.asarray(canvas.convert("L")) < 128


def test_empty_sheet_says_so(tmp_path: Path) -> None:
    """The line under the title reads "(nothing to show)": its ink is that text's, drawn in the sheet's font."""
    out = contact_sheet([], [], tmp_path / "none.png", title="nothing wrong")
    ink = np.asarray(Image.open(out).convert("L")) < 128
    font = ImageFont.load_default(size=11)  # the sheet's font at the default thumb of 128 px: 128 // 11
    line = font.getbbox("Ag")[3] + 2 + 6  # a title line and its padding
    below_title = ink[6 + line :, 6:]
    for text, reads in (("(nothing to show)", True), ("(nothing to shaw)", False), ("nothing wrong", False)):
        expected = rendered_text(text, font, below_title.shape[::-1])
        assert np.array_equal(below_title, expected) is reads, text
    assert np.array_equal(ink[6 : 6 + line, 6:], rendered_text("nothing wrong", font, (ink.shape[1] - 6, line)))


def test_mistakes_are_worst_first_and_per_class_figures_match_sklearn(tmp_path: Path, photos: list[Path]) -> None:
    classes = ["cat", "dog", "fox"]
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array(
        [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.1, 0.2, 0.7]]
    )
    ids = [f"test/{classes[y]}/{i}.jpg" for i, y in enumerate(labels)]
    wrong = mistakes(probabilities, labels, ids, classes)
    assert [(m.id, m.true, m.predicted, m.probability) for m in wrong] == [
        ("test/cat/1.jpg", "cat", "dog", 0.7),
        ("test/dog/3.jpg", "dog", "cat", 0.6),
    ]
    per_class, table = per_class_report(labels, probabilities.argmax(axis=1), classes)
    assert per_class["cat"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert per_class["fox"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert "precision" in table and "fox" in table
    write_mistakes(wrong, tmp_path / "m.csv")
    with open(tmp_path / "m.csv", newline="") as handle:
        assert next(csv.reader(handle)) == ["id", "true", "predicted", "probability", "true_probability"]
    for m, photo in zip(wrong, photos, strict=False):
        (tmp_path / m.id).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / m.id).write_bytes(photo.read_bytes())
    assert Image.open(mistakes_sheet(wrong, tmp_path, tmp_path / "plots" / "m.png", "x")).format == "PNG"
