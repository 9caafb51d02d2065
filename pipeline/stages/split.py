"""Stage split: per class, in natural order (or a seeded shuffle), the first N valid images train / next M
validation / next K test; N, M, K are counts per class or fractions of its valid images.

Every image is decoded on the way (pipeline/images/gate.py): plain JPEGs are copied, anything else that decodes is
converted to an RGB PNG, and the rest is rejected into rejects.csv instead of taking a place in the split.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pipeline.core.atomic import staged_folder
from pipeline.core.config import SPLITS, SplitConfig
from pipeline.core.errors import SplitError
from pipeline.images.gate import check_file, pillow_limits
from pipeline.reporting.progress import Progress
from pipeline.store.manifest import (
    CLASS_NAME,
    IMAGE_NAME,
    ManifestRow,
    is_image_file_name,
    natural_key,
    write_csv,
    write_manifest,
)

REJECTS_FIELDS = ("path", "reason")
CONVERTED_FIELDS = ("path", "source", "conversion")
WORKERS = min(8, os.cpu_count() or 1)
PROGRESS_FROM = 2000  # images to gate from which split shows its progress


@dataclass(frozen=True)
class Reject:
    path: str  # the file's name in the images folder (cat.0.jpg, or cat/img_1.jpg)
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
    """Image files per class, in natural order (cat.2 before cat.10, img_9 before img_10).

    Classes come from the name's prefix for files directly in `images_dir` (`cat.0.jpg`, the kaggle layout)
    and from the folder for files in a subfolder (`cat/img_0001.jpg`, the folders layout). A second file of
    a class with the same stem (a.jpg and a.png: a converted a.jpg would overwrite a.png) or, in kaggle names,
    the same number (cat.3.jpg and cat.03.jpg) is rejected as ambiguous.
    """
    by_class: dict[str, list[Path]] = defaultdict(list)
    for path in images_dir.iterdir():
        match = IMAGE_NAME.match(path.name)
        if match and (path.is_file() or path.is_symlink()):
            by_class[match["cls"]].append(path)
        elif path.is_dir() and not path.is_symlink():
            check_class_folder(path)
            by_class[path.name].extend(p for p in path.iterdir() if is_image_file_name(p.name))
    check_class_names(sorted(by_class))
    result: dict[str, list[Path]] = {}
    rejects = []
    for cls, paths in by_class.items():
        first: dict[tuple, str] = {}
        result[cls] = []
        for path in sorted(paths, key=lambda p: natural_key(p.name)):
            name = relative_name(path, images_dir)
            keys = duplicate_keys(path.name)
            clash = next((first[key] for key in keys if key in first), None)
            if clash:
                rejects.append(Reject(name, "duplicate", f"{cls} {describe_key(path.name)} is also {clash}"))
            else:
                first.update(dict.fromkeys(keys, name))
                result[cls].append(path)
    return result, rejects


def check_class_folder(folder: Path) -> None:
    if not CLASS_NAME.match(folder.name):
        raise SplitError(
            f"Class folder {folder}: class names must be ASCII letters, digits, _ and -, starting with a letter."
        )


def relative_name(path: Path, images_dir: Path) -> str:
    """The file's name in the images folder: cat.0.jpg, or cat/img_0001.jpg."""
    return path.relative_to(images_dir).as_posix()


def duplicate_keys(name: str) -> tuple[tuple, ...]:
    stem = name.rsplit(".", 1)[0].casefold()
    match = IMAGE_NAME.match(name)
    return (("stem", stem), ("number", int(match["index"]))) if match else (("stem", stem),)


def describe_key(name: str) -> str:
    match = IMAGE_NAME.match(name)
    return f"number {int(match['index'])}" if match else f"name {name.rsplit('.', 1)[0]!r}"


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


def uses_fractions(config: SplitConfig) -> bool:
    return isinstance(config.train, float)  # the schema (SplitConfig): all nonzero sizes are of train's kind


def class_sizes(config: SplitConfig, valid: int) -> dict[str, int]:
    """Images of each split for a class with `valid` images: the counts, or the fractions rounded cumulatively."""
    sizes = config.sizes()
    if not uses_fractions(config):
        return {name: int(value) for name, value in sizes.items()}
    bounds, total = [0], 0.0
    for name in SPLITS:
        total += sizes[name]
        bounds.append(round(total * valid))
    return {name: bounds[i + 1] - bounds[i] for i, name in enumerate(SPLITS)}


def check_counts(found: dict[str, int], config: SplitConfig, rejects: list[Reject] | None = None) -> None:
    """Before the gate, `found` counts files; after it (`rejects` given), valid images. Lists every class."""
    if not found:
        raise SplitError("No images to split.")
    asked = [name for name, value in config.sizes().items() if value > 0]
    short = {cls for cls, n in found.items() if min(class_sizes(config, n)[name] for name in asked) < 1}
    if not uses_fractions(config):
        short |= {cls for cls, n in found.items() if n < sum(class_sizes(config, n).values())}
    if not short:
        return
    kind = "images" if rejects is None else "valid images"
    sizes = config.sizes()
    need = f"{sum(sizes.values())} per class" if not uses_fractions(config) else "at least one image per split"
    message = (
        f"Too few {kind} for the split sizes {sizes} ({need}): "
        + ", ".join(f"{cls} has {n}{' (too few)' if cls in short else ''}" for cls, n in sorted(found.items()))
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


def split_of(position: int, sizes: dict[str, int]) -> str | None:
    """The split of the class's `position`-th valid image: train first, then validation, then test; None: unused."""
    for name in SPLITS:
        if position < sizes[name]:
            return name
        position -= sizes[name]
    return None


@dataclass(frozen=True)
class Gated:
    """A valid image written under the staging folder's pending area, waiting for its split."""

    pending: Path
    name: str
    sha256: str
    conversion: tuple[str, ...] | None  # the reasons, when the image was converted
    source: str


def gate_class(
    files: list[Path],
    need: int,
    check,
    pool: ThreadPoolExecutor,
    pending: Path,
    images_dir: Path,
    progress: Progress | None = None,
) -> tuple[list[Gated], list[Reject], int]:
    """Open the class's files in order until `need` are valid, writing each valid one under `pending`."""
    gated: list[Gated] = []
    rejects: list[Reject] = []
    position = 0
    pending.mkdir(parents=True, exist_ok=True)
    while len(gated) < need and position < len(files):
        batch = files[position : position + need - len(gated)]
        position += len(batch)
        for src, checked in zip(batch, pool.map(check, batch), strict=True):
            if progress is not None:
                progress.update()
            source = relative_name(src, images_dir)
            if checked.action == "reject":
                rejects.append(Reject(source, checked.reasons[0], checked.detail))
                continue
            name = src.name if checked.action == "copy" else f"{src.stem}.png"
            (pending / name).write_bytes(checked.data)
            conversion = checked.reasons if checked.action == "convert" else None
            gated.append(Gated(pending / name, name, checked.sha256, conversion, source))
    return gated, rejects, len(files) - position


def fill(
    by_class: dict[str, list[Path]], config: SplitConfig, out_dir: Path, rejects: list[Reject], images_dir: Path
) -> SplitResult:
    """Gate each class's images in order, then place the valid ones into out_dir/<split>/<class>/.

    With counts, only as many images as are still needed are opened, so images past the split sizes are never
    read; with fractions, every image of the class is (the sizes depend on how many are valid).
    """
    placed: dict[tuple[str, str], list[ManifestRow]] = defaultdict(list)
    converted, valid, unused = [], {}, 0
    pending_root = out_dir / ".pending"
    check = partial(check_file, max_pixels=config.max_pixels)
    counted = sum(class_sizes(config, 0).values())
    total = sum(len(files) if uses_fractions(config) else min(len(files), counted) for files in by_class.values())
    progress = Progress(total, "split", "images", enabled=total >= PROGRESS_FROM)
    with pillow_limits(config.max_pixels), ThreadPoolExecutor(WORKERS) as pool, progress:
        for cls in sorted(by_class):
            files = ordered(by_class[cls], config, cls)
            need = len(files) if uses_fractions(config) else counted
            gated, class_rejects, skipped = gate_class(
                files, need, check, pool, pending_root / cls, images_dir, progress
            )
            rejects.extend(class_rejects)
            valid[cls] = len(gated)
            unused += skipped
            sizes = class_sizes(config, len(gated))
            for position, item in enumerate(gated):
                split_name = split_of(position, sizes)
                if split_name is None:
                    unused += 1
                    continue
                folder = out_dir / split_name / cls
                folder.mkdir(parents=True, exist_ok=True)
                os.replace(item.pending, folder / item.name)
                row = ManifestRow(f"{split_name}/{cls}/{item.name}", cls, split_name, item.sha256)
                placed[split_name, cls].append(row)
                if item.conversion is not None:
                    converted.append(Conversion(row.path, item.source, item.conversion))
    shutil.rmtree(pending_root, ignore_errors=True)
    rejects.sort(key=lambda r: natural_key(r.path))
    check_counts(valid, config, rejects)
    rows = [row for split_name in SPLITS for cls in sorted(by_class) for row in placed[split_name, cls]]
    return SplitResult(rows, rejects, converted, unused=unused)


def write_split(result: SplitResult, out_dir: Path) -> None:
    write_manifest(result.rows, out_dir / "manifest.csv")
    write_csv(out_dir / "rejects.csv", REJECTS_FIELDS, ((r.path, r.note) for r in result.rejects))
    write_csv(
        out_dir / "converted.csv",
        CONVERTED_FIELDS,
        ((c.path, c.source, "; ".join(c.reasons)) for c in result.converted),
    )


HEADLINE_METRICS = ("images", "split", "rejected", "converted")  # `dvc metrics show`: one short row


def write_metrics(result: SplitResult, path: Path, counts_path: Path) -> None:
    """The headline counts (images found, split, rejected, converted) at `path`, for `dvc metrics show`, and
    every count (copied, unused, rejected and converted by reason) at `counts_path`, beside the split."""
    counts = result.metrics()
    for out, data in ((path, {k: counts[k] for k in HEADLINE_METRICS}), (counts_path, counts)):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2) + "\n")


def split(images_dir: Path, out_dir: Path, config: SplitConfig) -> SplitResult:
    """Split, convert and reject into a staging folder that replaces out_dir only once complete."""
    if not images_dir.is_dir():
        raise SplitError(f"Images folder not found: {images_dir}. Run the extract stage first.")
    if not isinstance(config.max_pixels, int) or isinstance(config.max_pixels, bool) or config.max_pixels < 1:
        raise SplitError(
            f"split.max_pixels must be a positive whole number. Received: max_pixels={config.max_pixels!r}"
        )
    by_class, rejects = index_images(images_dir)
    images = sum(map(len, by_class.values())) + len(rejects)  # rejects so far: the duplicates
    check_counts({cls: len(files) for cls, files in by_class.items()}, config)
    with staged_folder(out_dir) as staging:
        result = fill(by_class, config, staging, rejects, images_dir)
        result.images = images
        write_split(result, staging)
    return result
