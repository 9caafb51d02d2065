import stat
import zipfile
from pathlib import Path

import pytest
from conftest import SAMPLE_PER_CLASS, SAMPLE_ZIP, sample_images, write_competition_zip, write_zip

from pipeline.core.errors import ExtractError
from pipeline.stages.extract import extract


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    return sample_images(3)


def test_bare_train_zip(tmp_path: Path, images) -> None:
    raw = write_zip(tmp_path / "train.zip", images)
    assert extract(raw, tmp_path / "out").count == 6
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(images)
    assert (tmp_path / "out" / "cat.0.jpg").read_bytes() == images["cat.0.jpg"]


def test_competition_zip_takes_train_only(tmp_path: Path, images) -> None:
    raw = write_competition_zip(tmp_path / "dogs-vs-cats.zip", images)
    assert extract(raw, tmp_path / "out").count == 6
    assert not (tmp_path / "out" / "1.jpg").exists()


def test_folder(tmp_path: Path, images) -> None:
    folder = tmp_path / "raw"
    (folder / "nested").mkdir(parents=True)
    for name, data in images.items():
        (folder / "nested" / name).write_bytes(data)
    (folder / "notes.txt").write_text("not an image")
    assert extract(folder, tmp_path / "out").count == 6


def test_fixture_extracts_all(tmp_path: Path) -> None:
    """The whole Kaggle-layout fixture: every one of its 300 JPEGs, byte for byte, and nothing else."""
    report = extract(SAMPLE_ZIP, tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert report.count == len(names) == 2 * SAMPLE_PER_CLASS == 300
    assert names == sorted(f"{cls}.{i}.jpg" for cls in ("cat", "dog") for i in range(SAMPLE_PER_CLASS))
    with zipfile.ZipFile(SAMPLE_ZIP) as archive:
        assert (tmp_path / "out" / "dog.149.jpg").read_bytes() == archive.read("train/dog.149.jpg")


@pytest.mark.parametrize("entry", ["../evil.jpg", "train/../../evil.jpg", "/etc/cat.1.jpg", "C:/cat.1.jpg"])
def test_escaping_entries_are_refused(tmp_path: Path, entry: str) -> None:
    raw = tmp_path / "bad.zip"
    with zipfile.ZipFile(raw, "w") as archive:
        archive.writestr("train/cat.0.jpg", b"x")
        archive.writestr(zipfile.ZipInfo(entry), b"x")
    with pytest.raises(ExtractError, match="escapes the target folder") as err:
        extract(raw, tmp_path / "out")
    assert repr(entry) in str(err.value)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.jpg").exists()


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "link.zip"
    link = zipfile.ZipInfo("train/cat.1.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(raw, "w") as archive:
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(ExtractError, match="symbolic link"):
        extract(raw, tmp_path / "out")


def test_nested_train_zip_entries_are_checked_too(tmp_path: Path) -> None:
    inner = tmp_path / "train.zip"
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("../../cat.0.jpg", b"x")
    outer = tmp_path / "dogs-vs-cats.zip"
    with zipfile.ZipFile(outer, "w") as archive:
        archive.write(inner, "train.zip")
    with pytest.raises(ExtractError, match=r"train\.zip.*escapes"):
        extract(outer, tmp_path / "out")


def test_missing_input_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(ExtractError) as err:
        extract(tmp_path / "data/raw/dogs-vs-cats.zip", tmp_path / "out")
    message = str(err.value)
    assert "data/raw/dogs-vs-cats.zip" in message
    assert "kaggle competitions download -c dogs-vs-cats -p data/raw" in message


def test_not_a_zip(tmp_path: Path) -> None:
    raw = tmp_path / "dogs-vs-cats.zip"
    raw.write_text("<html>login required</html>")
    with pytest.raises(ExtractError, match="not a valid zip"):
        extract(raw, tmp_path / "out")


def test_archive_without_images(tmp_path: Path) -> None:
    raw = write_zip(tmp_path / "train.zip", {"readme.txt": b"hello"})
    with pytest.raises(ExtractError, match="No images"):
        extract(raw, tmp_path / "out")


def test_failed_extract_keeps_previous_output(tmp_path: Path, images) -> None:
    out = tmp_path / "out"
    extract(write_zip(tmp_path / "good.zip", images), out)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../x.jpg", b"x")
    with pytest.raises(ExtractError):
        extract(bad, out)
    assert len(list(out.iterdir())) == 6
