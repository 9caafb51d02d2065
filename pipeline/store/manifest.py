"""The manifest: which image is in which split, and its content hash. Written by split, read by every stage.

`manifest.csv` has the columns path, class, split, sha256; `path` (`<split>/<class>/<class>.<n>.<ext>`,
relative to the manifest's folder) is the image's id everywhere downstream (store ids, visualize.ids).
Kaggle's file names are `<class>.<n>.<ext>` (the class is the name's prefix); class folders hold any image name.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.config import SPLITS
from pipeline.core.errors import ManifestError

MANIFEST_FIELDS = ("path", "class", "split", "sha256")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Class names become folder names and CSV cells: ASCII letters, digits, _ and -, starting with a letter.
CLASS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
IMAGE_NAME = re.compile(r"^(?P<cls>[A-Za-z][A-Za-z0-9_-]*)\.(?P<index>\d+)\.(?P<ext>jpe?g|png|bmp|gif|webp)$", re.I)
IMAGE_EXTENSION = re.compile(r"\.(jpe?g|png|bmp|gif|webp)$", re.I)


@dataclass(frozen=True)
class ManifestRow:
    path: str  # relative to the split folder, e.g. train/cat/cat.0.jpg; the row's id everywhere downstream
    cls: str
    split: str
    sha256: str


def is_image_file_name(name: str) -> bool:
    """A file name the manifest accepts: an image extension, not hidden, no control characters or backslash."""
    return (
        IMAGE_EXTENSION.search(name) is not None
        and not name.startswith(".")
        and "\\" not in name
        and all(ch.isprintable() for ch in name)
    )


def natural_key(name: str) -> tuple:
    """Digits compare as numbers, the rest case-insensitively; the exact name breaks ties."""
    runs = re.split(r"(\d+)", name)
    return (tuple(int(run) if i % 2 else run.casefold() for i, run in enumerate(runs)), name)


def write_csv(path: Path, header: tuple[str, ...], rows) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_manifest(rows: list[ManifestRow], path: Path) -> None:
    write_csv(path, MANIFEST_FIELDS, ((r.path, r.cls, r.split, r.sha256) for r in rows))


def read_manifest(path: Path) -> list[ManifestRow]:
    """The manifest's rows in file order; errors name the file, the row and the problem.

    Each row must be <split>/<class>/<image file name> inside the manifest's folder, with no symbolic link on
    the way (a link could point anywhere), a sha256 of 64 hex digits, and a path no other row has.
    """
    if not path.is_file():
        raise ManifestError(f"Manifest not found: {path}. Run the split stage first (`dvc repro split`).")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != MANIFEST_FIELDS:
            raise ManifestError(f"{path}: header must be {','.join(MANIFEST_FIELDS)}, found {reader.fieldnames}")
        rows = [ManifestRow(r["path"], r["class"], r["split"], r["sha256"]) for r in reader]
    root, seen, links = path.parent, set(), {}
    for line, row in enumerate(rows, start=2):
        problem = row_problem(row, root, seen, links)
        if problem:
            raise ManifestError(f"{path}, line {line}: bad row {row}: {problem}.")
        seen.add(row.path)
    return rows


def row_problem(row: ManifestRow, root: Path, seen: set[str], links: dict[Path, bool]) -> str | None:
    parts = tuple(row.path.split("/"))
    if row.split not in SPLITS:
        return f"unknown split {row.split!r} (expected one of {SPLITS})"
    if len(parts) != 3 or ".." in parts or Path(row.path).is_absolute() or parts[:2] != (row.split, row.cls):
        return "its path is outside the split folder or not <split>/<class>/<file>"
    if not CLASS_NAME.match(row.cls) or not is_image_file_name(parts[2]):
        return "the class or file name is not allowed (class: ASCII letters, digits, _ and -; file: an image name)"
    if not SHA256.match(row.sha256):
        return "sha256 is not 64 lowercase hex digits"
    if row.path in seen:
        return "another row has the same path"
    for depth in (1, 2, 3):
        place = root.joinpath(*parts[:depth])
        if place not in links:
            links[place] = place.is_symlink()
        if links[place]:
            return f"{place} is a symbolic link; links in the split folder are not followed"
    return None


def classes_of(rows: list[ManifestRow]) -> list[str]:
    """Class names in label order (sorted), the same in every stage."""
    return sorted({row.cls for row in rows})
