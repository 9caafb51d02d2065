"""Stage extract: Kaggle's competition zip, its bare train.zip, or a folder -> data/images/<class>.<n>.<ext>."""

from __future__ import annotations

import io
import re
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

IMAGE_NAME = re.compile(r"^(?P<cls>[A-Za-z][\w-]*)\.(?P<index>\d+)\.(?P<ext>jpe?g|png|bmp|gif|webp)$", re.I)
KAGGLE_HINT = (
    "Download Kaggle's Dogs vs. Cats archive on a machine with internet: "
    "`kaggle competitions download -c dogs-vs-cats -p data/raw` (accept the competition's rules first), "
    "or set paths.raw in params.yaml to a train.zip or a folder of <class>.<n>.jpg files."
)


class ExtractError(ValueError):
    """The raw input is missing, not an archive we understand, or holds an unsafe entry."""


def is_image_name(name: str) -> bool:
    return IMAGE_NAME.match(name) is not None


def check_entry_is_safe(info: zipfile.ZipInfo, archive: Path) -> None:
    """Refuse entries that would land outside the target folder: absolute, `..`, links."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise ExtractError(f"Refusing archive entry {name!r} in {archive}: its path escapes the target folder.")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ExtractError(f"Refusing archive entry {name!r} in {archive}: it is a symbolic link.")


def open_zip(source: Path | io.BytesIO, label: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except zipfile.BadZipFile as err:
        raise ExtractError(f"{label} is not a valid zip archive ({err}).") from err


def zip_images(archive: zipfile.ZipFile, label: Path) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of every image in a zip, descending into a nested train.zip if there is one."""
    infos = archive.infolist()
    for info in infos:
        check_entry_is_safe(info, label)
    nested = [i for i in infos if PurePosixPath(i.filename).name == "train.zip"]
    if nested:
        inner_label = Path(f"{label}!{nested[0].filename}")
        with open_zip(io.BytesIO(archive.read(nested[0])), inner_label) as inner:
            yield from zip_images(inner, inner_label)
        return
    for info in infos:
        name = PurePosixPath(info.filename).name
        if not info.is_dir() and is_image_name(name):
            yield name, archive.read(info)


def folder_images(folder: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise ExtractError(f"Refusing {path}: symbolic links are not followed.")
        if path.is_file() and is_image_name(path.name):
            yield path.name, path


def extract(raw: Path, out_dir: Path) -> int:
    """Write every training image of `raw` flat into `out_dir`; returns how many."""
    if not raw.exists():
        raise ExtractError(f"Raw data not found at {raw}. {KAGGLE_HINT}")
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    count = 0
    seen: set[str] = set()
    if raw.is_dir():
        for name, path in folder_images(raw):
            count += _write_once(staging, name, path.read_bytes(), seen, raw)
    else:
        with open_zip(raw, raw) as archive:
            for name, data in zip_images(archive, raw):
                count += _write_once(staging, name, data, seen, raw)
    if count == 0:
        shutil.rmtree(staging)
        raise ExtractError(f"No images named <class>.<n>.<ext> (e.g. cat.0.jpg) found in {raw}. {KAGGLE_HINT}")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return count


def _write_once(folder: Path, name: str, data: bytes, seen: set[str], raw: Path) -> int:
    if name in seen:
        raise ExtractError(f"Image name {name!r} occurs twice in {raw}; names must be unique.")
    seen.add(name)
    (folder / name).write_bytes(data)
    return 1
