"""Figure helpers: tile mosaics, channel standardization, pattern deprocessing, titled PNGs (no pyplot state)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from pipeline.core.errors import InputError

DPI = 100
TILE_INCHES = 0.75  # one activation tile: 75 px at DPI 100
TITLE_POINTS = 12
PAD = 0.05  # inches around the image


def grid_shape(count: int, per_row: int) -> tuple[int, int]:
    """(rows, columns) of a grid holding `count` tiles, `per_row` to a row."""
    if count < 1 or per_row < 1:
        raise InputError(f"A grid needs at least one tile and one column. Received: count={count}, per_row={per_row}")
    return math.ceil(count / per_row), min(count, per_row)


def mosaic(tiles: np.ndarray, per_row: int, gap: int = 1, fill: float = np.nan) -> np.ndarray:
    """(n, h, w[, 3]) tiles -> one (rows*(h+gap)-gap, cols*(w+gap)-gap[, 3]) image, row-major, `fill` between."""
    count, height, width = tiles.shape[:3]
    rows, cols = grid_shape(count, per_row)
    dtype = np.result_type(tiles.dtype, np.asarray(fill).dtype)
    out = np.full((rows * (height + gap) - gap, cols * (width + gap) - gap, *tiles.shape[3:]), fill, dtype=dtype)
    for index, tile in enumerate(tiles):
        top, left = (index // per_row) * (height + gap), (index % per_row) * (width + gap)
        out[top : top + height, left : left + width] = tile
    return out


def standardize_channels(maps: np.ndarray) -> np.ndarray:
    """(h, w, c) activations -> (c, h, w), each channel to mean 0 and std 1 (a constant channel -> zeros)."""
    maps = np.moveaxis(np.asarray(maps, dtype=np.float64), -1, 0)
    mean = maps.mean(axis=(1, 2), keepdims=True)
    std = maps.std(axis=(1, 2), keepdims=True)
    return np.where(std > 1e-12, (maps - mean) / np.where(std > 1e-12, std, 1.0), 0.0).astype(np.float32)


def deprocess(pattern: np.ndarray) -> np.ndarray:
    """A float image of any range -> uint8 for display: centred on gray, std 0.1 of the range, clipped (the book's)."""
    x = np.asarray(pattern, dtype=np.float64)
    x = (x - x.mean()) / (x.std() + 1e-5) * 0.1 + 0.5
    return (np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def tile_figure(image: np.ndarray, title: str, width_inches: float, **imshow) -> Figure:
    """The title (wrapped to the width) above one image drawn `width_inches` wide; NaN pixels are white."""
    height_inches = width_inches * image.shape[0] / image.shape[1]
    title = fit_title(title, width_inches, TITLE_POINTS)
    title_inches = (title.count("\n") + 1) * TITLE_POINTS * 1.4 / 72 + 0.15
    figure = Figure(figsize=(width_inches + 2 * PAD, height_inches + title_inches + PAD), dpi=DPI)
    total_w, total_h = figure.get_size_inches()
    axes = figure.add_axes((PAD / total_w, PAD / total_h, width_inches / total_w, height_inches / total_h))
    cmap = imshow.pop("cmap", None)
    if cmap is not None:
        cmap = colormaps[cmap].with_extremes(bad="white")
    axes.imshow(image, cmap=cmap, interpolation="nearest", aspect="auto", **imshow)
    axes.set_axis_off()
    figure.text(0.5, 1 - 0.06 / total_h, title, ha="center", va="top", fontsize=TITLE_POINTS)
    return figure


def fit_title(title: str, width_inches: float, points: float) -> str:
    """Wrap each line of a title so that it fits the figure's width (about 0.55 em per character)."""
    width = max(20, int(width_inches * 72 / (points * 0.55)))
    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


def save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, facecolor="white")
    return path


def slug(text: str) -> str:
    """A file-name-safe version of a layer or image name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
