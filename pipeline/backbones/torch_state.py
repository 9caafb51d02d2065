"""Read a state dict saved by PyTorch's legacy (non-zip) serializer, without torch and without running code.

The legacy file is a sequence of pickles: the magic number, the protocol version, system info, the
state dict (tensors point at storages by persistent id), the list of storage keys, then each storage's
raw bytes after an 8-byte little-endian element count. The unpickler admits only the few globals a
plain state dict needs; anything else (os.system, builtins.eval, ...) is refused before it is called.
"""

from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("float64"),
    "FloatStorage": np.dtype("float32"),
    "HalfStorage": np.dtype("float16"),
    "LongStorage": np.dtype("int64"),
    "IntStorage": np.dtype("int32"),
    "ShortStorage": np.dtype("int16"),
    "CharStorage": np.dtype("int8"),
    "ByteStorage": np.dtype("uint8"),
    "BoolStorage": np.dtype("bool"),
}


class UnsafePickleError(ValueError):
    """The pickle references a global outside the state-dict allow-list."""


class NotATorchFileError(ValueError):
    """The file is not a state dict in PyTorch's legacy serialization."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _PendingTensor:
    """A tensor whose storage bytes come after the pickle; resolved once they are read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def resolve(self, path: Path) -> np.ndarray:
        """Copy the (possibly non-contiguous) view out of the storage, refusing out-of-bounds views."""
        data = self.storage.data
        if data is None or len(self.size) != len(self.stride):
            raise NotATorchFileError(f"{path}: malformed tensor on storage {self.storage.key}")
        if 0 in self.size:
            return np.empty(self.size, dtype=data.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or min(self.stride, default=0) < 0 or last >= data.size:
            raise NotATorchFileError(f"{path}: tensor view out of bounds of storage {self.storage.key}")
        step = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], shape=self.size, strides=[s * step for s in self.stride], writeable=False
        )
        return np.array(view, order="C")  # a copy; ascontiguousarray would turn a scalar into shape (1,)


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> _PendingTensor:
    if not isinstance(storage, _Storage):
        raise NotATorchFileError(f"tensor rebuilt from a non-storage object: {type(storage).__name__}")
    return _PendingTensor(storage, int(offset), tuple(int(n) for n in size), tuple(int(s) for s in stride))


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _StateDictUnpickler(pickle.Unpickler):
    """Admits only the allow-listed globals; storages come back as `_Storage` placeholders."""

    def __init__(self, handle: IO[bytes], path: Path, storages: dict[str, _Storage]) -> None:
        super().__init__(handle)
        self.path = path
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.path}: refusing to unpickle global '{module}.{name}'; "
                "only a plain PyTorch state dict (tensors in an OrderedDict) is accepted."
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise NotATorchFileError(f"{self.path}: unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise NotATorchFileError(f"{self.path}: storage {key} has no known storage type")
        if len(pid) > 5 and pid[5] is not None:
            raise NotATorchFileError(f"{self.path}: storage views (view_metadata) are not supported")
        storage = self.storages.setdefault(str(key), _Storage(str(key), storage_type.dtype, int(numel)))
        if storage.dtype != storage_type.dtype or storage.numel != int(numel):
            raise NotATorchFileError(f"{self.path}: storage {key} is declared twice differently")
        return storage


def _load_pickle(handle: IO[bytes], path: Path, storages: dict[str, _Storage]) -> Any:
    try:
        return _StateDictUnpickler(handle, path, storages).load()
    except UnsafePickleError:
        raise
    except NotATorchFileError:
        raise
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a legacy torch file"
        raise NotATorchFileError(f"{path}: not a legacy PyTorch state dict ({type(err).__name__}: {err})") from err


def _check_header(handle: IO[bytes], path: Path) -> bool:
    """Check magic, version and sys info; return whether the storages are little-endian."""
    if handle.read(4) == b"PK\x03\x04":
        raise NotATorchFileError(
            f"{path}: zip-format PyTorch checkpoint (torch >= 1.6); only the legacy format is supported. "
            "Re-save it with torch.save(..., _use_new_zipfile_serialization=False)."
        )
    handle.seek(0)
    magic = _load_pickle(handle, path, {})
    if magic != MAGIC_NUMBER:
        raise NotATorchFileError(f"{path}: not a legacy PyTorch file (bad magic number)")
    version = _load_pickle(handle, path, {})
    if version != PROTOCOL_VERSION:
        raise NotATorchFileError(f"{path}: unsupported legacy protocol version {version!r}")
    sys_info = _load_pickle(handle, path, {})
    return bool(isinstance(sys_info, dict) and sys_info.get("little_endian", True))


def _read_storages(handle: IO[bytes], path: Path, storages: dict[str, _Storage], little: bool) -> None:
    keys = _load_pickle(handle, path, {})
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise NotATorchFileError(f"{path}: storage key list does not match the tensors")
    for key in map(str, keys):
        storage = storages[key]
        dtype = storage.dtype.newbyteorder("<" if little else ">")
        numel = int.from_bytes(handle.read(8), "little" if little else "big")
        raw = handle.read(numel * dtype.itemsize)
        if numel != storage.numel or len(raw) != numel * dtype.itemsize:
            raise NotATorchFileError(f"{path}: storage {key} is truncated or has the wrong size")
        storage.data = np.frombuffer(raw, dtype=dtype).astype(storage.dtype)


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Parameter name -> numpy array (a copy, C-contiguous) from a legacy-format `.pth` state dict."""
    path = Path(path)
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as handle:
        little = _check_header(handle, path)
        state = _load_pickle(handle, path, storages)
        if not isinstance(state, dict):
            raise NotATorchFileError(f"{path}: top-level object is {type(state).__name__}, not a state dict")
        _read_storages(handle, path, storages, little)
    tensors = {str(k): v.resolve(path) for k, v in state.items() if isinstance(v, _PendingTensor)}
    if len(tensors) != len(state):
        raise NotATorchFileError(f"{path}: the state dict holds values that are not tensors")
    return tensors
