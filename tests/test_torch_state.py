"""The torch-free reader of legacy PyTorch state dicts: the real EfficientNet-Lite0 file and hand-made ones."""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.backbones.efficientnet_lite import fetch_imagenet_weights
from pipeline.backbones.torch_state import (
    MAGIC_NUMBER,
    PROTOCOL_VERSION,
    NotATorchFileError,
    UnsafePickleError,
    load_torch_state_dict,
)

SYS_INFO = {"protocol_version": PROTOCOL_VERSION, "little_endian": True, "type_sizes": {"int": 4, "long": 4}}


class _Global:
    """A global written by name (GLOBAL opcode) without importing it: torch need not exist here."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self) -> None:  # save_reduce wants a callable
        raise AssertionError("never called")


class _Call:
    """An object that pickles as `global(*args)`."""

    def __init__(self, func: _Global, *args: Any) -> None:
        self.func, self.args = func, args


class _LegacyPickler(pickle._Pickler):  # the pure-Python pickler lets a type choose how it is written
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_global_by_name(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Global] = _save_global_by_name

    def reducer_override(self, obj: Any) -> Any:
        return (obj.func, obj.args) if isinstance(obj, _Call) else NotImplemented

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, tuple) and obj and obj[0] == "storage":
            return obj
        return None


def _tensor(key: str, numel: int, offset: int, size: tuple, stride: tuple, kind: str = "FloatStorage") -> _Call:
    storage = ("storage", _Global("torch", kind), key, "cpu", numel, None)
    rebuild = _Global("torch._utils", "_rebuild_tensor_v2")
    return _Call(rebuild, storage, offset, size, stride, False, OrderedDict())


def write_legacy(path: Path, state: dict, storages: dict[str, np.ndarray]) -> Path:
    """Write `state` the way torch.save(..., _use_new_zipfile_serialization=False) does."""
    with open(path, "wb") as handle:
        for header in (MAGIC_NUMBER, PROTOCOL_VERSION, SYS_INFO):
            pickle.dump(header, handle, protocol=2)
        _LegacyPickler(handle, protocol=2).dump(OrderedDict(state))
        pickle.dump(list(storages), handle, protocol=2)
        for data in storages.values():
            handle.write(data.size.to_bytes(8, "little") + data.astype(data.dtype.newbyteorder("<")).tobytes())
    return path


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, np.ndarray]:
    return load_torch_state_dict(fetch_imagenet_weights())


def test_real_file_keys_and_shapes(lite0_state: dict[str, np.ndarray]) -> None:
    assert len(lite0_state) == 296
    blocks = {int(key.split(".")[1]) for key in lite0_state if key.startswith("_blocks.")}
    assert blocks == set(range(16))
    assert "_blocks.0._expand_conv.weight" not in lite0_state and "_blocks.1._expand_conv.weight" in lite0_state
    expected = {
        "_conv_stem.weight": (32, 3, 3, 3),
        "_bn0.running_var": (32,),
        "_blocks.0._depthwise_conv.weight": (32, 1, 3, 3),
        "_blocks.15._expand_conv.weight": (1152, 192, 1, 1),
        "_blocks.15._project_conv.weight": (320, 1152, 1, 1),
        "_conv_head.weight": (1280, 320, 1, 1),
        "_fc.weight": (1000, 1280),
        "_fc.bias": (1000,),
    }
    assert {key: lite0_state[key].shape for key in expected} == expected
    params = sum(v.size for k, v in lite0_state.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    assert params == 4_652_008


def test_real_file_dtypes(lite0_state: dict[str, np.ndarray]) -> None:
    tracked = lite0_state["_bn0.num_batches_tracked"]
    assert tracked.dtype == np.int64 and tracked.shape == ()
    assert lite0_state["_fc.weight"].dtype == np.float32
    assert all(v.flags.c_contiguous for v in lite0_state.values())
    assert (lite0_state["_bn1.running_var"] > 0).all()


def test_strided_offset_and_int64_tensors(tmp_path: Path) -> None:
    floats = np.arange(12, dtype=np.float32)
    state = {
        "transposed": _tensor("0", 12, 0, (4, 3), (1, 4)),  # stored column-major, as the real _fc.weight
        "offset": _tensor("0", 12, 5, (2, 2), (3, 1)),
        "steps": _tensor("1", 1, 0, (), (), "LongStorage"),
    }
    path = write_legacy(tmp_path / "x.pth", state, {"0": floats, "1": np.array([7], dtype=np.int64)})
    loaded = load_torch_state_dict(path)
    np.testing.assert_array_equal(loaded["transposed"], floats.reshape(3, 4).T)
    np.testing.assert_array_equal(loaded["offset"], [[5, 6], [8, 9]])
    assert loaded["steps"].dtype == np.int64 and loaded["steps"].shape == () and loaded["steps"] == 7


def test_out_of_bounds_view_is_refused(tmp_path: Path) -> None:
    state = {"w": _tensor("0", 4, 2, (4,), (1,))}
    path = write_legacy(tmp_path / "oob.pth", state, {"0": np.zeros(4, dtype=np.float32)})
    with pytest.raises(NotATorchFileError, match="out of bounds"):
        load_torch_state_dict(path)


@pytest.mark.parametrize("module, name", [("os", "system"), ("builtins", "eval"), ("__builtin__", "eval")])
def test_forbidden_global_is_refused_and_not_called(tmp_path: Path, module: str, name: str) -> None:
    marker = tmp_path / "pwned"
    command = f"open({str(marker)!r}, 'w')" if "eval" in name else f"touch {marker}"
    state = {"w": _tensor("0", 1, 0, (1,), (1,)), "evil": _Call(_Global(module, name), command)}
    path = write_legacy(tmp_path / "evil.pth", state, {"0": np.zeros(1, dtype=np.float32)})
    with pytest.raises(UnsafePickleError, match=rf"evil\.pth.*'{module}\.{name}'"):
        load_torch_state_dict(path)
    assert not marker.exists()


def test_forbidden_global_in_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "header.pth"
    with open(path, "wb") as handle:
        _LegacyPickler(handle, protocol=2).dump(_Call(_Global("subprocess", "getoutput"), "id"))
    with pytest.raises(UnsafePickleError, match="subprocess.getoutput"):
        load_torch_state_dict(path)


def test_zip_format_checkpoint_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "new.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(NotATorchFileError, match=r"new\.pth.*zip-format"):
        load_torch_state_dict(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all\n", pickle.dumps({"a": 1}, protocol=2)])
def test_non_torch_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(content)
    with pytest.raises(NotATorchFileError, match=r"garbage\.pth"):
        load_torch_state_dict(path)


def test_truncated_storage_is_refused(tmp_path: Path) -> None:
    path = write_legacy(tmp_path / "cut.pth", {"w": _tensor("0", 8, 0, (8,), (1,))}, {"0": np.ones(8, np.float32)})
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(NotATorchFileError, match=r"cut\.pth.*truncated"):
        load_torch_state_dict(path)
