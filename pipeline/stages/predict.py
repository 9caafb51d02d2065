"""Classify image files with a conv base and a trained head, made the way the feature store was made.

Inputs are files, folders (their image files, recursively, in natural order) and glob patterns. Every file
goes through the split stage's image gate (pipeline/images/gate.py) first: what the gate would reject (empty, not
an image, truncated, too large, ...) becomes a result with its reason instead of an error, and what it would
convert is classified from the converted PNG, exactly as the split stage would have stored it.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.compute.conv_base import conv_base_of_store
from pipeline.core.config import BackboneConfig
from pipeline.core.errors import InputError, StoreError
from pipeline.heads import load_head
from pipeline.images.decode import image_batches
from pipeline.images.gate import check_file, pillow_limits
from pipeline.store.manifest import IMAGE_EXTENSION, natural_key

FORMATS = ("table", "json", "csv")
BLOCK = 256  # images gated, decoded and classified at a time
GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class Prediction:
    image: Path
    label: str  # the most probable class; "" when the image could not be classified
    probability: float  # nan when it could not
    top: list[tuple[str, float]] = field(default_factory=list)  # the top-k classes, most probable first
    error: str = ""  # why the image could not be classified (the image gate's reason, "not found", ...)

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class Input:
    path: Path
    error: str = ""


def expand_inputs(arguments: list[str | Path]) -> list[Input]:
    """Files as given; folders as their image files (recursively, natural order); globs as their matches."""
    inputs: list[Input] = []
    for argument in map(str, arguments):
        path = Path(argument)
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.is_file() and IMAGE_EXTENSION.search(p.name)]
            found.sort(key=lambda p: natural_key(p.as_posix()))
            inputs += [Input(p) for p in found] or [Input(path, "no image files (.jpg, .png, ...) in this folder")]
        elif path.exists() or path.is_symlink() or not GLOB_CHARACTERS & set(argument):
            inputs.append(Input(path) if path.exists() or path.is_symlink() else Input(path, "not found"))
        else:
            matches = sorted(glob.glob(argument, recursive=True), key=natural_key)
            files = [Path(m) for m in matches if Path(m).is_file()]
            inputs += [Input(p) for p in files] or [Input(path, "no file matches this pattern")]
    return inputs


def predict(
    images: list[str | Path],
    store_path: Path,
    backbone_config: BackboneConfig,
    head: str,
    head_dir: Path,
    top_k: int = 1,
    max_pixels: int = 50_000_000,
) -> list[Prediction]:
    """The top-k classes of each image (files, folders, globs), or why it could not be classified."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"--top-k must be a positive whole number. Received: top_k={top_k!r}")
    inputs = expand_inputs(images)
    store, spec, base = conv_base_of_store(store_path, backbone_config)
    model = load_head(head, head_dir)
    classes = store.classes
    results: list[Prediction] = []
    for start in range(0, len(inputs), BLOCK):
        block = inputs[start : start + BLOCK]
        with tempfile.TemporaryDirectory(prefix="predict-") as scratch:
            gated = gate(block, Path(scratch), max_pixels)
            accepted = [(i, file) for i, (_, file, _) in enumerate(gated) if file is not None]
            probabilities = iter([])
            if accepted:
                size, resize = int(store.attrs["input_size"]), store.attrs["resize"]
                batches = image_batches([str(f) for _, f in accepted], size, resize, 32, spec.preprocess)
                features = np.concatenate([base.predict_on_batch(batch) for batch in batches])
                probabilities = iter(model.predict_proba(features))
            for item, file, error in gated:
                row = next(probabilities) if file is not None else None
                results.append(prediction(item.path, row, classes, top_k, error))
    return results


def gate(block: list[Input], scratch: Path, max_pixels: int) -> list[tuple[Input, Path | None, str]]:
    """Each input with the file to decode (what the split stage would store) or the reason it has none."""
    out: list[tuple[Input, Path | None, str]] = []
    with pillow_limits(max_pixels):
        for n, item in enumerate(block):
            if item.error:
                out.append((item, None, item.error))
                continue
            checked = check_file(item.path, max_pixels)
            if checked.action == "reject":
                out.append((item, None, checked.note))
                continue
            file = scratch / f"{n}{checked.suffix}"
            file.write_bytes(checked.data)
            out.append((item, file, ""))
    return out


def prediction(path: Path, row: np.ndarray | None, classes: list[str], top_k: int, error: str) -> Prediction:
    if row is None:
        return Prediction(path, "", float("nan"), [], error)
    order = np.argsort(-row, kind="stable")[: min(top_k, len(classes))]
    top = [(classes[int(i)], float(row[i])) for i in order]
    return Prediction(path, top[0][0], top[0][1], top)


def render(predictions: list[Prediction], fmt: str, top_k: int) -> str:
    """The predictions as an aligned table, JSON (a list of objects) or CSV (one row per image and rank)."""
    check_format(fmt)
    return {"table": render_table, "json": render_json, "csv": render_csv}[fmt](predictions, top_k)


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {FORMATS}. Received: format={fmt!r}")


def render_json(predictions: list[Prediction], top_k: int) -> str:
    rows = [
        {
            "image": str(p.image),
            "class": p.label or None,
            "probability": round(p.probability, 6) if p.ok else None,
            "top_k": [{"class": c, "probability": round(q, 6)} for c, q in p.top],
            "error": p.error or None,
        }
        for p in predictions
    ]
    return json.dumps(rows, indent=2)


def render_csv(predictions: list[Prediction], top_k: int) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("image", "rank", "class", "probability", "error"))
    for p in predictions:
        if not p.ok:
            writer.writerow((p.image, "", "", "", p.error))
        for rank, (cls, probability) in enumerate(p.top, start=1):
            writer.writerow((p.image, rank, cls, f"{probability:.4f}", ""))
    return buffer.getvalue().rstrip("\n")


def render_table(predictions: list[Prediction], top_k: int) -> str:
    header = ["image", "class", "probability"] + (["top-k"] if top_k > 1 else []) + ["error"]
    rows = [
        [str(p.image), p.label or "-", f"{p.probability:.4f}" if p.ok else "-"]
        + ([", ".join(f"{c} {q:.4f}" for c, q in p.top)] if top_k > 1 else [])
        + [p.error]
        for p in predictions
    ]
    if not any(p.error for p in predictions):
        header, rows = header[:-1], [row[:-1] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]
    )


def default_choice(kind: str, candidates: list[str], exists) -> str:
    """The first candidate (params order) whose output exists, e.g. the first backbone with a feature store."""
    for name in candidates:
        if exists(name):
            return name
    raise StoreError(f"No {kind} of {candidates} has been computed yet. Run `dvc repro`, or name one with --{kind}.")
