"""Contact sheets: a grid of image thumbnails, each with a caption under it, saved as one PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MISSING = (200, 200, 200)
PAD = 6
LINE_HEIGHT = 12


def contact_sheet(
    images: Sequence[Path],
    captions: Sequence[str],
    out: Path,
    *,
    columns: int = 8,
    thumb: int = 128,
    title: str = "",
) -> Path:
    """Lay `images` out `columns` to a row as `thumb`-pixel thumbnails with their captions; write `out` (PNG).

    Captions may hold several lines ("\\n") and are cut to the thumbnail's width. An image that cannot be
    read gets a gray tile saying so, rather than failing the whole sheet. Returns `out`.
    """
    if len(images) != len(captions):
        raise ValueError(f"contact_sheet: {len(images)} images but {len(captions)} captions.")
    if columns < 1 or thumb < 16:
        raise ValueError(f"contact_sheet: columns must be >= 1 and thumb >= 16. Received: {columns=}, {thumb=}")
    font = ImageFont.load_default()
    chars = max(4, thumb // 6)
    lines = [wrap(caption, chars) for caption in captions]
    caption_height = LINE_HEIGHT * max((len(item) for item in lines), default=0)
    cell_w, cell_h = thumb + PAD, thumb + caption_height + PAD
    title_height = LINE_HEIGHT + PAD if title else 0
    rows = max(1, math.ceil(len(images) / columns))
    width = PAD + columns * cell_w
    sheet = Image.new("RGB", (width, PAD + title_height + rows * cell_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((PAD, PAD), title[: width // 6], fill=INK, font=font)
    if not images:
        draw.text((PAD, PAD + title_height), "(nothing to show)", fill=INK, font=font)
    for i, (path, text) in enumerate(zip(images, lines, strict=True)):
        x = PAD + (i % columns) * cell_w
        y = PAD + title_height + (i // columns) * cell_h
        tile = thumbnail(Path(path), thumb)
        sheet.paste(tile, (x + (thumb - tile.width) // 2, y + (thumb - tile.height) // 2))
        for j, line in enumerate(text):
            draw.text((x, y + thumb + 2 + j * LINE_HEIGHT), line, fill=INK, font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, "PNG")
    return out


def thumbnail(path: Path, size: int) -> Image.Image:
    """The image scaled to fit a size x size box (aspect kept), or a gray tile naming the problem."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster for big photos
            tile = image.convert("RGB")
        tile.thumbnail((size, size))
        return tile
    except (OSError, UnidentifiedImageError, ValueError) as err:
        tile = Image.new("RGB", (size, size), MISSING)
        ImageDraw.Draw(tile).text((4, size // 2), f"unreadable:\n{type(err).__name__}", fill=INK)
        return tile


def wrap(caption: str, chars: int) -> list[str]:
    """Each caption line cut into pieces of at most `chars` characters."""
    pieces: list[str] = []
    for line in caption.split("\n"):
        pieces.extend([line[i : i + chars] for i in range(0, len(line), chars)] or [""])
    return pieces
