"""Contact sheets: a grid of image thumbnails with a caption under each, as one PNG (Pillow only)."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
CELL_BACKGROUND = (238, 238, 238)
TEXT = (20, 20, 20)
CAPTION_LINES = 3
PADDING = 6


def contact_sheet(
    images: Sequence[Path], captions: Sequence[str], out: Path, *, columns: int = 8, thumb: int = 128, title: str = ""
) -> Path:
    """Write `images` as thumbnails (fit in `thumb` px, aspect kept), `columns` to a row, each over its caption.

    Captions wrap to three lines (newlines start a line). An image that cannot be read gets a gray cell saying
    so; no images give a sheet that says there is nothing to show. The PNG replaces `out` only once complete.
    """
    if len(images) != len(captions):
        raise ValueError(f"contact_sheet: {len(images)} images but {len(captions)} captions")
    if columns < 1 or thumb < 16:
        raise ValueError(f"contact_sheet: columns must be >= 1 and thumb >= 16. Received: {columns=}, {thumb=}")
    font = ImageFont.load_default(size=max(10, thumb // 11))
    line_height = font.getbbox("Ag")[3] + 2
    title_height = (line_height + PADDING) * (1 + title.count("\n")) if title else 0
    cell_w, cell_h = thumb + PADDING, thumb + CAPTION_LINES * line_height + 2 * PADDING
    cols = max(1, min(columns, len(images)))
    rows = -(-len(images) // cols)
    text_width = max(font.getlength(line) for line in [*title.splitlines(), "(nothing to show)"])
    width = int(max(cols * cell_w, text_width + PADDING) + PADDING)
    height = title_height + (rows * cell_h if images else line_height + PADDING) + PADDING
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.multiline_text((PADDING, PADDING), title, fill=TEXT, font=font)
    if not images:
        draw.text((PADDING, title_height + PADDING), "(nothing to show)", fill=TEXT, font=font)
    chars = max(8, int(thumb / (font.getlength("n") or 6)))
    for i, (path, caption) in enumerate(zip(images, captions, strict=True)):
        x = PADDING + (i % cols) * cell_w
        y = title_height + PADDING + (i // cols) * cell_h
        draw.rectangle((x, y, x + thumb - 1, y + thumb - 1), fill=CELL_BACKGROUND)
        picture = thumbnail(Path(path), thumb)
        if picture is None:
            draw.text((x + 4, y + thumb // 2 - line_height), "unreadable", fill=TEXT, font=font)
        else:
            sheet.paste(picture, (x + (thumb - picture.width) // 2, y + (thumb - picture.height) // 2))
        for n, line in enumerate(caption_lines(caption, chars)):
            draw.text((x, y + thumb + 2 + n * line_height), line, fill=TEXT, font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    sheet.save(partial, "PNG")
    os.replace(partial, out)
    return out


def thumbnail(path: Path, size: int) -> Image.Image | None:
    """The image as RGB, fit in size x size; None if it cannot be read."""
    try:
        with Image.open(path) as image:
            image.thumbnail((size, size))
            return image.convert("RGB")
    except Exception:  # a caption cell says so; a sheet is never lost to one bad file
        return None


def caption_lines(caption: str, width: int) -> list[str]:
    lines = [part for line in caption.splitlines() for part in (textwrap.wrap(line, width) or [""])]
    if len(lines) > CAPTION_LINES:
        lines = lines[:CAPTION_LINES]
        lines[-1] = lines[-1][: width - 3] + "..."
    return lines
