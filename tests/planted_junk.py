"""Junk the way it turns up in scraped pet photos, drawn at test time: logos and text banners on white,
"photo coming soon" placeholders, screenshots, near-identical copies of one placeholder under both labels, and a
photo of a person (scikit-image's astronaut, shipped with the package). Each is a JPEG named as a cat or a dog."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


SIDE = 200  # the shared sample's images are 200 x 200: junk of that size gives odd_size no easy catch


def jpeg(image: Image.Image, quality: int = 90, square: bool = True) -> bytes:
    """JPEG bytes of the image, resized to SIDE x SIDE like the sample's photos unless `square` is False."""
    if square:
        image = image.resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def logo(text: str, color: tuple[int, int, int], shape: str, size: tuple[int, int] = (240, 200)) -> Image.Image:
    """A company logo on white: a filled shape and a word beside it."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse((20, 50, 110, 140), fill=color)
    else:
        draw.polygon([(65, 40), (115, 140), (15, 140)], fill=color)
    draw.text((120, 80), text, fill=(40, 40, 40), font=font(34))
    return image


def banner(lines: list[str], color: tuple[int, int, int]) -> Image.Image:
    """A wide text banner on white with a colored strip."""
    image = Image.new("RGB", (600, 200), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 600, 30), fill=color)
    for n, line in enumerate(lines):
        draw.text((30, 50 + 45 * n), line, fill=(20, 20, 20), font=font(36))
    return image


def placeholder(text: str, background: tuple[int, int, int], shift: int = 0) -> Image.Image:
    """A "photo coming soon" card: a cartoon pet head (circles) above a caption on a flat color."""
    image = Image.new("RGB", (300, 300), background)
    draw = ImageDraw.Draw(image)
    x, y = 150 + shift, 110
    draw.ellipse((x - 40, y - 60, x - 10, y - 10), fill=(90, 90, 90))  # ears
    draw.ellipse((x + 10, y - 60, x + 40, y - 10), fill=(90, 90, 90))
    draw.ellipse((x - 55, y - 45, x + 55, y + 55), fill=(120, 120, 120))  # head
    draw.ellipse((x - 28, y - 5, x - 12, y + 11), fill="white")
    draw.ellipse((x + 12, y - 5, x + 28, y + 11), fill="white")
    draw.text((30 + shift, 210), text, fill=(255, 255, 255), font=font(22))
    return image


def screenshot(title: str) -> Image.Image:
    """A desktop window: title bar, menu, lines of text and two buttons."""
    image = Image.new("RGB", (320, 240), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 320, 24), fill=(40, 70, 140))
    draw.text((8, 4), title, fill="white", font=font(14))
    draw.rectangle((10, 34, 310, 200), fill="white", outline=(150, 150, 150))
    for n in range(9):
        draw.text(
            (16, 38 + 17 * n), f"{n + 1:>2}  record_{n * 37:04d}.dat   {n * 1234:,} bytes", fill="black", font=font(12)
        )
    draw.rectangle((170, 208, 232, 232), fill=(210, 210, 210), outline=(120, 120, 120))
    draw.rectangle((240, 208, 310, 232), fill=(210, 210, 210), outline=(120, 120, 120))
    draw.text((186, 212), "OK", fill="black", font=font(14))
    draw.text((250, 212), "Cancel", fill="black", font=font(14))
    return image


def person() -> Image.Image:
    """A photo of a person: scikit-image's astronaut (Eileen Collins, NASA), 512 x 512."""
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((300, 300), Image.Resampling.BILINEAR)


def planted_junk() -> dict[str, tuple[str, bytes]]:
    """{name: (label, JPEG bytes)}: twelve junk images, each filed as a cat or a dog; all 200 x 200 as the sample's
    photos are, except one banner of a banner's shape (600 x 200)."""
    coming_soon = placeholder("PHOTO COMING SOON", (70, 140, 200))
    return {
        "logo-acme": ("cat", jpeg(logo("ACME", (220, 30, 30), "circle"))),
        "logo-petco": ("dog", jpeg(logo("PetCo", (30, 120, 220), "triangle"))),
        "banner-sale": ("dog", jpeg(banner(["SALE 50% OFF", "all pet food this week"], (230, 120, 0)), square=False)),
        "banner-adopt": ("cat", jpeg(banner(["Adopt today!", "call 555-0199"], (0, 150, 70)))),
        "placeholder-noimage": ("dog", jpeg(placeholder("NO IMAGE AVAILABLE", (200, 200, 200)))),
        "screenshot-files": ("cat", jpeg(screenshot("Files - /home/pets"))),
        "screenshot-log": ("dog", jpeg(screenshot("upload.log"))),
        "coming-soon-1": ("dog", jpeg(coming_soon)),
        "coming-soon-2": ("cat", jpeg(coming_soon, quality=75)),
        "coming-soon-3": ("dog", jpeg(placeholder("PHOTO COMING SOON", (70, 140, 200), shift=3))),
        "coming-soon-4": ("cat", jpeg(coming_soon.resize((280, 280)))),
        "person": ("dog", jpeg(person())),
    }


def write_planted_set(folder: Path, clean: dict[str, bytes], first_junk: int) -> dict[str, str]:
    """Clean Kaggle-named images plus the junk as <label>.<n>.jpg from `first_junk` on; returns {file: junk name}."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in clean.items():
        (folder / name).write_bytes(data)
    names: dict[str, str] = {}
    counters = {"cat": first_junk, "dog": first_junk}
    for junk_name, (label, data) in planted_junk().items():
        file_name = f"{label}.{counters[label]}.jpg"
        counters[label] += 1
        (folder / file_name).write_bytes(data)
        names[file_name] = junk_name
    return names
