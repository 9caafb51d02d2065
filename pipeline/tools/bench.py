"""`python -m pipeline bench`: the book's extraction loop vs this project's featurize, on the same images.

(a) the book's way: PIL load + resize per image, a numpy batch, `conv_base.predict` per batch, fp32;
(b) featurize end to end (decode -> conv base -> HDF5 chunks and index on disk) in a child process, so its
    peak resident memory is measured too; and its steady state, after the first batch (building the model and
    tracing its graph excluded, as (a) excludes its warm-up), from the line featurize prints. Also the model's
    FLOPs per image and this machine's GEMM rate, so the achieved GFLOP/s shows as a fraction of the roofline.
"""

from __future__ import annotations

import hashlib
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import yaml
from PIL import Image

from pipeline.backbones import get_backbone
from pipeline.backbones.registry import resolve_precision
from pipeline.core.config import SplitConfig
from pipeline.stages.extract import extract
from pipeline.stages.split import index_images, split
from pipeline.store.index import FeatureStore
from pipeline.store.manifest import read_manifest


@dataclass(frozen=True)
class Timing:
    images: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def model_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of the convolutions and dense layers for one image."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            _, h, w, c = layer.output.shape
            total += 2 * kh * kw * h * w * c
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1] // layer.groups
            _, h, w, cout = layer.output.shape
            total += 2 * kh * kw * cin * h * w * cout
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def gemm_gflops(dtype: tf.DType, n: int = 2048, seconds: float = 2.0) -> float:
    """This machine's sustained matrix-multiply rate for one dtype, in GFLOP/s."""
    a = tf.random.uniform((n, n), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    matmul(a, b).numpy()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        matmul(a, b).numpy()
        runs += 1
    return 2 * n**3 * runs / (time.perf_counter() - start) / 1e9


def seed_loop(backbone: str, paths: list[Path], size: int, batch_size: int = 20) -> Timing:
    """The book's extraction: per-image PIL load and nearest resize, numpy batches, predict, float32."""
    spec = get_backbone(backbone)
    model = spec.conv_base(size, spec.resolve_weights("none"), "float32")
    model.predict(np.zeros((batch_size, size, size, 3), np.float32), verbose=0)
    start = time.perf_counter()
    for i in range(0, len(paths), batch_size):
        batch = np.stack(
            [
                np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.NEAREST), dtype=np.float32)
                for p in paths[i : i + batch_size]
            ]
        )
        model.predict(np.asarray(spec.preprocess(batch)), verbose=0)
    return Timing(len(paths), time.perf_counter() - start)


def prepare_images(source: Path, per_class: int, repeat: int, folder: Path) -> Path:
    """Extract `per_class` images of each class (repeated under new names) and split them all into train."""
    images = folder / "images"
    extract(source, images)
    by_class, _ = index_images(images)  # any layout: cat.0.jpg, or cat/IMG_0001.jpg
    for cls, paths in by_class.items():
        keep, drop = paths[:per_class], paths[per_class:]
        for extra in drop:
            extra.unlink()
        for copy in range(1, repeat):  # same pixels, new names and new content hashes
            for i, path in enumerate(keep):
                data = path.read_bytes() + copy.to_bytes(4, "little")  # trailing bytes JPEG decoders ignore
                flat = path.parent == images
                name = f"{cls}.{copy * len(paths) + i}{path.suffix}" if flat else f"copy{copy}_{path.name}"
                (path.parent / name).write_bytes(data)
    split(images, folder / "split", SplitConfig(train=per_class * repeat, validation=0, test=0))
    return folder / "split" / "manifest.csv"


def project_featurize(
    backbone: str, manifest: Path, size: int, precision: str, batch_size: int
) -> tuple[Timing, Timing | None, int]:
    """featurize in a child process: (its end-to-end throughput to disk, start-up included; its steady state after
    the first batch, as it prints it on stderr; peak RSS in bytes)."""
    root = manifest.parent.parent
    params = {
        "paths": {"split": str(manifest.parent), "features": str(root / "features")},
        "featurize": {"backbones": [backbone], "precision": precision, "batch_size": batch_size},
        "backbones": {backbone: {"weights": "none", "input_size": size}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "featurize", backbone, "--params", str(root / "params.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"featurize failed:\n{result.stdout}\n{result.stderr[-2000:]}")
    match = re.search(r"computed (\d+) of \d+ images in ([\d.]+) s", result.stdout)
    steady = re.search(r"steady state [\d.]+ img/s after the first update \((\d+) img in ([\d.]+) s\)", result.stderr)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return Timing(int(match[1]), float(match[2])), steady and Timing(int(steady[1]), float(steady[2])), peak_kib * 1024


def bench(
    backbone: str,
    source: Path,
    per_class: int,
    size: int,
    precision: str,
    seed_images: int,
    repeat: int,
    batch_size: int,
) -> list[str]:
    """Run both paths on the same images and return the report's lines."""
    spec = get_backbone(backbone)
    precision = resolve_precision(precision)
    flops = model_flops(spec.conv_base(size, spec.resolve_weights("none")))
    lines = [f"backbone {backbone} at {size} px: {flops / 1e9:.2f} GFLOP per image (random weights: same cost)"]
    rates = {"float32": gemm_gflops(tf.float32), "bfloat16": gemm_gflops(tf.bfloat16)}
    lines.append(f"GEMM 2048^3: float32 {rates['float32']:.0f} GFLOP/s, bfloat16 {rates['bfloat16']:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = prepare_images(source, per_class, repeat, Path(tmp))
        paths = [manifest.parent / row.path for row in read_manifest(manifest)]
        seed = seed_loop(backbone, paths[:seed_images], size) if seed_images else None
        ours, steady, peak = project_featurize(backbone, manifest, size, precision, batch_size)
        same = same_images(paths[:seed_images], manifest.parent.parent / "features" / f"{backbone}.h5")
    if seed:
        lines.append(row("(a) the book's loop, float32", seed, flops, rates["float32"]))
    roof = rates.get(precision, rates["float32"])
    lines.append(row(f"(b) featurize, {precision}, end to end (start-up included)", ours, flops, roof))
    if steady:
        lines.append(row(f"(b) featurize, {precision}, steady state (after the first batch)", steady, flops, roof))
    if seed:
        lines.append(f"speed-up (b)/(a): {ours.rate / seed.rate:.2f}x end to end")
        if steady:
            lines.append(
                f"speed-up (b)/(a): {steady.rate / seed.rate:.2f}x steady state (the loop excludes its warm-up)"
            )
    lines.append(f"featurize peak resident memory: {peak / 2**30:.2f} GiB for {ours.images} images")
    lines.append(same)
    return lines


def same_images(seed_paths: list[Path], store: Path) -> str:
    """Check that the book's loop read the first of the images featurize stored, byte for byte (the store's keys
    are the files' sha256), and say so; a RuntimeError otherwise: the two rates would not be comparable."""
    rows = FeatureStore(store).split_rows("train")
    keys, ids = rows.keys, rows.ids
    read = [(f"{p.parent.parent.name}/{p.parent.name}/{p.name}", sha256_of(p)) for p in seed_paths]
    if read != list(zip(ids, keys, strict=True))[: len(read)]:
        raise RuntimeError(f"the book's loop read other images than the first {len(read)} featurize stored in {store}")
    return f"same images: the book's loop read {len(read)}, the first {len(read)} of featurize's {len(ids)} (sha256)"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def row(label: str, timing: Timing, flops: int, roof: float) -> str:
    achieved = timing.rate * flops / 1e9
    return (
        f"{label}: {timing.images} images in {timing.seconds:.1f} s = {timing.rate:.1f} img/s, "
        f"{achieved:.0f} GFLOP/s ({100 * achieved / roof:.0f}% of the GEMM rate)"
    )
