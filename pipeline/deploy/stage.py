"""Stage export: write one backbone x head as model.keras (plus TFLite and ONNX when asked) and model.json
(class names, recipe, image gate, files), then check each format against `predict`'s probabilities."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.core.atomic import atomic_file, staged_folder
from pipeline.core.config import BackboneConfig
from pipeline.core.errors import InputError
from pipeline.deploy.formats import (
    FILES,
    RUNNERS,
    converter_output_captured,
    decode,
    inference_saved_model,
    to_onnx,
    to_tflite,
)
from pipeline.deploy.graph import export_model
from pipeline.images.gate import check_file, pillow_limits

METADATA = "model.json"
CHECK = "check.json"
# Largest |probability - predict's| accepted per format (the check's `ok`); tests/test_export.py holds them.
TOLERANCES = {"keras": 1e-4, "tflite": 1e-4, "onnx": 1e-4, "tflite-dynamic-range": 0.25}


@dataclass(frozen=True)
class FormatCheck:
    """One format on one split: its agreement with predict, accuracy, file size and speed."""

    format: str
    file: str
    bytes: int
    images: int
    accuracy: float
    max_abs_diff: float  # the largest |probability - predict's probability| over every image and class
    top1_agreement: float  # the fraction of images whose most probable class is predict's
    tolerance: float
    ms_per_image: float  # median over the images, one image a call, after a warm-up call; decode excluded

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def export(
    store_path: Path,
    backbone_config: BackboneConfig,
    head: str,
    head_dir: Path,
    out_dir: Path,
    tflite: bool = False,
    onnx: bool = False,
    max_pixels: int = 50_000_000,
) -> dict:
    """Write the export folder (replacing it whole, or not at all); returns its metadata (model.json)."""
    model, recipe, classes = export_model(store_path, backbone_config, head, head_dir)
    files: dict[str, str] = {}
    select_ops = False
    with staged_folder(out_dir) as staging:
        model.save(staging / FILES["keras"])
        files["keras"] = FILES["keras"]
        with converter_output_captured():
            if tflite:
                saved_model = inference_saved_model(model, staging / "saved_model")
                for name, quantize in (("tflite", False), ("tflite-dynamic-range", True)):
                    data, needs_select = to_tflite(saved_model, quantize)
                    (staging / FILES[name]).write_bytes(data)
                    files[name], select_ops = FILES[name], select_ops or needs_select
                shutil.rmtree(saved_model)
            if onnx:
                (staging / FILES["onnx"]).write_bytes(to_onnx(model))
                files["onnx"] = FILES["onnx"]
        metadata = {
            "name": model.name,
            "backbone": recipe.backbone,
            "head": head,
            "classes": classes,
            "input": {"name": "image", "dtype": "uint8", "shape": [None, None, None, 3], "channels": "RGB"},
            "output": {"name": "probabilities", "dtype": "float32", "shape": [None, len(classes)]},
            "recipe": recipe.as_dict(),
            "image_gate": {"max_pixels": max_pixels},
            "files": {name: {"file": file, "bytes": (staging / file).stat().st_size} for name, file in files.items()},
            "tflite_select_tf_ops": select_ops,
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        }
        (staging / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def read_metadata(out_dir: Path) -> dict:
    path = out_dir / METADATA
    if not path.is_file():
        raise InputError(f"No exported model in {out_dir}: {METADATA} is missing. Run `python -m pipeline export`.")
    return json.loads(path.read_text())


def gated_images(paths: list[Path], max_pixels: int) -> list[np.ndarray]:
    """Each file through the split's image gate, then decoded (uint8 RGB); a rejected file is an error."""
    images = []
    with pillow_limits(max_pixels):
        for path in paths:
            checked = check_file(path, max_pixels)
            if checked.action == "reject":
                raise InputError(f"{path}: the image gate rejects it ({checked.note}).")
            images.append(decode(checked.data))
    return images


def check_format(
    name: str, out_dir: Path, images: list[np.ndarray], labels: np.ndarray, reference: np.ndarray
) -> FormatCheck:
    """Run one format over the images, one a call, and compare with predict's probabilities."""
    file = read_metadata(out_dir)["files"][name]["file"]
    run = RUNNERS[name](out_dir / file)
    run(images[0][None])  # warm-up: tracing, tensor allocation
    rows, seconds = [], []
    for image in images:
        start = time.perf_counter()
        rows.append(run(image[None])[0])
        seconds.append(time.perf_counter() - start)
    probabilities = np.asarray(rows, np.float64)
    return FormatCheck(
        format=name,
        file=file,
        bytes=(out_dir / file).stat().st_size,
        images=len(images),
        accuracy=float((probabilities.argmax(1) == labels).mean()),
        max_abs_diff=float(np.abs(probabilities - reference).max()),
        top1_agreement=float((probabilities.argmax(1) == reference.argmax(1)).mean()),
        tolerance=TOLERANCES[name],
        ms_per_image=float(np.median(seconds) * 1000),
    )


def check(out_dir: Path, paths: list[Path], labels: np.ndarray, reference: np.ndarray, split: str) -> list[FormatCheck]:
    """Every exported format against `predict`'s probabilities for the same files; writes check.json."""
    metadata = read_metadata(out_dir)
    images = gated_images(paths, metadata["image_gate"]["max_pixels"])
    results = [check_format(name, out_dir, images, labels, reference) for name in metadata["files"]]
    predict_accuracy = float((reference.argmax(1) == labels).mean())
    report = {
        "split": split,
        "images": len(paths),
        "predict_accuracy": predict_accuracy,
        "formats": [{**asdict(r), "ok": r.ok} for r in results],
    }
    (out_dir / CHECK).write_text(json.dumps(report, indent=2) + "\n")
    return results


def write_check_metrics(path: Path, results: list[FormatCheck], predict_accuracy: float, split: str) -> None:
    """The check as DVC metrics: one flat group of figures per format, so `dvc metrics show` is one row."""
    metrics: dict = {"split": split, "images": results[0].images, "predict_accuracy": predict_accuracy}
    for r in results:
        metrics[r.format] = {
            "accuracy": r.accuracy,
            "max_abs_diff": r.max_abs_diff,
            "top1_agreement": r.top1_agreement,
            "within_tolerance": r.ok,
            "megabytes": round(r.bytes / 1e6, 3),
            "ms_per_image": round(r.ms_per_image, 2),
        }
    with atomic_file(path) as partial:
        partial.write_text(json.dumps(metrics, indent=2) + "\n")


def render_checks(results: list[FormatCheck], predict_accuracy: float) -> str:
    """The check as an aligned table: format, size, accuracy, agreement with predict, latency, verdict."""
    header = ["format", "size", "accuracy", "max |diff|", "top-1 agree", "ms/image", "within"]
    rows = [["predict", "-", f"{predict_accuracy:.4f}", "-", "-", "-", "-"]] + [
        [
            r.format,
            f"{r.bytes / 1e6:.2f} MB",
            f"{r.accuracy:.4f}",
            f"{r.max_abs_diff:.1e}",
            f"{r.top1_agreement:.4f}",
            f"{r.ms_per_image:.1f}",
            f"{'yes' if r.ok else 'NO'} ({r.tolerance:g})",
        ]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)
