"""Stage extract: Kaggle's competition zip, its bare train.zip, or a folder -> data/images/<class>.<n>.<ext>."""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from pipeline.config import ExtractConfig

# Class names become folder names and CSV cells: ASCII letters, digits, _ and -, starting with a letter.
CLASS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
IMAGE_NAME = re.compile(r"^(?P<cls>[A-Za-z][A-Za-z0-9_-]*)\.(?P<index>\d+)\.(?P<ext>jpe?g|png|bmp|gif|webp)$", re.I)
IMAGE_EXTENSION = re.compile(r"\.(jpe?g|png|bmp|gif|webp)$", re.I)
MB = 1_000_000
BLOCK = 1 << 20  # bytes per read while streaming an entry: memory stays bounded whatever the entry holds
RATIO_FLOOR = 1 << 20  # entries smaller than this may compress as well as they like
NESTED_TMP = ".nested-train.zip"
KAGGLE_HINT = (
    "Download Kaggle's Dogs vs. Cats archive on a machine with internet: "
    "`kaggle competitions download -c dogs-vs-cats -p data/raw` (accept the competition's rules first), "
    "or set paths.raw in params.yaml to a train.zip or a folder of <class>.<n>.jpg files."
)


class ExtractError(ValueError):
    """The raw input is missing, not an archive we understand, or holds an unsafe entry."""


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


def open_zip(source: Path, label: Path) -> zipfile.ZipFile:
    if source.stat().st_size == 0:
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


def check_limits(limits: ExtractConfig) -> None:
    """extract.* must be positive numbers."""
    for key in ("max_entry_mb", "max_total_mb", "max_ratio"):
        value = getattr(limits, key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
            raise ExtractError(f"extract.{key} must be a positive number. Received: {key}={value!r}")


@dataclass
class Budget:
    """The bomb limits for one run, and the bytes written so far against extract.max_total_mb."""

    limits: ExtractConfig
    total: int = 0

    def cap(self, key: str) -> float:
        """A size limit in bytes: key is max_entry_mb or max_total_mb."""
        return getattr(self.limits, key) * MB

    def bomb(self, what: str, size: str, key: str) -> ExtractError:
        return ExtractError(
            f"Refusing {what}: it unpacks to {size}, over extract.{key} = {getattr(self.limits, key):g} "
            f"(a decompression bomb?). If the file is genuine, raise extract.{key} in params.yaml."
        )

    def check_header(self, info: zipfile.ZipInfo, what: str, key: str) -> None:
        """Refuse an entry from its header alone: a declared size over the limit, or a bomb's ratio."""
        if info.file_size > self.cap(key):
            raise self.bomb(what, f"{info.file_size:,} bytes", key)
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and ratio > self.limits.max_ratio:
            raise self.bomb(what, f"{ratio:,.0f} times its compressed size", "max_ratio")

    def check_declared_total(self, infos: list[zipfile.ZipInfo], label: Path) -> None:
        """Refuse, before unpacking any, the entry at which the declared sizes pass max_total_mb."""
        declared = self.total
        for info in infos:
            declared += info.file_size
            if declared > self.cap("max_total_mb"):
                what = f"entry {info.filename!r} of {label}"
                raise self.bomb(what, f"{declared:,} bytes with the entries before it", "max_total_mb")

    def stream(self, source: BinaryIO, target: Path, what: str, key: str, counted: bool = True) -> None:
        """Copy `source` into `target` block by block, stopping as soon as a limit is passed.

        zipfile stops at the size an entry's header declares; counting here holds whatever the header says.
        """
        written = 0
        with open(target, "wb") as out:
            while block := source.read(BLOCK):
                written += len(block)
                if written > self.cap(key):
                    raise self.bomb(what, f"more than {written:,} bytes", key)
                if counted:
                    self.total += len(block)
                    if self.total > self.cap("max_total_mb"):
                        raise self.bomb(what, f"{self.total:,} bytes with the files before it", "max_total_mb")
                out.write(block)


def unpack_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: Path, target: Path, budget: Budget, nested: bool = False
) -> None:
    """Stream one entry to `target` under the bomb limits; corrupt data is an error naming both.

    An image entry is held to max_entry_mb; a nested train.zip to max_total_mb (its images count, it does not).
    """
    what, key = f"entry {info.filename!r} of {label}", "max_total_mb" if nested else "max_entry_mb"
    budget.check_header(info, what, key)
    try:
        with archive.open(info) as source:
            budget.stream(source, target, what, key, counted=not nested)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as err:
        raise ExtractError(f"{label}: entry {info.filename!r} is corrupt ({type(err).__name__}: {err}).") from err
    except RuntimeError as err:  # zipfile's "File ... is encrypted, password required for extraction"
        raise ExtractError(f"{label}: entry {info.filename!r} cannot be read ({err}).") from err


def unpack_zip(
    archive: zipfile.ZipFile, label: Path, writer: Writer, report: ExtractReport, nested: bool = True
) -> None:
    """Every image of a zip into the writer's folder, descending into a nested train.zip (one level)."""
    infos = archive.infolist()
    for info in infos:
        check_entry_is_safe(info, label)
    inner_zips = [i for i in infos if PurePosixPath(i.filename).name == "train.zip"] if nested else []
    if inner_zips:
        inner_path = writer.folder / NESTED_TMP  # on disk, not in memory: Kaggle's train.zip is 543 MB
        try:
            unpack_entry(archive, inner_zips[0], label, inner_path, writer.budget, nested=True)
            inner_label = Path(f"{label}!{inner_zips[0].filename}")
            with open_zip(inner_path, inner_label) as inner:
                unpack_zip(inner, inner_label, writer, report, nested=False)
        finally:
            inner_path.unlink(missing_ok=True)
        return
    images = []
    for info in infos:
        name = PurePosixPath(info.filename).name
        if info.is_dir():
            continue
        if is_image_name(name):
            images.append(info)
        elif IMAGE_EXTENSION.search(name):
            report.skipped.append(info.filename)
    writer.budget.check_declared_total(images, label)
    for info in images:
        target = writer.claim(PurePosixPath(info.filename).name)
        unpack_entry(archive, info, label, target, writer.budget)


@dataclass
class Writer:
    """Writes images flat into `folder`, each name once, within the bomb budget."""

    folder: Path
    raw: Path
    budget: Budget
    seen: set[str] = field(default_factory=set)

    def claim(self, name: str) -> Path:
        if name in self.seen:
            raise ExtractError(f"Image name {name!r} occurs twice in {self.raw}; names must be unique.")
        self.seen.add(name)
        return self.folder / name

    def copy_file(self, name: str, path: Path) -> None:
        target = self.claim(name)
        size = path.stat().st_size
        if size > self.budget.cap("max_entry_mb"):
            raise self.budget.bomb(str(path), f"{size:,} bytes", "max_entry_mb")
        with open(path, "rb") as source:
            self.budget.stream(source, target, str(path), "max_entry_mb")


def folder_images(folder: Path, report: ExtractReport) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise ExtractError(f"Refusing {path}: symbolic links are not followed.")
        if path.is_file() and is_image_name(path.name):
            yield path.name, path
        elif path.is_file() and IMAGE_EXTENSION.search(path.name):
            report.skipped.append(str(path.relative_to(folder)))


@contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """A fresh sibling folder to fill; it replaces `out_dir` only if the block completes, else it is removed."""
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)


def extract(raw: Path, out_dir: Path, limits: ExtractConfig | None = None) -> ExtractReport:
    """Write every training image of `raw` flat into `out_dir`; says how many, and which image files it skipped.

    Entries are streamed to disk in blocks under the bomb limits (extract.*), so memory stays bounded.
    """
    limits = limits or ExtractConfig()
    check_limits(limits)
    if not raw.exists():
        raise ExtractError(f"Raw data not found at {raw}. {KAGGLE_HINT}")
    report = ExtractReport()
    with staged_folder(out_dir) as staging:
        writer = Writer(staging, raw, Budget(limits))
        if raw.is_dir():
            for name, path in folder_images(raw, report):
                writer.copy_file(name, path)
        else:
            with open_zip(raw, raw) as archive:
                unpack_zip(archive, raw, writer, report)
        report.count = len(writer.seen)
        if report.count == 0:
            raise ExtractError(f"No images named <class>.<n>.<ext> (e.g. cat.0.jpg) found in {raw}. {KAGGLE_HINT}")
    return report
