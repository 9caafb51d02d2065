"""Bad input: every bad image made at test time, mixed with real Kaggle JPEGs, through the real split stage.

Each image is copied (plain JPEG), converted (RGB PNG, orientation applied) or rejected with a reason; archives
that are not zips, truncated, corrupt or empty are errors naming the file.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, child_env, sample_images, write_zip
from PIL import Image, ImageFile

from pipeline.core.config import ExtractConfig, SplitConfig, validate
from pipeline.core.errors import ConfigError, ExtractError, SplitError
from pipeline.images.decode import decode_image
from pipeline.images.gate import check_file, check_image, pillow_limits
from pipeline.stages.extract import BLOCK, MB, Budget, extract
from pipeline.stages.split import split
from pipeline.store.manifest import read_manifest

MAX_PIXELS = 1_000_000
SIZES = {"train": 14, "validation": 6, "test": 6}  # 26 per class: exactly cat's valid images


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def halves(size: tuple[int, int], left: tuple, right: tuple, mode: str = "RGB") -> Image.Image:
    """Left half one colour, right half another: an orientation shows in where each colour ends up."""
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def rotated_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(halves((40, 20), (255, 0, 0), (0, 0, 255)), "JPEG", quality=95, exif=exif.tobytes())


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 100_000) -> bytes:
    """A 370-byte PNG whose header claims side x side RGB pixels (30 GB decoded)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(bytes(3 * side + 1)))


def crc_broken_png(data: bytes) -> bytes:
    """A PNG with one byte of its IDAT data changed (the chunk's CRC no longer matches)."""
    broken = bytearray(data)
    broken[data.index(b"IDAT") + 10] ^= 0xFF
    return bytes(broken)


GRADIENT = np.linspace(0, 65535, 256).round().astype(np.uint16)  # 16-bit values spanning the whole range


def bad_files(real: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """{name: bytes} of every case, and {name: expected RGB pixels} of those converted exactly."""
    sample = real["cat.0.jpg"]
    photo = Image.open(io.BytesIO(sample)).convert("RGB")
    palette = halves((30, 20), (255, 0, 0), (0, 128, 0)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    bmp = halves((31, 17), (10, 200, 30), (250, 250, 5))
    webp = halves((24, 24), (0, 0, 0), (90, 180, 255))
    rgba = halves((20, 10), (0, 255, 0, 255), (0, 0, 0, 0), mode="RGBA")  # right half: transparent black
    rgba.putpixel((0, 0), (255, 0, 0, 128))  # half-transparent red
    la = halves((10, 10), (100, 255), (100, 0), mode="LA")
    sixteen = Image.fromarray(np.tile(GRADIENT, (4, 1)))
    files = {
        "cat.1.jpg": b"",
        "cat.3.jpg": sample[: len(sample) // 2],
        "cat.5.jpg": b"This is not a picture of a cat.\n",
        "cat.7.jpg": encode(photo, "PNG"),
        "cat.9.jpg": encode(palette, "GIF"),
        "cat.11.jpg": encode(bmp, "BMP"),
        "cat.13.jpg": encode(webp, "WEBP", lossless=True),
        "cat.15.jpg": encode(photo.convert("L"), "JPEG", quality=90),
        "cat.17.jpg": encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95),
        "cat.19.png": encode(sixteen, "PNG"),
        "cat.21.jpg": rotated_jpeg(6),
        "cat.23.png": encode(rgba, "PNG"),
        "cat.25.png": bomb_png(),
        "cat.27.png": encode(Image.new("L", (1200, 1000), 7), "PNG"),  # complete, small file, over MAX_PIXELS
        "cat.29.jpg": real["cat.16.jpg"],
        "cat.29.png": encode(photo, "PNG"),  # same class and number as cat.29.jpg
        "dog.1.jpg": real["dog.1.jpg"][:-2],  # all the pixels, but cut before the end-of-image marker
        "dog.3.jpg": rotated_jpeg(8),
        "dog.7.jpg": encode(photo, "JPEG", quality=85, progressive=True),
        "dog.9.png": encode(la, "PNG"),
        "dog.11.png": real["dog.5.jpg"],  # JPEG content under a .png name
        "dog.13.jpg": crc_broken_png(encode(photo, "PNG")),
        "dog.101.jpg": b"",  # past the 26 dogs needed: never opened
    }
    white_red = np.array([255, 127, 127])  # 50% red over white
    expected = {
        "cat.7.jpg": np.asarray(photo),
        "cat.9.jpg": np.asarray(palette.convert("RGB")),
        "cat.11.jpg": np.asarray(bmp),
        "cat.13.jpg": np.asarray(webp),
        "cat.19.png": np.repeat(np.tile(np.rint(GRADIENT / 257), (4, 1))[..., None], 3, axis=2),
        "cat.23.png": np.where(np.asarray(rgba)[..., 3:] == 255, np.asarray(rgba)[..., :3], 255),
        "dog.9.png": np.where(np.asarray(la)[..., 1:] == 255, 100, 255).repeat(3, axis=2),
        "dog.11.png": decoded(real["dog.5.jpg"]),
    }
    expected["cat.23.png"][0, 0] = white_red
    return files, expected


EXPECTED_REJECTS = {
    "cat.1.jpg": "empty",
    "cat.3.jpg": "truncated",
    "cat.5.jpg": "not an image",
    "cat.25.png": "too large",
    "cat.27.png": "too large",
    "cat.29.png": "duplicate",
    "dog.1.jpg": "truncated",
    "dog.5.jpg": "symlink",
    "dog.13.jpg": "corrupt",
}
EXPECTED_CONVERSIONS = {
    "train/cat/cat.7.png": ("cat.7.jpg", "format PNG"),
    "train/cat/cat.9.png": ("cat.9.jpg", "format GIF; mode P"),
    "train/cat/cat.11.png": ("cat.11.jpg", "format BMP"),
    "train/cat/cat.13.png": ("cat.13.jpg", "format WEBP"),
    "validation/cat/cat.17.png": ("cat.17.jpg", "mode CMYK"),
    "validation/cat/cat.19.png": ("cat.19.png", "format PNG; mode I;16"),
    "validation/cat/cat.21.png": ("cat.21.jpg", "orientation 6"),
    "test/cat/cat.23.png": ("cat.23.png", "format PNG; mode RGBA"),
    "train/dog/dog.3.png": ("dog.3.jpg", "orientation 8"),
    "train/dog/dog.9.png": ("dog.9.png", "format PNG; mode LA"),
    "train/dog/dog.11.png": ("dog.11.png", "extension .png"),
}


@dataclass(frozen=True)
class Run:
    root: Path
    files: dict[str, bytes]
    expected: dict[str, np.ndarray]
    stdout: str

    @property
    def split_dir(self) -> Path:
        return self.root / "data" / "split"

    def csv_rows(self, name: str) -> list[list[str]]:
        import csv

        with open(self.split_dir / name, newline="") as handle:
            return list(csv.reader(handle))

    def manifest_paths(self) -> list[str]:
        return [row.path for row in read_manifest(self.split_dir / "manifest.csv")]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """The real `python -m pipeline split` over 16 + 26 real JPEGs and every bad case."""
    root = tmp_path_factory.mktemp("bad_input")
    images = root / "data" / "images"
    images.mkdir(parents=True)
    real = sample_images(26)
    files = {f"cat.{2 * i}.jpg": real[f"cat.{i}.jpg"] for i in range(16)}
    files |= {f"dog.{2 * i}.jpg": real[f"dog.{i}.jpg"] for i in range(26)}
    bad, expected = bad_files(real)
    files |= bad
    for name, data in files.items():
        (images / name).write_bytes(data)
    (root / "outside.jpg").write_bytes(real["dog.3.jpg"])
    (images / "dog.5.jpg").symlink_to(root / "outside.jpg")
    params = {
        "paths": {"images": "data/images", "split": "data/split", "metrics": "metrics"},
        "split": {**SIZES, "max_pixels": MAX_PIXELS},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = child_env(PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "split"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Run(root, files, expected, result.stdout)


def test_rejects_list_exactly_the_bad_files_with_reasons(run: Run) -> None:
    header, *rows = run.csv_rows("rejects.csv")
    assert header == ["path", "reason"]
    assert {path: note.split(":")[0] for path, note in rows} == EXPECTED_REJECTS
    notes = dict(rows)
    assert "0 bytes" in notes["cat.1.jpg"]
    assert "truncated" in notes["cat.3.jpg"]
    assert "10,000,000,000" in notes["cat.25.png"] or "10000000000" in notes["cat.25.png"]
    assert "1200x1000 = 1,200,000 pixels, over split.max_pixels = 1,000,000" in notes["cat.27.png"]
    assert "cat.29.jpg" in notes["cat.29.png"]
    assert "symbolic link" in notes["dog.5.jpg"]
    assert "rejected 9 images (see data/split/rejects.csv)" in run.stdout


def test_rejected_images_take_no_place_in_the_split(run: Run) -> None:
    paths = run.manifest_paths()
    assert len(paths) == 2 * sum(SIZES.values())
    names = {Path(p).name for p in paths}
    assert not {"cat.1.jpg", "cat.3.jpg", "cat.5.jpg", "dog.1.jpg", "dog.5.jpg", "dog.13.jpg"} & names
    # the first 14 valid dogs by number go to train, whatever came between them
    train_dogs = [Path(p).name for p in paths if p.startswith("train/dog/")]
    assert train_dogs == [
        *("dog.0.jpg", "dog.2.jpg", "dog.3.png", "dog.4.jpg", "dog.6.jpg", "dog.7.jpg", "dog.8.jpg"),
        *("dog.9.png", "dog.10.jpg", "dog.11.png", "dog.12.jpg", "dog.14.jpg", "dog.16.jpg", "dog.18.jpg"),
    ]
    assert [Path(p).name for p in paths if p.startswith("test/dog/")][-1] == "dog.42.jpg"
    assert sorted(p.name for p in (run.split_dir / "train" / "cat").iterdir()) == sorted(
        Path(p).name for p in paths if p.startswith("train/cat/")
    )


def test_plain_jpegs_are_copied_byte_for_byte(run: Run) -> None:
    copied = [p for p in run.manifest_paths() if p.endswith(".jpg")]
    assert len(copied) == 2 * sum(SIZES.values()) - len(EXPECTED_CONVERSIONS)
    for path in copied:
        assert (run.split_dir / path).read_bytes() == run.files[Path(path).name], path
    assert "train/cat/cat.15.jpg" in copied  # grayscale JPEG: decode_image(channels=3) makes it RGB
    assert "train/dog/dog.7.jpg" in copied  # progressive JPEG


def test_conversions_are_listed_and_are_rgb_pngs_with_the_right_pixels(run: Run) -> None:
    header, *rows = run.csv_rows("converted.csv")
    assert header == ["path", "source", "conversion"]
    assert {path: (source, note) for path, source, note in rows} == EXPECTED_CONVERSIONS
    for path, (source, _) in EXPECTED_CONVERSIONS.items():
        image = Image.open(run.split_dir / path)
        assert (image.format, image.mode) == ("PNG", "RGB"), path
        if source in run.expected:
            assert np.array_equal(np.asarray(image), run.expected[source]), path


def test_sixteen_bit_values_are_scaled_not_clipped(run: Run) -> None:
    pixels = np.asarray(Image.open(run.split_dir / "validation/cat/cat.19.png"))[0, :, 0]
    assert pixels[0] == 0 and pixels[-1] == 255
    assert pixels[128] == round(GRADIENT[128] / 257) == 128  # clipping would give 255 from 1 upwards
    assert np.all(np.diff(pixels.astype(int)) >= 0) and len(np.unique(pixels)) > 200


@pytest.mark.parametrize(
    ("path", "top", "bottom"), [("validation/cat/cat.21.png", 0, 2), ("train/dog/dog.3.png", 2, 0)]
)
def test_exif_orientation_is_applied(run: Run, path: str, top: int, bottom: int) -> None:
    """40x20, left red / right blue; orientation 6 turns it clockwise (red on top), 8 anticlockwise."""
    pixels = np.asarray(Image.open(run.split_dir / path)).astype(int)
    assert pixels.shape == (40, 20, 3)
    assert pixels[:18].mean(axis=(0, 1)).argmax() == top
    assert pixels[22:].mean(axis=(0, 1)).argmax() == bottom


def test_cmyk_becomes_the_same_colour_in_rgb(run: Run) -> None:
    pixels = np.asarray(Image.open(run.split_dir / "validation/cat/cat.17.png")).astype(int)
    assert np.abs(pixels - [255, 0, 0]).max() <= 8  # cyan 0, magenta + yellow full: red


def test_manifest_sha256_is_of_the_file_written(run: Run) -> None:
    import hashlib

    for row in read_manifest(run.split_dir / "manifest.csv"):
        assert hashlib.sha256((run.split_dir / row.path).read_bytes()).hexdigest() == row.sha256


def test_metrics_count_everything(run: Run) -> None:
    counts = json.loads((run.split_dir / "counts.json").read_text())
    assert counts == {
        "images": 16 + 26 + len(run.files) - 42 + 1,  # + the symlink
        "split": 52,
        "copied": 52 - 11,
        "converted": 11,
        "rejected": 9,
        "unused": 5,  # dog.44 ... dog.50 and dog.101: 26 valid dogs came before them
        "rejected_by_reason": {
            "corrupt": 1,
            "duplicate": 1,
            "empty": 1,
            "not an image": 1,
            "symlink": 1,
            "too large": 2,
            "truncated": 2,
        },
        "converted_by_reason": {
            "extension .png": 1,
            "format BMP": 1,
            "format GIF": 1,
            "format PNG": 4,
            "format WEBP": 1,
            "mode CMYK": 1,
            "mode I;16": 1,
            "mode LA": 1,
            "mode P": 1,
            "mode RGBA": 1,
            "orientation 6": 1,
            "orientation 8": 1,
        },
    }
    # the DVC metric: the headline counts only, so `dvc metrics show` stays one short row
    metrics = json.loads((run.root / "metrics" / "split.json").read_text())
    assert metrics == {key: counts[key] for key in ("images", "split", "rejected", "converted")}


def test_converted_files_decode_in_tensorflow_to_the_same_pixels(run: Run) -> None:
    """The featurize stage reads with tf.io.decode_image: it must see what Pillow produced."""
    import tensorflow as tf

    for path in EXPECTED_CONVERSIONS:
        data = (run.split_dir / path).read_bytes()
        pixels = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
        assert np.array_equal(pixels, np.asarray(Image.open(io.BytesIO(data)))), path
    gray_file = run.split_dir / "train/cat/cat.15.jpg"  # a grayscale JPEG, copied as it is
    luminance = np.asarray(Image.open(gray_file))
    assert luminance.ndim == 2  # one channel on disk
    rgb = decode_image(str(gray_file)).numpy()  # what featurize feeds the conv base
    assert rgb.shape == (*luminance.shape, 3)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])  # gray, replicated
    difference = np.abs(rgb[..., 0].astype(int) - luminance.astype(int))  # two JPEG decoders: IDCT rounding only
    assert difference.max() <= 8 and difference.mean() < 1, (difference.max(), difference.mean())  # here: 4, 0.49


def test_too_few_valid_images_says_so(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name, data in sample_images(4).items():
        (images / name).write_bytes(data)
    (images / "dog.1.jpg").write_bytes(b"")
    with pytest.raises(SplitError, match=r"Too few valid images .*dog has 3.*dog\.1\.jpg: empty") as err:
        split(images, tmp_path / "split", SplitConfig(train=2, validation=1, test=1))
    assert "cat has 4," in str(err.value)  # every class is listed with its valid count
    assert not (tmp_path / "split").exists() and not (tmp_path / "split.partial").exists()


def test_the_pixel_limit_is_checked_before_decoding(monkeypatch) -> None:
    def no_decoding(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    over = encode(Image.new("RGB", (1001, 1000)), "PNG")
    with pillow_limits(MAX_PIXELS):
        for data in (bomb_png(), over):  # Pillow's own DecompressionBombError, then our limit
            checked = check_image(data, ".png", MAX_PIXELS)
            assert (checked.action, checked.reasons) == ("reject", ("too large",))


def test_truncated_images_are_rejected_even_where_pillow_was_told_to_load_them(monkeypatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    jpeg = sample_images(1)["cat.0.jpg"]
    with pillow_limits(MAX_PIXELS):
        checked = check_image(jpeg[: len(jpeg) // 2], ".jpg", MAX_PIXELS)
    assert (checked.action, checked.reasons) == ("reject", ("truncated",))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored afterwards


@pytest.mark.parametrize(("fmt", "reason"), [("PNG", "truncated"), ("GIF", "truncated"), ("WEBP", "corrupt")])
def test_truncated_images_of_other_formats_are_rejected(fmt: str, reason: str) -> None:
    """(libwebp refuses a cut-off WebP container outright, without saying why: "corrupt".)"""
    photo = Image.open(io.BytesIO(sample_images(1)["cat.0.jpg"]))
    data = encode(photo.convert("P") if fmt == "GIF" else photo, fmt)
    with pillow_limits(MAX_PIXELS):
        checked = check_image(data[: len(data) // 2], ".jpg", MAX_PIXELS)
    assert (checked.action, checked.reasons) == ("reject", (reason,)), checked.detail


def test_exif_orientation_of_a_png_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(halves((40, 20), (255, 0, 0), (0, 0, 255)), "PNG", exif=exif.tobytes())
    with pillow_limits(MAX_PIXELS):
        checked = check_image(data, ".png", MAX_PIXELS)
    assert checked.reasons == ("format PNG", "orientation 6")
    pixels = np.asarray(Image.open(io.BytesIO(checked.data)))
    assert pixels.shape == (40, 20, 3) and tuple(pixels[0, 0]) == (255, 0, 0) and tuple(pixels[-1, 0]) == (0, 0, 255)


def test_max_pixels_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"max_pixels\n.*greater than or equal to 1"):
        SplitConfig(max_pixels=0)


def test_classes_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    jpeg = sample_images(1)["cat.0.jpg"]
    for name in ("cat.0.jpg", "Cat.1.jpg"):
        (images / name).write_bytes(jpeg)
    with pytest.raises(SplitError, match="'Cat' and 'cat' differ only in case"):
        split(images, tmp_path / "split", SplitConfig(train=1, validation=0, test=0))


# Manifests: ids cannot leave the split folder or pass through a link.


def write_manifest_row(folder: Path, row: str) -> Path:
    manifest = folder / "manifest.csv"
    manifest.write_text("path,class,split,sha256\n" + row + "\n")
    return manifest


SHA = "a" * 64


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (f"manifest.csv,cat,train,{SHA}", "not <split>/<class>/<file>"),
        (f"train/dog/cat.1.jpg,cat,train,{SHA}", "not <split>/<class>/<file>"),
        (f"train/cat/cat.1.jpg,cat,test,{SHA}", "not <split>/<class>/<file>"),
        (f"train/c t/c t.1.jpg,c t,train,{SHA}", "ASCII letters"),
        (f"train/cat/cat.1.txt,cat,train,{SHA}", "ASCII letters"),
        ("train/cat/cat.1.jpg,cat,train,00", "sha256"),
        (f"train/cat/cat.1.jpg,cat,holdout,{SHA}", "unknown split"),
    ],
)
def test_malformed_manifest_rows_are_refused(tmp_path: Path, row: str, problem: str) -> None:
    manifest = write_manifest_row(tmp_path, row)
    with pytest.raises(SplitError, match="line 2") as err:
        read_manifest(manifest)
    assert problem in str(err.value) and str(manifest) in str(err.value)


def test_duplicate_manifest_rows_are_refused(tmp_path: Path) -> None:
    manifest = write_manifest_row(tmp_path, f"train/cat/cat.1.jpg,cat,train,{SHA}\ntrain/cat/cat.1.jpg,cat,train,{SHA}")
    with pytest.raises(SplitError, match="line 3.*same path"):
        read_manifest(manifest)


@pytest.mark.parametrize("link", ["train/cat/cat.1.jpg", "train/cat", "train"])
def test_symlinks_inside_the_split_folder_are_refused(tmp_path: Path, link: str) -> None:
    outside = tmp_path / "outside"
    (outside / "cat").mkdir(parents=True)
    (outside / "cat" / "cat.1.jpg").write_bytes(b"secret")
    split_dir = tmp_path / "split"
    target = {"train/cat/cat.1.jpg": outside / "cat" / "cat.1.jpg", "train/cat": outside / "cat", "train": outside}
    (split_dir / link).parent.mkdir(parents=True, exist_ok=True)
    (split_dir / link).symlink_to(target[link])
    manifest = write_manifest_row(split_dir, f"train/cat/cat.1.jpg,cat,train,{SHA}")
    with pytest.raises(SplitError, match="symbolic link") as err:
        read_manifest(manifest)
    assert str(split_dir / link) in str(err.value)


# Archives and raw folders.


def test_empty_file_is_not_a_zip(tmp_path: Path) -> None:
    raw = tmp_path / "dogs-vs-cats.zip"
    raw.write_bytes(b"")
    with pytest.raises(ExtractError, match=r"dogs-vs-cats\.zip is empty \(0 bytes\)"):
        extract(raw, tmp_path / "out")


def test_truncated_zip_names_the_file(tmp_path: Path) -> None:
    whole = write_zip(tmp_path / "whole.zip", sample_images(3)).read_bytes()
    raw = tmp_path / "train.zip"
    raw.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ExtractError, match=r"train\.zip is not a valid zip archive.*truncated"):
        extract(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_empty_zip_says_so(tmp_path: Path) -> None:
    raw = tmp_path / "train.zip"
    zipfile.ZipFile(raw, "w").close()
    with pytest.raises(ExtractError, match=r"train\.zip is an empty zip archive"):
        extract(raw, tmp_path / "out")


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_crc_error_names_the_archive_and_the_entry(tmp_path: Path, compression: int) -> None:
    images = sample_images(2)
    raw = write_zip(tmp_path / "train.zip", {})
    with zipfile.ZipFile(raw, "w", compression) as archive:
        for name, data in images.items():
            archive.writestr(f"train/{name}", data)
    data = bytearray(raw.read_bytes())
    with zipfile.ZipFile(raw) as archive:
        info = archive.getinfo("train/dog.1.jpg")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # the entry's data
    data[start + info.compress_size // 2] ^= 0xFF
    raw.write_bytes(bytes(data))
    with pytest.raises(ExtractError, match=r"train\.zip: entry 'train/dog\.1\.jpg' is corrupt"):
        extract(raw, tmp_path / "out")
    assert not (tmp_path / "out.partial").exists()


def test_corrupt_nested_train_zip_names_both(tmp_path: Path) -> None:
    outer = tmp_path / "dogs-vs-cats.zip"
    with zipfile.ZipFile(outer, "w") as archive:
        archive.writestr("train.zip", b"PK\x03\x04 not really a zip")
    with pytest.raises(ExtractError, match=r"dogs-vs-cats\.zip!train\.zip is not a valid zip archive"):
        extract(outer, tmp_path / "out")


def test_encrypted_entry_is_an_error_not_a_crash(tmp_path: Path) -> None:
    raw = write_zip(tmp_path / "train.zip", {"cat.0.jpg": b"\x00" * 40})
    data = bytearray(raw.read_bytes())  # zipfile cannot write encrypted entries: set the flag bit by hand
    data[6] |= 0x1  # local header flags
    data[data.index(b"PK\x01\x02") + 8] |= 0x1  # central directory flags
    raw.write_bytes(bytes(data))
    with pytest.raises(ExtractError, match=r"train\.zip: entry 'train/cat\.0\.jpg' cannot be read"):
        extract(raw, tmp_path / "out")


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_symlink_in_a_raw_folder_is_refused(tmp_path: Path, kind: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "cat.0.jpg").write_bytes(sample_images(1)["cat.0.jpg"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "cat.1.jpg").write_bytes(b"secret")
    link = raw / "cat.1.jpg" if kind == "file" else raw / "more"
    link.symlink_to(elsewhere / "cat.1.jpg" if kind == "file" else elsewhere)
    with pytest.raises(ExtractError, match="symbolic links are not followed") as err:
        extract(raw, tmp_path / "out")
    assert str(link) in str(err.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_images_with_odd_class_names_are_skipped_and_reported(tmp_path: Path) -> None:
    jpeg = sample_images(1)["cat.0.jpg"]
    raw = write_zip(tmp_path / "train.zip", {"cat.0.jpg": jpeg, "café.1.jpg": jpeg, "cat 2.jpg": jpeg})
    report = extract(raw, tmp_path / "out")
    assert report.count == 1
    assert sorted(report.skipped) == ["train/café.1.jpg", "train/cat 2.jpg"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["cat.0.jpg"]


# Decompression bombs: limits from params, checked from the headers and while streaming, memory bounded.

ZEROS_MB = 5  # a small bomb: 5 MB of zeros deflate to about 5 KB (ratio ~1000)


def bomb_zip(path: Path, zeros_mb: float = ZEROS_MB) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train/cat.0.jpg", sample_images(1)["cat.0.jpg"])
        with archive.open("train/cat.9999.jpg", "w", force_zip64=True) as entry:
            for _ in range(int(zeros_mb)):
                entry.write(bytes(1_000_000))
    return path


@pytest.mark.parametrize(
    ("limits", "key"),
    [
        (ExtractConfig(max_entry_mb=1, max_ratio=10_000), "max_entry_mb"),
        (ExtractConfig(max_entry_mb=100, max_ratio=50), "max_ratio"),
        (ExtractConfig(max_total_mb=2, max_ratio=10_000), "max_total_mb"),
    ],
)
def test_a_zip_bomb_is_refused_naming_the_entry_and_the_limit(tmp_path: Path, limits, key: str) -> None:
    raw = bomb_zip(tmp_path / "train.zip")
    assert raw.stat().st_size < 100_000
    with pytest.raises(ExtractError, match=rf"cat\.9999\.jpg.*extract\.{key}"):
        extract(raw, tmp_path / "out", limits=limits)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_bomb_inside_a_nested_train_zip_is_refused(tmp_path: Path) -> None:
    outer = tmp_path / "dogs-vs-cats.zip"
    with zipfile.ZipFile(outer, "w") as archive:
        archive.writestr("train.zip", bomb_zip(tmp_path / "inner.zip").read_bytes())
    with pytest.raises(ExtractError, match=r"cat\.9999\.jpg.*dogs-vs-cats\.zip!train\.zip.*extract\.max_ratio"):
        extract(outer, tmp_path / "out", limits=ExtractConfig(max_ratio=50))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dogs-vs-cats.zip", "inner.zip"]  # no out, no unpacked zip


def lying_zip(path: Path, declared: int, crc_of_declared: bool) -> Path:
    """A zip whose entry train/cat.9999.jpg holds 5 MB of zeros while both of its headers (local and central)
    say `declared` bytes; its CRC is that of the first `declared` bytes, or of the whole 5 MB."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train/cat.9999.jpg", bytes(ZEROS_MB * 1_000_000))
    data = bytearray(path.read_bytes())
    crc = zlib.crc32(bytes(declared)) if crc_of_declared else zlib.crc32(bytes(ZEROS_MB * 1_000_000))
    local, central = 0, data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 14, crc)  # local header: CRC at 14, sizes at 18 (packed), 22 (unpacked)
    struct.pack_into("<I", data, local + 22, declared)
    struct.pack_into("<I", data, central + 16, crc)  # central header: CRC at 16, sizes at 20, 24
    struct.pack_into("<I", data, central + 24, declared)
    path.write_bytes(bytes(data))
    return path


def test_a_zip_whose_headers_understate_a_size_never_unpacks_more(tmp_path: Path) -> None:
    """zipfile reads an entry up to the size its central header declares: 5 MB under headers saying 500 kB is
    refused as corrupt (its CRC is the 5 MB's), or, with the CRC of the first 500 kB, unpacks those 500 kB.
    So no zip makes the stream longer than its header: Budget.stream's count is the guard for what has no
    header (a raw folder's files), tested below on a real stream."""
    raw = lying_zip(tmp_path / "train.zip", 500_000, crc_of_declared=False)
    with pytest.raises(
        ExtractError, match=r"train\.zip: entry 'train/cat\.9999\.jpg' is corrupt \(BadZipFile: Bad CRC"
    ):
        extract(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    raw = lying_zip(tmp_path / "train.zip", 500_000, crc_of_declared=True)
    extract(raw, tmp_path / "out", limits=ExtractConfig(max_entry_mb=1))
    assert (tmp_path / "out" / "cat.9999.jpg").read_bytes() == bytes(500_000)


def test_the_stream_is_cut_at_the_entry_limit_whatever_was_declared(tmp_path: Path) -> None:
    """A real 2 MB stream under max_entry_mb = 1, no header consulted: refused at the first block past 1 MB."""
    assert BLOCK > MB
    budget = Budget(ExtractConfig(max_entry_mb=1))
    with pytest.raises(ExtractError) as err:
        budget.stream(io.BytesIO(bytes(2_000_000)), tmp_path / "x.jpg", "entry 'x.jpg'", "max_entry_mb")
    assert str(err.value) == (
        "Refusing entry 'x.jpg': it unpacks to more than 1,048,576 bytes"  # its first block (1 MiB) passes 1 MB
        ", over extract.max_entry_mb = 1 (a decompression bomb?). If the file is genuine, raise "
        "extract.max_entry_mb in params.yaml."
    )


def test_the_stream_counts_the_total_across_entries(tmp_path: Path) -> None:
    """Two real 0.8 MB streams under max_total_mb = 1.5: the second is refused once the sum passes it."""
    budget = Budget(ExtractConfig(max_entry_mb=1, max_total_mb=1.5))
    budget.stream(io.BytesIO(bytes(800_000)), tmp_path / "a.jpg", "entry 'a.jpg'", "max_entry_mb")
    with pytest.raises(
        ExtractError,
        match=r"Refusing entry 'b\.jpg': it unpacks to [\d,]+ bytes with the files "
        r"before it, over extract\.max_total_mb = 1\.5",
    ):
        budget.stream(io.BytesIO(bytes(800_000)), tmp_path / "b.jpg", "entry 'b.jpg'", "max_entry_mb")


@pytest.mark.parametrize("value", [0, -1, "big"])
def test_extract_limits_must_be_positive(value) -> None:
    with pytest.raises(ConfigError, match=r"extract\.max_entry_mb: received"):
        validate({"extract": {"max_entry_mb": value}})


def test_split_reads_only_the_header_of_a_large_non_image(tmp_path: Path) -> None:
    """A 256 MB file of zeros named cat.0.jpg (sparse: no disk used) is rejected from its first bytes."""
    path = tmp_path / "cat.0.jpg"
    with open(path, "wb") as handle:
        handle.truncate(256_000_000)
    tracemalloc.start()
    try:
        checked = check_file(path, MAX_PIXELS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert checked.action == "reject" and checked.reasons == ("not an image",)
    assert peak < 4_000_000, f"peak {peak:,} bytes"
