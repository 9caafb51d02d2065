"""Stage split: per class, by file index, the first N valid images train / next M validation / next K test.

Every image is decoded on the way (pipeline/images.py): plain JPEGs are copied, anything else that decodes is
converted to an RGB PNG, and the rest is rejected into rejects.csv instead of taking a place in the split.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pipeline.atomic import staged_folder
from pipeline.config import SPLITS, SplitConfig
from pipeline.errors import SplitError
from pipeline.images import check_file, pillow_limits
from pipeline.manifest import IMAGE_NAME, ManifestRow, write_csv, write_manifest

REJECTS_FIELDS = ("path", "reason")
CONVERTED_FIELDS = ("path", "source", "conversion")
WORKERS = min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class Reject:
    path: str  # the file's name in the images folder
    reason: str  # key for counting: empty, not an image, truncated, corrupt, too large, symlink, ...
    detail: str

    @property
    def note(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True)
class Conversion:
    path: str  # the manifest path of the PNG written
    source: str  # the file's name in the images folder
    reasons: tuple[str, ...]


@dataclass
class SplitResult:
    rows: list[ManifestRow]
    rejects: list[Reject] = field(default_factory=list)
    converted: list[Conversion] = field(default_factory=list)
    images: int = 0  # image files found
    unused: int = 0  # never opened: each class had enough valid images before them

    def metrics(self) -> dict:
        return {
            "images": self.images,
            "split": len(self.rows),
            "copied": len(self.rows) - len(self.converted),
            "converted": len(self.converted),
            "rejected": len(self.rejects),
            "unused": self.unused,
            "rejected_by_reason": dict(sorted(Counter(r.reason for r in self.rejects).items())),
            "converted_by_reason": dict(sorted(Counter(k for c in self.converted for k in c.reasons).items())),
        }


def index_images(images_dir: Path) -> tuple[dict[str, list[Path]], list[Reject]]:
    """Image files per class (the name's prefix), ordered by numeric index (cat.2 before cat.10).

    A second file with the same class and index (cat.3.jpg and cat.3.png, or cat.03.jpg) is rejected: it is
    ambiguous, and a converted cat.3.jpg would overwrite cat.3.png.
    """
    by_class: dict[str, list[tuple[int, str, Path]]] = defaultdict(list)
    for path in images_dir.iterdir():
        match = IMAGE_NAME.match(path.name)
        if match and (path.is_file() or path.is_symlink()):
            by_class[match["cls"]].append((int(match["index"]), path.name, path))
    check_class_names(sorted(by_class))
    result: dict[str, list[Path]] = {}
    rejects = []
    for cls, items in by_class.items():
        first: dict[int, str] = {}
        result[cls] = []
        for index, name, path in sorted(items):
            if index in first:
                rejects.append(Reject(name, "duplicate", f"{cls} number {index} is also {first[index]}"))
            else:
                first[index] = name
                result[cls].append(path)
    return result, rejects


def check_class_names(classes: list[str]) -> None:
    """Classes become folder names: refuse two that only a case-sensitive file system tells apart."""
    folded: dict[str, str] = {}
    for cls in classes:
        if cls.lower() in folded:
            raise SplitError(
                f"Classes {folded[cls.lower()]!r} and {cls!r} differ only in case; on macOS or Windows they "
                "would share one folder. Rename the files so each class has one spelling."
            )
        folded[cls.lower()] = cls


def check_counts(found: dict[str, int], sizes: dict[str, int], rejects: list[Reject] | None = None) -> None:
    """Before the gate, `found` counts files; after it (`rejects` given), valid images."""
    need = sum(sizes.values())
    short = {cls: n for cls, n in found.items() if n < need}
    if not found:
        raise SplitError("No images to split.")
    if not short:
        return
    kind = "images" if rejects is None else "valid images"
    message = (
        f"Too few {kind} for the split sizes {sizes} ({need} per class): "
        + ", ".join(f"{cls} has {n}" for cls, n in sorted(short.items()))
        + ". Lower split.train/validation/test in params.yaml."
    )
    if rejects:
        shown = "; ".join(f"{r.path}: {r.note}" for r in rejects[:5])
        message += (
            f" Only valid images count; {len(rejects)} were rejected ({shown}{'; ...' if len(rejects) > 5 else ''})."
        )
    raise SplitError(message)


def ordered(files: list[Path], config: SplitConfig, cls: str) -> list[Path]:
    files = list(files)
    if config.shuffle:
        random.Random(f"{config.seed}:{cls}").shuffle(files)
    return files


def split_of(position: int, sizes: dict[str, int]) -> str:
    """The split of the class's `position`-th valid image: train first, then validation, then test."""
    for name in SPLITS:
        if position < sizes[name]:
            return name
        position -= sizes[name]
    raise IndexError(position)


def fill(by_class: dict[str, list[Path]], config: SplitConfig, out_dir: Path, rejects: list[Reject]) -> SplitResult:
    """Open each class's images in order, writing valid ones into out_dir/<split>/<class>/ until all are full.

    Only as many images as are still needed are opened at a time, so images past the split sizes are never read.
    """
    sizes = config.sizes()
    need = sum(sizes.values())
    placed: dict[tuple[str, str], list[ManifestRow]] = defaultdict(list)
    converted, valid, unused = [], {}, 0
    made: set[Path] = set()
    check = partial(check_file, max_pixels=config.max_pixels)
    with pillow_limits(config.max_pixels), ThreadPoolExecutor(WORKERS) as pool:
        for cls in sorted(by_class):
            files, position, count = ordered(by_class[cls], config, cls), 0, 0
            while count < need and position < len(files):
                batch = files[position : position + need - count]
                position += len(batch)
                for src, checked in zip(batch, pool.map(check, batch), strict=True):
                    if checked.action == "reject":
                        rejects.append(Reject(src.name, checked.reasons[0], checked.detail))
                        continue
                    split_name = split_of(count, sizes)
                    name = src.name if checked.action == "copy" else f"{src.stem}.png"
                    folder = out_dir / split_name / cls
                    if folder not in made:
                        folder.mkdir(parents=True, exist_ok=True)
                        made.add(folder)
                    (folder / name).write_bytes(checked.data)
                    row = ManifestRow(f"{split_name}/{cls}/{name}", cls, split_name, checked.sha256)
                    placed[split_name, cls].append(row)
                    count += 1
                    if checked.action == "convert":
                        converted.append(Conversion(row.path, src.name, checked.reasons))
            valid[cls] = count
            unused += len(files) - position
    rejects.sort(key=lambda r: natural_key(r.path))
    check_counts(valid, sizes, rejects)
    rows = [row for split_name in SPLITS for cls in sorted(by_class) for row in placed[split_name, cls]]
    return SplitResult(rows, rejects, converted, unused=unused)


def natural_key(name: str) -> tuple:
    match = IMAGE_NAME.match(name)
    return (match["cls"], int(match["index"]), name) if match else (name, 0, name)


def write_split(result: SplitResult, out_dir: Path) -> None:
    write_manifest(result.rows, out_dir / "manifest.csv")
    write_csv(out_dir / "rejects.csv", REJECTS_FIELDS, ((r.path, r.note) for r in result.rejects))
    write_csv(
        out_dir / "converted.csv",
        CONVERTED_FIELDS,
        ((c.path, c.source, "; ".join(c.reasons)) for c in result.converted),
    )


def write_metrics(result: SplitResult, path: Path) -> None:
    """The split stage's counts (images, copied, converted and rejected by reason) for `dvc metrics show`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.metrics(), indent=2) + "\n")


def split(images_dir: Path, out_dir: Path, config: SplitConfig) -> SplitResult:
    """Split, convert and reject into a staging folder that replaces out_dir only once complete."""
    if not images_dir.is_dir():
        raise SplitError(f"Images folder not found: {images_dir}. Run the extract stage first.")
    by_class, rejects = index_images(images_dir)
    images = sum(map(len, by_class.values())) + len(rejects)  # rejects so far: the duplicates
    check_counts({cls: len(files) for cls, files in by_class.items()}, config.sizes())
    with staged_folder(out_dir) as staging:
        result = fill(by_class, config, staging, rejects)
        result.images = images
        write_split(result, staging)
    return result
