"""The split stage's image gate: each image is decoded once with Pillow, then copied, converted or rejected.

- copy: a plain JPEG (baseline or progressive, RGB or grayscale, no EXIF rotation) named .jpg/.jpeg; its bytes
  are kept as they are, since the featurize stage's `tf.io.decode_image` reads it the same way.
- convert: anything else Pillow decodes (PNG, GIF, BMP, WebP, TIFF, whatever the extension says; CMYK,
  palette, 16-bit, float; EXIF-rotated) becomes an 8-bit RGB PNG with the rotation applied. Transparent
  pixels are composited on white, as an image viewer shows them, rather than exposing whatever colour
  lies under alpha 0. 16-bit values are scaled (v / 257, rounded), never clipped.
- reject: empty, not an image, truncated or corrupt data, over the pixel limit (checked from the header,
  before any pixel is decoded), a symbolic link, or a mode that has no faithful RGB form.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")  # never EPS & co (Ghostscript); JPEG opens MPO too
JPEG_SUFFIXES = (".jpg", ".jpeg")
PLAIN_JPEG_MODES = ("RGB", "L")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
ORIENTATION_TAG = 0x0112
WHITE = (255, 255, 255, 255)


@dataclass(frozen=True)
class Checked:
    """What the gate decided for one file. `data` is what to write (the original bytes or a PNG)."""

    action: str  # "copy" | "convert" | "reject"
    reasons: tuple[str, ...] = ()  # short keys for counting: "format PNG", "orientation 6"; "truncated"
    detail: str = ""  # a readable sentence for the CSV
    data: bytes = b""
    suffix: str = ""
    sha256: str = ""

    @property
    def note(self) -> str:
        return f"{self.reasons[0]}: {self.detail}" if self.action == "reject" else "; ".join(self.reasons)


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@contextmanager
def pillow_limits(max_pixels: int) -> Iterator[None]:
    """Pillow's own bomb check at our limit (it refuses twice that at open), no truncated-image leniency.

    Set once around a whole run, not per thread: both are module globals in Pillow.
    """
    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = max_pixels, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own check rejects these
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def check_file(path: Path, max_pixels: int) -> Checked:
    """Read and judge one file; never raises for a bad file (it is a reject with a reason)."""
    try:
        if path.is_symlink():
            raise Rejected("symlink", "a symbolic link; links are not followed")
        try:
            with open(path, "rb") as handle:
                data = read_if_image(handle, max_pixels)
        except OSError as err:
            raise Rejected("unreadable", str(err)) from err
        return check_image(data, path.suffix, max_pixels)
    except Rejected as rejected:
        return Checked("reject", (rejected.reason,), rejected.detail)


def read_if_image(handle: BinaryIO, max_pixels: int) -> bytes:
    """The file's bytes, read only once its header says it is an image within max_pixels.

    A file that is not an image, or whose header declares too many pixels, is rejected after reading
    only its header, however large it is.
    """
    head = handle.read(16)
    if not head:
        raise Rejected("empty", "the file has 0 bytes")
    handle.seek(0)
    image = _open(handle, head)
    check_pixels(image.size, max_pixels)
    handle.seek(0)
    return handle.read()


def check_image(data: bytes, suffix: str, max_pixels: int) -> Checked:
    """Copy, convert (to an RGB PNG) or reject the image in `data`, whose file name ends in `suffix`."""
    try:
        return _check(data, suffix.lower(), max_pixels)
    except Rejected as rejected:
        return Checked("reject", (rejected.reason,), rejected.detail)


def _check(data: bytes, suffix: str, max_pixels: int) -> Checked:
    if not data:
        raise Rejected("empty", "the file has 0 bytes")
    image = _open(data)
    check_pixels(image.size, max_pixels)
    if image.format == "PNG":
        verify_checksums(data)
    jpeg = image.format == "JPEG"
    orientation = exif_orientation(image) if jpeg else 1  # a JPEG's EXIF is in its header: read before decoding
    if jpeg and image.mode in PLAIN_JPEG_MODES and orientation == 1 and suffix in JPEG_SUFFIXES:
        # Scaled DCT decode: every byte of the entropy-coded data is still read, so truncation is still caught.
        image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
        _load(image)
        return Checked("copy", data=data, suffix=suffix, sha256=hashlib.sha256(data).hexdigest())
    reasons = []
    if not jpeg:
        reasons.append(f"format {image.format}")
    elif suffix not in JPEG_SUFFIXES:
        reasons.append(f"extension {suffix or '(none)'}")
    if image.mode not in PLAIN_JPEG_MODES:
        reasons.append(f"mode {image.mode}")
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        reasons.append(f"first of {frames} frames")
    _load(image)
    check_pixels(image.size, max_pixels)
    if not jpeg:
        orientation = exif_orientation(image)  # PNG and WebP may store EXIF after the pixels
    if orientation != 1:
        reasons.append(f"orientation {orientation}")
        image = ImageOps.exif_transpose(image)
    rgb = to_rgb(image)
    buffer = io.BytesIO()
    rgb.save(buffer, "PNG", compress_level=1)
    png = buffer.getvalue()
    return Checked("convert", tuple(reasons), data=png, suffix=".png", sha256=hashlib.sha256(png).hexdigest())


def _open(source: bytes | BinaryIO, head: bytes = b"") -> Image.Image:
    """Pillow's lazy open: the header only, no pixels decoded."""
    if isinstance(source, bytes):
        source, head = io.BytesIO(source), source[:16]
    try:
        return Image.open(source, formats=FORMATS)
    except Image.DecompressionBombError as err:
        raise Rejected("too large", str(err)) from err
    except UnidentifiedImageError as err:
        raise Rejected(
            "not an image", f"no {'/'.join(FORMATS)} header that Pillow can read (it starts with {head[:12]!r})"
        ) from err
    except Exception as err:  # a plugin that recognised the format choked on the header
        raise Rejected(_damage(err), f"bad header: {type(err).__name__}: {err}") from err


def _load(image: Image.Image) -> None:
    try:
        image.load()
    except Image.DecompressionBombError as err:
        raise Rejected("too large", str(err)) from err
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, ... for bad data
        raise Rejected(_damage(err), f"cannot decode: {type(err).__name__}: {err}") from err


def _damage(err: Exception) -> str:
    return "truncated" if "truncated" in str(err).lower() else "corrupt"


def verify_checksums(data: bytes) -> None:
    """PNG chunks carry CRCs that a decode does not check: a damaged IDAT can inflate into wrong pixels."""
    try:
        Image.open(io.BytesIO(data), formats=["PNG"]).verify()
    except Exception as err:
        raise Rejected(_damage(err), f"{type(err).__name__}: {err}") from err


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise Rejected(
            "too large", f"{width}x{height} = {width * height:,} pixels, over split.max_pixels = {max_pixels:,}"
        )


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 to 8); 1 when absent, out of range or unreadable."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF: the pixels are all there, just without a rotation to apply
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: high bit depths scaled to 8 bits, alpha composited on white."""
    if image.mode in SIXTEEN_BIT_MODES or image.mode == "I":
        image = Image.fromarray(_sixteen_to_eight(np.asarray(image), image.mode), mode="L")
    elif image.mode == "F":
        image = Image.fromarray(_float_to_eight(np.asarray(image)), mode="L")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as err:  # e.g. LAB: Pillow has no conversion to RGB
        raise Rejected("unsupported", f"mode {image.mode} has no conversion to RGB ({err})") from err


def _sixteen_to_eight(values: np.ndarray, mode: str) -> np.ndarray:
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise Rejected("unsupported", f"mode {mode} with values outside 0..65535 ({values.min()}..{values.max()})")
    wide = values.astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257): 65535 -> 255, 257 -> 1


def _float_to_eight(values: np.ndarray) -> np.ndarray:
    if values.size and (not np.isfinite(values).all() or values.min() < 0 or values.max() > 1):
        raise Rejected("unsupported", "mode F (float) with values outside [0, 1]")
    return np.rint(values * 255).astype(np.uint8)
