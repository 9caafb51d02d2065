"""A reader for IDX files (MNIST's format), gzipped or not, with errors that name the file and the problem.

Layout: two zero bytes, a data-type code, the number of dimensions, each dimension as a big-endian uint32,
then the values in C order.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from pipeline.core.errors import IdxError, InputError, MissingInputError

DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path) -> np.ndarray:
    """The array an IDX file (or its .gz) holds, in its native dtype and shape."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise IdxError(f"{path}: corrupt or truncated gzip data ({err}).") from err
    if len(raw) < 4:
        raise IdxError(f"{path}: {len(raw)} bytes, too short for an IDX header (4 bytes or more).")
    if raw[:2] != b"\x00\x00":
        raise IdxError(f"{path}: not an IDX file: it starts with 0x{raw[:4].hex()}, an IDX file with 0x0000.")
    code, ndim = raw[2], raw[3]
    if code not in DTYPES:
        raise IdxError(f"{path}: unknown IDX data type 0x{code:02x}; known: {[f'0x{c:02x}' for c in DTYPES]}.")
    if ndim == 0:
        raise IdxError(f"{path}: the header declares 0 dimensions.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(f"{path}: truncated header ({len(raw)} bytes; {ndim} dimensions need {header}).")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(DTYPES[code])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise IdxError(
            f"{path}: the header says shape {shape} ({expected} bytes of data), the file holds {len(raw) - header}."
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write `array` as IDX (gzipped when the name ends in .gz); used to make test files."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in DTYPES.items()}
    array = np.asarray(array)
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise InputError(f"IDX has no type for dtype {array.dtype}. Known: {sorted(map(str, codes))}")
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(DTYPES[code]).tobytes()
    Path(path).write_bytes(gzip.compress(payload) if str(path).endswith(".gz") else payload)
    return Path(path)
