"""Stage extract: the raw images (a zip or a folder, in one of the known layouts) -> data/images/.

Layouts (`split.layout`, detected with `auto`):
- kaggle: files named `<class>.<n>.<ext>` (Kaggle's train.zip, or its competition zip holding it), anywhere
  in the input; written flat: `data/images/cat.0.jpg`.
- folders: one folder per class holding images of any name (`cat/img_0001.jpg`, Keras'
  `image_dataset_from_directory` convention; Microsoft's `PetImages/Cat/123.jpg`), with or without one top
  folder around them; written as `data/images/<class>/<file>`.
Nothing is judged here: every file goes through the split stage's image gate (pipeline/images/gate.py).
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from pipeline.core.atomic import staged_folder
from pipeline.core.config import ExtractConfig
from pipeline.core.errors import ExtractError
from pipeline.store.manifest import CLASS_NAME, IMAGE_EXTENSION, IMAGE_NAME

# Class names become folder names and CSV cells: ASCII letters, digits, _ and -, starting with a letter.
LAYOUTS = ("auto", "kaggle", "folders")
IGNORED_FOLDERS = ("__MACOSX",)  # macOS zips add resource forks there
MB = 1_000_000
BLOCK = 1 << 20  # bytes per read while streaming an entry: memory stays bounded whatever the entry holds
RATIO_FLOOR = 1 << 20  # entries smaller than this may compress as well as they like
NESTED_TMP = ".nested-train.zip"  # a nested train.zip, streamed to disk (Kaggle's is 543 MB), not memory
KAGGLE_HINT = (
    "Get the photos with `python -m pipeline get-data` (Microsoft's download, no account; it sets paths.raw), "
    "or Kaggle's Dogs vs. Cats archive: `kaggle competitions download -c dogs-vs-cats -p data/raw` (accept "
    "the competition's rules first), or set paths.raw in params.yaml to a train.zip, a folder of "
    "<class>.<n>.jpg files, or class folders (<class>/<any name>.jpg, e.g. Microsoft's PetImages)."
)


@dataclass
class ExtractReport:
    count: int = 0
    skipped: list[str] = field(default_factory=list)  # kaggle layout: image files not named <class>.<n>.<ext>
    layout: str = ""  # the layout read: kaggle or folders


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

    def check_header(self, size: int, packed: int, what: str, key: str) -> None:
        """Refuse an entry from its header alone: a declared size over the limit, or a bomb's ratio."""
        if size > self.cap(key):
            raise self.bomb(what, f"{size:,} bytes", key)
        ratio = size / max(packed, 1)
        if size > RATIO_FLOOR and ratio > self.limits.max_ratio:
            raise self.bomb(what, f"{ratio:,.0f} times its compressed size", "max_ratio")

    def check_declared_total(self, sources: list[Source], label: Path) -> None:
        """Refuse, before unpacking any, the file at which the declared sizes pass max_total_mb."""
        declared = self.total
        for source in sources:
            declared += source.size
            if declared > self.cap("max_total_mb"):
                what = f"{source.path!r} of {label}"
                raise self.bomb(what, f"{declared:,} bytes with the files before it", "max_total_mb")

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
    budget.check_header(info.file_size, info.compress_size, what, key)
    try:
        with archive.open(info) as source:
            budget.stream(source, target, what, key, counted=not nested)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as err:
        raise ExtractError(f"{label}: entry {info.filename!r} is corrupt ({type(err).__name__}: {err}).") from err
    except RuntimeError as err:  # zipfile's "File ... is encrypted, password required for extraction"
        raise ExtractError(f"{label}: entry {info.filename!r} cannot be read ({err}).") from err


def copy_file(path: Path, target: Path, budget: Budget) -> None:
    """A raw-folder file into `target`, streamed under max_entry_mb."""
    size = path.stat().st_size
    if size > budget.cap("max_entry_mb"):
        raise budget.bomb(str(path), f"{size:,} bytes", "max_entry_mb")
    with open(path, "rb") as source:
        budget.stream(source, target, str(path), "max_entry_mb")


@dataclass(frozen=True)
class Source:
    """One file of the raw input: its path inside the zip or folder, and how to read it."""

    parts: tuple[str, ...]
    write: Callable[[Path, Budget], None]  # streams the file to a target path under the bomb budget
    size: int  # bytes it unpacks to, as the zip's header (or the file system) says
    packed: int  # bytes it takes in the archive

    @property
    def path(self) -> str:
        return "/".join(self.parts)

    @property
    def name(self) -> str:
        return self.parts[-1]


def zip_sources(
    archive: zipfile.ZipFile, label: Path, budget: Budget, scratch: Path, nested: bool = True
) -> Iterator[Source]:
    """Every file entry of a zip, descending into a nested train.zip (one level, unpacked into `scratch`)."""
    infos = archive.infolist()
    for info in infos:
        check_entry_is_safe(info, label)
    inner_zips = [i for i in infos if PurePosixPath(i.filename).name == "train.zip"] if nested else []
    if inner_zips:
        inner_label = Path(f"{label}!{inner_zips[0].filename}")
        inner_path = scratch / NESTED_TMP
        unpack_entry(archive, inner_zips[0], label, inner_path, budget, nested=True)
        # Left open: its sources are read after this generator ends; extract() deletes the file when done.
        yield from zip_sources(open_zip(inner_path, inner_label), inner_label, budget, scratch, nested=False)
        return
    for info in infos:
        if not info.is_dir():
            parts = tuple(p for p in info.filename.replace("\\", "/").split("/") if p)
            yield Source(parts, partial(unpack_entry, archive, info, label), info.file_size, info.compress_size)


def folder_sources(folder: Path) -> Iterator[Source]:
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise ExtractError(f"Refusing {path}: symbolic links are not followed.")
        if path.is_file():
            size = path.stat().st_size
            yield Source(path.relative_to(folder).parts, partial(copy_file, path), size, size)


def image_sources(sources: Iterator[Source]) -> list[Source]:
    """Files with an image extension; hidden files and macOS resource forks (__MACOSX/, ._x.jpg) are left out."""
    return [
        s
        for s in sources
        if IMAGE_EXTENSION.search(s.name)
        and not any(part.startswith(".") or part in IGNORED_FOLDERS for part in s.parts)
    ]


def class_depth(images: list[Source]) -> int | None:
    """Where the class folder sits in `<class>/<file>` (0) or `<top>/<class>/<file>` (1); None: neither."""
    depths = {len(s.parts) for s in images}
    if depths == {2}:
        return 0
    if depths == {3} and len({s.parts[0] for s in images}) == 1:
        return 1
    return None


def detect_layout(images: list[Source], label: Path) -> str:
    """kaggle or folders, whichever reading of the file paths fits; an error when both fit differently or none."""
    depth = class_depth(images)
    folders_fit = depth is not None and len({s.parts[depth] for s in images}) >= 2
    named = [s for s in images if is_image_name(s.name)]
    if folders_fit and named and len(named) == len(images):
        differ = [s for s in images if IMAGE_NAME.match(s.name)["cls"] != s.parts[depth]]
        if not differ:
            return "kaggle"  # both readings give the same classes
        raise ExtractError(
            f"{label} is ambiguous: its files are named <class>.<n>.<ext> and also sit in class folders, and the "
            f"two disagree (e.g. {differ[0].path!r}: class {IMAGE_NAME.match(differ[0].name)['cls']!r} by its "
            f"name, {differ[0].parts[depth]!r} by its folder). Set split.layout in params.yaml to kaggle "
            "(classes from file names) or folders (classes from folder names)."
        )
    if folders_fit:
        return "folders"
    if named:
        return "kaggle"
    raise ExtractError(
        f"No images found in a known layout in {label}: expected files named <class>.<n>.<ext> (e.g. cat.0.jpg), "
        "or one folder per class (<class>/<any name>.jpg, optionally inside one top folder, e.g. "
        f"PetImages/Cat/1.jpg). {KAGGLE_HINT}"
    )


def kaggle_targets(images: list[Source], report: ExtractReport) -> Iterator[tuple[Source, str]]:
    for source in images:
        if is_image_name(source.name):
            yield source, source.name
        else:
            report.skipped.append(source.path)


def folder_targets(images: list[Source], label: Path) -> Iterator[tuple[Source, str]]:
    depth = class_depth(images)
    if depth is None:
        odd = next(s for s in images if len(s.parts) not in (2, 3)) if images else None
        raise ExtractError(
            f"split.layout is folders, but the images in {label} are not all <class>/<file> or "
            f"<top folder>/<class>/<file>" + (f" (e.g. {odd.path!r})." if odd else ".")
        )
    for cls in sorted({s.parts[depth] for s in images}):
        if not CLASS_NAME.match(cls):
            raise ExtractError(
                f"Class folder {cls!r} in {label}: class names must be ASCII letters, digits, _ and -, starting "
                "with a letter (they become folder names and CSV cells). Rename the folder."
            )
    for source in images:
        yield source, f"{source.parts[depth]}/{source.name}"


def planned_images(raw: Path, sources: Iterator[Source], layout: str, report: ExtractReport):
    """(source, target path in the images folder) of each image the layout takes."""
    if layout not in LAYOUTS:
        raise ExtractError(f"split.layout must be one of {LAYOUTS}. Received: layout={layout!r}")
    images = image_sources(sources)
    report.layout = detect_layout(images, raw) if layout == "auto" else layout
    if report.layout == "folders":
        return folder_targets(images, raw)
    return kaggle_targets(images, report)


def extract(raw: Path, out_dir: Path, layout: str = "auto", limits: ExtractConfig | None = None) -> ExtractReport:
    """Write every image of `raw` into `out_dir` (see the module doc); says how many, the layout, what it skipped.

    Files are streamed to disk in blocks under the bomb limits (extract.*, validated by the params schema), so
    memory stays bounded.
    """
    limits = limits or ExtractConfig()
    if not raw.exists():
        raise ExtractError(f"Raw data not found at {raw}. {KAGGLE_HINT}")
    report = ExtractReport()
    seen: set[str] = set()
    budget = Budget(limits)
    with staged_folder(out_dir) as staging:
        if raw.is_dir():
            plan = list(planned_images(raw, folder_sources(raw), layout, report))
            write_all(plan, staging, seen, raw, budget, report)
        else:
            with open_zip(raw, raw) as archive:
                plan = list(planned_images(raw, zip_sources(archive, raw, budget, staging), layout, report))
                write_all(plan, staging, seen, raw, budget, report)
            (staging / NESTED_TMP).unlink(missing_ok=True)
        if report.count == 0:
            raise ExtractError(f"No images named <class>.<n>.<ext> (e.g. cat.0.jpg) found in {raw}. {KAGGLE_HINT}")
    return report


def write_all(
    plan: list[tuple[Source, str]], folder: Path, seen: set[str], raw: Path, budget: Budget, report: ExtractReport
) -> None:
    """Check the declared total first (nothing written for a bomb), then stream each file to its target."""
    budget.check_declared_total([source for source, _ in plan], raw)
    for source, target in plan:
        report.count += _write_once(folder, target, source, seen, raw, budget)


def _write_once(folder: Path, name: str, source: Source, seen: set[str], raw: Path, budget: Budget) -> int:
    if name in seen:
        raise ExtractError(f"Image name {name!r} occurs twice in {raw}; names must be unique.")
    seen.add(name)
    target = folder / name
    target.parent.mkdir(exist_ok=True)
    source.write(target, budget)
    return 1
