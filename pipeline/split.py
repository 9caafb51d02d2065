"""Stage split: per class, by file index, the first N train / next M validation / next K test, + manifest."""

from __future__ import annotations

import csv
import hashlib
import random
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import SPLITS, SplitConfig
from pipeline.extract import IMAGE_NAME

MANIFEST_FIELDS = ("path", "class", "split", "sha256")


class SplitError(ValueError):
    """The images cannot be split as params ask (too few, bad names)."""


@dataclass(frozen=True)
class ManifestRow:
    path: str  # relative to the split folder, e.g. train/cat/cat.0.jpg; the row's id everywhere downstream
    cls: str
    split: str
    sha256: str


def index_images(images_dir: Path) -> dict[str, list[Path]]:
    """Image files per class (the name's prefix), ordered by their numeric index (cat.2 before cat.10)."""
    by_class: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for path in images_dir.iterdir():
        match = IMAGE_NAME.match(path.name)
        if match and path.is_file():
            by_class[match["cls"]].append((int(match["index"]), path))
    return {cls: [p for _, p in sorted(items, key=lambda t: (t[0], t[1].name))] for cls, items in by_class.items()}


def assign_splits(by_class: dict[str, list[Path]], config: SplitConfig) -> dict[str, dict[str, list[Path]]]:
    """{split: {class: files}}; errors with the counts when a class has too few images."""
    sizes = config.sizes()
    need = sum(sizes.values())
    short = {cls: len(files) for cls, files in by_class.items() if len(files) < need}
    if not by_class:
        raise SplitError("No images to split.")
    if short:
        raise SplitError(
            f"Too few images for the split sizes {sizes} ({need} per class): "
            + ", ".join(f"{cls} has {n}" for cls, n in sorted(short.items()))
            + ". Lower split.train/validation/test in params.yaml."
        )
    result: dict[str, dict[str, list[Path]]] = {split: {} for split in SPLITS}
    for cls in sorted(by_class):
        files = list(by_class[cls])
        if config.shuffle:
            random.Random(f"{config.seed}:{cls}").shuffle(files)
        start = 0
        for split in SPLITS:
            result[split][cls] = files[start : start + sizes[split]]
            start += sizes[split]
    return result


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_split(assignment: dict[str, dict[str, list[Path]]], out_dir: Path) -> list[ManifestRow]:
    """Copy files into out_dir/<split>/<class>/ and write out_dir/manifest.csv; returns the rows."""
    shutil.rmtree(out_dir, ignore_errors=True)
    rows: list[ManifestRow] = []
    for split in SPLITS:
        for cls, files in assignment[split].items():
            target = out_dir / split / cls
            target.mkdir(parents=True, exist_ok=True)
            for src in files:
                shutil.copyfile(src, target / src.name)
                rows.append(ManifestRow(f"{split}/{cls}/{src.name}", cls, split, file_sha256(src)))
    write_manifest(rows, out_dir / "manifest.csv")
    return rows


def write_manifest(rows: list[ManifestRow], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_FIELDS)
        writer.writerows((r.path, r.cls, r.split, r.sha256) for r in rows)


def read_manifest(path: Path) -> list[ManifestRow]:
    """The manifest's rows in file order; errors name the file and the problem."""
    if not path.is_file():
        raise SplitError(f"Manifest not found: {path}. Run the split stage first (`dvc repro split`).")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != MANIFEST_FIELDS:
            raise SplitError(f"{path}: header must be {','.join(MANIFEST_FIELDS)}, found {reader.fieldnames}")
        rows = [ManifestRow(r["path"], r["class"], r["split"], r["sha256"]) for r in reader]
    for row in rows:
        if row.split not in SPLITS or ".." in Path(row.path).parts or Path(row.path).is_absolute():
            raise SplitError(f"{path}: bad row {row} (unknown split or a path outside the split folder).")
    return rows


def classes_of(rows: list[ManifestRow]) -> list[str]:
    """Class names in label order (sorted), the same in every stage."""
    return sorted({row.cls for row in rows})


def split(images_dir: Path, out_dir: Path, config: SplitConfig) -> list[ManifestRow]:
    if not images_dir.is_dir():
        raise SplitError(f"Images folder not found: {images_dir}. Run the extract stage first.")
    return write_split(assign_splits(index_images(images_dir), config), out_dir)
