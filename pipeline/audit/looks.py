"""Image-property checks: what a person sees in a thumbnail before any feature, with cleanlab's CleanVision.

Each image is decoded once, at reduced size (a JPEG by its DCT at 1/2, 1/4 or 1/8 scale), to `THUMB` (64) pixels
on its longer side, the size at which CleanVision measures blur, in worker processes; CleanVision's own property
calculations run on that thumbnail (brightness and entropy too: a 64-px image has the same histogram shape as the
full one, at a fraction of the cost), and CleanVision's scores and default thresholds (all but low_information's)
decide the issues:

- low_information: PIL's histogram entropy x 0.1 below `audit.low_information` (0.5: under 5 bits; CleanVision's
  default 0.3 misses logos, banners and placeholders whose anti-aliased text and JPEG noise bring them 3.3-4.6 bits,
  while no photo of the 4,000-image sample has less than 5.2)
- light: 1 - the 5th percentile of pixel brightness below 0.05 (nearly every pixel close to white)
- dark: the 99th percentile of pixel brightness below 0.32
- blurry: edge strength of the grayscale image at 64 px (with a penalty for a flat histogram) below 0.29
- odd_aspect_ratio: min(w/h, h/w) below 0.35 (from the full-size image)
- odd_size: sqrt(w * h) outside Q1 - 3 IQR .. Q3 + 3 IQR of the split's images (from the full-size image)
- grayscale: a single-channel image, or (beyond CleanVision, which reads only the mode) an RGB one whose channels
  differ by at most GRAY_TOLERANCE anywhere in the thumbnail: a converted grayscale file

Brightness is CleanVision's perceived brightness sqrt(0.241 R^2 + 0.691 G^2 + 0.068 B^2) / 255. Only property
values travel back from the workers, so memory does not grow with the number of images.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.audit.find import Issue

THUMB = 64  # CleanVision measures blur with the longer side at 64 px; every property is measured there
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
GRAY_TOLERANCE = 8  # 0..255: an RGB image whose channels never differ by more is grayscale
CHUNK = 256  # images per task sent to a worker
COLUMNS = (
    "width",
    "height",
    "entropy",
    "brightness_perc_5",
    "brightness_perc_99",
    "blurriness",
    "blurriness_grayscale_std",
    "gray",
)


def decode_small(path: Path) -> tuple[Image.Image, tuple[int, int]]:
    """The image with its longer side at most THUMB pixels (a JPEG decoded by its DCT at reduced scale first)
    and its full size."""
    with Image.open(path) as image:
        size = image.size
        image.draft(None, (max(1, size[0] * THUMB // max(size)), max(1, size[1] * THUMB // max(size))))
        small = image.convert("L" if image.mode in GRAY_MODES else "RGB")
    small.thumbnail((THUMB, THUMB), Image.Resampling.BICUBIC)
    return small, size


def properties(path: Path) -> tuple[float, ...]:
    """One image's values, in COLUMNS order: CleanVision's calculations on the reduced image."""
    from cleanvision.issue_managers.image_property import (
        BlurrinessProperty,
        EntropyProperty,
        calc_percentile_brightness,
    )

    small, (width, height) = decode_small(path)
    perc_5, perc_99 = calc_percentile_brightness(small, [5, 99])  # the two of BrightnessProperty's the checks read
    blur = BlurrinessProperty().calculate(small)
    entropy = EntropyProperty().calculate(small)["entropy"]
    pixels = np.asarray(small, dtype=np.int16)
    gray = pixels.ndim == 2 or int(np.abs(np.diff(pixels, axis=2)).max()) <= GRAY_TOLERANCE
    return (
        float(width),
        float(height),
        float(entropy),
        float(perc_5),
        float(perc_99),
        float(blur["blurriness"]),
        float(blur["blurriness_grayscale_std"]),
        float(gray),
    )


def properties_of(paths: list[Path]) -> list[tuple[float, ...]]:
    return [properties(path) for path in paths]


def chunks(items: list[Path], size: int) -> Iterable[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def measure(paths: list[Path], workers: int = 0, done: Callable[[int], None] | None = None) -> np.ndarray:
    """(N, len(COLUMNS)) property values; `workers` processes (0: one per CPU), in order; `done(n)` after each
    task of n images."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(paths) <= CHUNK:
        parts = map(properties_of, chunks(paths, CHUNK))
        return collect(parts, len(paths), done)
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        return collect(pool.map(properties_of, chunks(paths, CHUNK)), len(paths), done)


def collect(parts: Iterable[list[tuple[float, ...]]], count: int, done: Callable[[int], None] | None) -> np.ndarray:
    rows: list[tuple[float, ...]] = []
    for part in parts:
        rows += part
        if done is not None:
            done(len(part))
    return np.array(rows, dtype=np.float64).reshape(count, len(COLUMNS))


def cleanvision_scores(values: np.ndarray, low_information: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{issue type: (CleanVision's score, lower is worse; is it an issue)} with CleanVision's default params but
    `low_information`, the threshold of its entropy score."""
    import pandas as pd
    from cleanvision.issue_managers.image_property import (
        BlurrinessProperty,
        BrightnessProperty,
        EntropyProperty,
        SizeProperty,
    )
    from cleanvision.issue_managers.image_property_issue_manager import ImagePropertyIssueManager

    params = ImagePropertyIssueManager().get_default_params()
    params["low_information"]["threshold"] = low_information
    frame = pd.DataFrame(values, columns=list(COLUMNS))
    frame["aspect_ratio"] = np.minimum(frame.width / frame.height, frame.height / frame.width)
    frame["size"] = np.sqrt(frame.width) * np.sqrt(frame.height)
    checks = {
        "low_information": EntropyProperty(),
        "light": BrightnessProperty("light"),
        "dark": BrightnessProperty("dark"),
        "blurry": BlurrinessProperty(),
        "odd_size": SizeProperty(),
    }
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for kind, check in checks.items():
        kind_params = dict(params[kind])
        threshold = kind_params.pop("threshold", None)
        scores = check.get_scores(frame[check.score_columns], kind, **kind_params)
        flagged = check.mark_issue(scores, kind, threshold=threshold)
        results[kind] = (scores.iloc[:, 0].to_numpy(dtype=np.float64), flagged.iloc[:, 0].to_numpy(dtype=bool))
    aspect = frame["aspect_ratio"].to_numpy()
    results["odd_aspect_ratio"] = (aspect, aspect < params["odd_aspect_ratio"]["threshold"])
    gray = frame["gray"].to_numpy() > 0
    results["grayscale"] = ((~gray).astype(np.float64), gray)
    return results


def image_issues(values: np.ndarray, types: tuple[str, ...], low_information: float) -> list[Issue]:
    """Issues of the requested image-property types; score = 1 - CleanVision's score (higher is surer)."""
    found = []
    for kind, (scores, flagged) in cleanvision_scores(values, low_information).items():
        if kind in types:
            found += [
                Issue(int(row), kind, float(np.clip(1.0 - scores[row], 0.0, 1.0))) for row in np.flatnonzero(flagged)
            ]
    return found
