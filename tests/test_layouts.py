"""Input layouts of paths.raw (kaggle names, class folders, Microsoft's PetImages) and splits of any dataset."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest
from conftest import sample_images

from pipeline.core.config import SplitConfig
from pipeline.core.errors import ExtractError, SplitError
from pipeline.stages.extract import extract
from pipeline.stages.split import split
from pipeline.store.manifest import read_manifest


def pet_files(per_class: int) -> dict[str, bytes]:
    """Real sample images under Keras-style names: {'cat/IMG 7.jpg': bytes, ...}, numbered 1..n (not padded)."""
    images = sample_images(per_class)
    return {f"{name.split('.')[0]}/IMG {int(name.split('.')[1]) + 1}.jpg": data for name, data in images.items()}


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def manifest_paths(split_dir: Path, part: str) -> list[str]:
    return [row.path for row in read_manifest(split_dir / "manifest.csv") if row.split == part]


@pytest.mark.parametrize("kind", ["folder", "zip", "zip with a top folder"])
def test_class_folders_with_any_file_names(tmp_path: Path, kind: str) -> None:
    files = pet_files(12)
    if kind == "folder":
        raw = write_folder(tmp_path / "raw", files)
    elif kind == "zip":
        raw = write_zip(tmp_path / "raw.zip", files)
    else:
        raw = write_zip(tmp_path / "raw.zip", {f"my-pets/{name}": data for name, data in files.items()})
    report = extract(raw, tmp_path / "images")
    assert (report.layout, report.count) == ("folders", 24)
    assert (tmp_path / "images" / "cat" / "IMG 10.jpg").read_bytes() == files["cat/IMG 10.jpg"]
    split(tmp_path / "images", tmp_path / "split", SplitConfig(train=8, validation=2, test=2))
    # natural order: IMG 2 comes before IMG 10, so train holds IMG 1..8
    assert manifest_paths(tmp_path / "split", "train")[:8] == [f"train/cat/IMG {i}.jpg" for i in range(1, 9)]
    assert manifest_paths(tmp_path / "split", "test") == [
        "test/cat/IMG 11.jpg",
        "test/cat/IMG 12.jpg",
        "test/dog/IMG 11.jpg",
        "test/dog/IMG 12.jpg",
    ]


def test_petimages_corrupt_and_empty_files_land_in_rejects(tmp_path: Path) -> None:
    """Microsoft's PetImages: PetImages/Cat/0.jpg ..., with a 0-byte Cat/666.jpg, a cut-off JPEG and Thumbs.db."""
    images = sample_images(10)
    files = {f"PetImages/{name.split('.')[0].title()}/{name.split('.')[1]}.jpg": d for name, d in images.items()}
    files["PetImages/Cat/666.jpg"] = b""
    files["PetImages/Dog/11702.jpg"] = images["dog.3.jpg"][:2000]  # truncated mid-scan
    files["PetImages/Dog/Thumbs.db"] = b"\xd0\xcf\x11\xe0 not an image"
    raw = write_zip(tmp_path / "kagglecatsanddogs_5340.zip", files)
    report = extract(raw, tmp_path / "images")
    assert (report.layout, report.count) == ("folders", 22)
    config = SplitConfig(train=0.6, validation=0.2, test=0.2)  # fractions: every image is opened
    result = split(tmp_path / "images", tmp_path / "split", config)
    with open(tmp_path / "split" / "rejects.csv", newline="") as handle:
        rejects = {row["path"]: row["reason"] for row in csv.DictReader(handle)}
    assert set(rejects) == {"Cat/666.jpg", "Dog/11702.jpg"}
    assert rejects["Cat/666.jpg"].startswith("empty")
    assert rejects["Dog/11702.jpg"].startswith("truncated")
    assert sorted({row.cls for row in result.rows}) == ["Cat", "Dog"]
    assert len(result.rows) == 20


def test_kaggle_names_in_agreeing_class_folders_are_not_ambiguous(tmp_path: Path) -> None:
    files = {f"{name.split('.')[0]}/{name}": data for name, data in sample_images(3).items()}
    report = extract(write_folder(tmp_path / "raw", files), tmp_path / "images")
    assert (report.layout, report.count) == ("kaggle", 6)


def test_ambiguous_input_is_an_error_and_the_param_settles_it(tmp_path: Path) -> None:
    files = {f"{name.split('.')[0]}s/{name}": data for name, data in sample_images(3).items()}  # cats/cat.0.jpg
    raw = write_folder(tmp_path / "raw", files)
    with pytest.raises(ExtractError, match=r"ambiguous.*'cats/cat\.0\.jpg'.*class 'cat'.*'cats'.*split\.layout"):
        extract(raw, tmp_path / "images")
    assert extract(raw, tmp_path / "images", "kaggle").layout == "kaggle"
    assert sorted(p.name for p in (tmp_path / "images").iterdir())[:2] == ["cat.0.jpg", "cat.1.jpg"]
    assert extract(raw, tmp_path / "images", "folders").layout == "folders"
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["cats", "dogs"]


def test_unknown_layouts_are_explained(tmp_path: Path) -> None:
    deep = write_folder(tmp_path / "deep", {f"a/b/c/{i}.jpg": b"x" for i in range(2)} | {"d/e/0.jpg": b"x"})
    with pytest.raises(ExtractError, match=r"No images found in a known layout.*PetImages/Cat/1\.jpg"):
        extract(deep, tmp_path / "images")
    with pytest.raises(ExtractError, match=r"split\.layout is folders.*'a/b/c/0\.jpg'"):
        extract(deep, tmp_path / "images", "folders")
    with pytest.raises(ExtractError, match=r"split\.layout must be one of"):
        extract(deep, tmp_path / "images", "keras")
    bad_class = write_folder(tmp_path / "bad", {"my cats/1.jpg": b"x", "dogs/1.jpg": b"x"})
    with pytest.raises(ExtractError, match=r"Class folder 'my cats'"):
        extract(bad_class, tmp_path / "images")


def test_macos_resource_forks_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    files = pet_files(2) | {"__MACOSX/cat/._IMG 1.jpg": b"junk", "cat/.hidden.jpg": b"junk"}
    report = extract(write_zip(tmp_path / "raw.zip", files), tmp_path / "images")
    assert (report.layout, report.count) == ("folders", 4)


def test_fractions_are_per_class_and_stratified(tmp_path: Path) -> None:
    files = pet_files(10) | {
        f"fox/{i}.jpg": data for i, data in enumerate(sample_images(5, ("cat",), start=20).values())
    }
    extract(write_folder(tmp_path / "raw", files), tmp_path / "images")
    rows = split(tmp_path / "images", tmp_path / "split", SplitConfig(train=0.6, validation=0.2, test=0.2)).rows
    counts = {(r.cls, r.split): 0 for r in rows}
    for row in rows:
        counts[row.cls, row.split] += 1
    assert counts == {
        ("cat", "train"): 6, ("cat", "validation"): 2, ("cat", "test"): 2,
        ("dog", "train"): 6, ("dog", "validation"): 2, ("dog", "test"): 2,
        ("fox", "train"): 3, ("fox", "validation"): 1, ("fox", "test"): 1,
    }  # fmt: skip


def test_seeded_shuffle_is_deterministic_for_any_names(tmp_path: Path) -> None:
    extract(write_folder(tmp_path / "raw", pet_files(10)), tmp_path / "images")

    def train_ids(name: str, seed: int) -> list[str]:
        config = SplitConfig(train=0.5, validation=0.2, test=0.3, shuffle=True, seed=seed)
        split(tmp_path / "images", tmp_path / name, config)
        return manifest_paths(tmp_path / name, "train")

    assert train_ids("a", 1) == train_ids("b", 1) != train_ids("c", 2)
    assert train_ids("a", 1) != [f"train/cat/IMG {i}.jpg" for i in range(1, 6)]


def test_too_few_images_lists_each_class_and_bad_sizes_name_the_key(tmp_path: Path) -> None:
    files = pet_files(6) | {"fox/a.jpg": sample_images(1)["cat.0.jpg"]} | {f"fox/{c}.jpg": b"" for c in "bcd"}
    extract(write_folder(tmp_path / "raw", files), tmp_path / "images")
    with pytest.raises(SplitError, match=r"Too few valid images.*cat has 6, dog has 6, fox has 1 \(too few\)"):
        split(tmp_path / "images", tmp_path / "split", SplitConfig(train=0.5, validation=0.25, test=0.25))
    for sizes, key in [
        ((0.5, 0.3, 0.3), "more than 1"),
        ((0.5, 10, 0.2), "all counts"),
        ((0, 1, 1), "whole number of images >= 1"),
    ]:
        with pytest.raises(ValueError, match=key):  # the params schema refuses them: no split is started
            SplitConfig(*sizes)


def test_bench_prepares_images_of_any_layout(tmp_path: Path) -> None:
    from pipeline.tools.bench import prepare_images

    raw = write_zip(tmp_path / "raw.zip", {f"PetImages/{name}": data for name, data in pet_files(4).items()})
    manifest = prepare_images(raw, per_class=3, repeat=2, folder=tmp_path / "bench")
    paths = [row.path for row in read_manifest(manifest)]
    assert len(paths) == 12 and "train/cat/IMG 1.jpg" in paths and "train/cat/copy1_IMG 3.jpg" in paths
