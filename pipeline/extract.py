"""Stage extract: Kaggle's competition zip, its bare train.zip, or a folder -> data/images/<class>.<n>.<ext>."""

from __future__ import annotations

import io
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pipeline.atomic import staged_folder
from pipeline.errors import ExtractError
from pipeline.manifest import IMAGE_NAME

IMAGE_EXTENSION = re.compile(r"\.(jpe?g|png|bmp|gif|webp)$", re.I)
KAGGLE_HINT = (
    "Download Kaggle's Dogs vs. Cats archive on a machine with internet: "
    "`kaggle competitions download -c dogs-vs-cats -p data/raw` (accept the competition's rules first), "
    "or set paths.raw in params.yaml to a train.zip or a folder of <class>.<n>.jpg files."
)


@dataclass
class ExtractReport:
    count: int = 0
    skipped: list[str] = field(default_factory=list)  # image files whose names are not <class>.<n>.<ext>


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
    if isinstance(source, Path) and source.stat().st_size == 0:
        raise ExtractError(f"{label} is empty (0 bytes), not a zip archive. {KAGGLE_HINT}")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise ExtractError(
            f"{label} is not a valid zip archive ({err}): is it truncated (an interrupted download) or another "
            f"kind of file?"
        ) from err
    if not archive.infolist():
        archive.close()
        raise ExtractError(f"{label} is an empty zip archive: it has no entries. {KAGGLE_HINT}")
    return archive


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: Path) -> bytes:
    """An entry's bytes; a CRC mismatch, bad compressed data or a cut-off entry is an error naming both."""
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as err:
        raise ExtractError(f"{label}: entry {info.filename!r} is corrupt ({type(err).__name__}: {err}).") from err
    except RuntimeError as err:  # zipfile's "File ... is encrypted, password required for extraction"
        raise ExtractError(f"{label}: entry {info.filename!r} cannot be read ({err}).") from err


def zip_images(
    archive: zipfile.ZipFile, label: Path, report: ExtractReport, nested: bool = True
) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of every image in a zip, descending into a nested train.zip (one level) if there is one."""
    infos = archive.infolist()
    for info in infos:
        check_entry_is_safe(info, label)
    inner_zips = [i for i in infos if PurePosixPath(i.filename).name == "train.zip"] if nested else []
    if inner_zips:
        inner_label = Path(f"{label}!{inner_zips[0].filename}")
        data = read_entry(archive, inner_zips[0], label)
        with open_zip(io.BytesIO(data), inner_label) as inner:
            yield from zip_images(inner, inner_label, report, nested=False)
        return
    for info in infos:
        name = PurePosixPath(info.filename).name
        if info.is_dir():
            continue
        if is_image_name(name):
            yield name, read_entry(archive, info, label)
        elif IMAGE_EXTENSION.search(name):
            report.skipped.append(info.filename)


def folder_images(folder: Path, report: ExtractReport) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise ExtractError(f"Refusing {path}: symbolic links are not followed.")
        if path.is_file() and is_image_name(path.name):
            yield path.name, path
        elif path.is_file() and IMAGE_EXTENSION.search(path.name):
            report.skipped.append(str(path.relative_to(folder)))


def extract(raw: Path, out_dir: Path) -> ExtractReport:
    """Write every training image of `raw` flat into `out_dir`; says how many, and which image files it skipped."""
    if not raw.exists():
        raise ExtractError(f"Raw data not found at {raw}. {KAGGLE_HINT}")
    report = ExtractReport()
    seen: set[str] = set()
    with staged_folder(out_dir) as staging:
        if raw.is_dir():
            for name, path in folder_images(raw, report):
                report.count += _write_once(staging, name, path.read_bytes(), seen, raw)
        else:
            with open_zip(raw, raw) as archive:
                for name, data in zip_images(archive, raw, report):
                    report.count += _write_once(staging, name, data, seen, raw)
        if report.count == 0:
            raise ExtractError(f"No images named <class>.<n>.<ext> (e.g. cat.0.jpg) found in {raw}. {KAGGLE_HINT}")
    return report


def _write_once(folder: Path, name: str, data: bytes, seen: set[str], raw: Path) -> int:
    if name in seen:
        raise ExtractError(f"Image name {name!r} occurs twice in {raw}; names must be unique.")
    seen.add(name)
    (folder / name).write_bytes(data)
    return 1
