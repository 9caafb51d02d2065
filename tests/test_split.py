import csv
import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from pipeline.core.config import SplitConfig
from pipeline.core.errors import SplitError
from pipeline.stages.split import split
from pipeline.store.manifest import read_manifest


def tiny_jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, seed // 256 % 256, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


def make_images(folder: Path, counts: dict[str, int]) -> Path:
    """Small distinct JPEGs: cat.0.jpg ... (the split stage decodes every image it places)."""
    folder.mkdir(parents=True, exist_ok=True)
    for c, (cls, n) in enumerate(counts.items()):
        for i in range(n):
            (folder / f"{cls}.{i}.jpg").write_bytes(tiny_jpeg(1000 * c + i))
    return folder


def test_seed_split_by_numeric_index(tmp_path: Path) -> None:
    images = make_images(tmp_path / "images", {"cat": 25, "dog": 25})
    rows = split(images, tmp_path / "split", SplitConfig(train=10, validation=5, test=5)).rows
    train_cats = [r.path for r in rows if r.split == "train" and r.cls == "cat"]
    assert train_cats == [f"train/cat/cat.{i}.jpg" for i in range(10)]  # cat.2 before cat.10
    assert [r.path for r in rows if r.split == "test" and r.cls == "dog"][-1] == "test/dog/dog.19.jpg"
    assert {s: sum(r.split == s for r in rows) for s in ("train", "validation", "test")} == {
        "train": 20,
        "validation": 10,
        "test": 10,
    }
    names = [Path(r.path).name for r in rows]
    assert len(names) == len(set(names))  # disjoint


def test_manifest_matches_files(tmp_path: Path) -> None:
    images = make_images(tmp_path / "images", {"cat": 4, "dog": 4})
    out = tmp_path / "split"
    split(images, out, SplitConfig(train=2, validation=1, test=1))
    with open(out / "manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "class", "split", "sha256"]
    for row in rows:
        data = (out / row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert row["path"].startswith(f"{row['split']}/{row['class']}/")
    assert read_manifest(out / "manifest.csv")[0].path == rows[0]["path"]


def test_shuffle_is_seeded(tmp_path: Path) -> None:
    images = make_images(tmp_path / "images", {"cat": 30, "dog": 30})
    config = SplitConfig(train=10, validation=5, test=5, shuffle=True, seed=7)
    first = [r.path for r in split(images, tmp_path / "a", config).rows]
    again = [r.path for r in split(images, tmp_path / "b", config).rows]
    other = [r.path for r in split(images, tmp_path / "c", SplitConfig(10, 5, 5, True, 8)).rows]
    assert first == again
    assert first != other
    assert first != [r.path for r in split(images, tmp_path / "d", SplitConfig(10, 5, 5)).rows]


def test_more_than_two_classes(tmp_path: Path) -> None:
    images = make_images(tmp_path / "images", {"cat": 3, "dog": 3, "fox": 3})
    rows = split(images, tmp_path / "split", SplitConfig(train=1, validation=1, test=1)).rows
    assert sorted({r.cls for r in rows}) == ["cat", "dog", "fox"]
    assert (tmp_path / "split" / "test" / "fox" / "fox.2.jpg").is_file()


def test_too_few_images_names_the_counts(tmp_path: Path) -> None:
    images = make_images(tmp_path / "images", {"cat": 30, "dog": 12})
    with pytest.raises(SplitError, match=r"dog has 12") as err:
        split(images, tmp_path / "split", SplitConfig(train=10, validation=5, test=5))
    assert "20 per class" in str(err.value)
    assert "cat has 30," in str(err.value)  # every class is listed with its count


def test_manifest_paths_cannot_escape(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,class,split,sha256\n../../etc/passwd,cat,train,00\n")
    with pytest.raises(SplitError, match="outside the split folder"):
        read_manifest(manifest)
