"""Read ``torch.save`` zip archives as data, never as code, and without PyTorch.

A ``torch.save`` file is a zip archive holding ``<prefix>/data.pkl`` (a pickle) and one record
``<prefix>/data/<key>`` per tensor storage. The pickle is read by :class:`RestrictedUnpickler`: tensors
(``torch._utils._rebuild_tensor_v2`` and friends, the ``torch.*Storage`` types) become
:class:`StoredTensor` records whose bytes are read from the archive only when asked for; every other
global must be allowed by :func:`~frozenasd.safe_pickle.pickle_globals.plain_global`.

``data.pkl`` is read only when it declares and holds at most ``MAX_PICKLE_BYTES`` and at most
``MAX_PICKLE_OPS`` opcodes (counted before anything is unpickled). A tensor must fit in its storage
without overlapping itself (no stride 0 over more than one element, no more elements than the storage
holds), and a storage record is read only up to the bytes its storage needs.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frozenasd.errors import ModelError
from frozenasd.safe_pickle.pickle_globals import (
    MAX_PICKLE_BYTES,
    MAX_PICKLE_OPS,
    UnsafeCheckpointError,
    WalkBudget,
    plain_global,
    python3_name,
    stub_class,
)
from frozenasd.zip_limits import read_member

# Storage type names as torch pickles them, with the numpy dtype of their elements (``None``: bfloat16,
# which numpy lacks; it is read as uint16 bits).
_STORAGE_DTYPES: dict[str, tuple[str, str | None]] = {
    "HalfStorage": ("float16", "f2"),
    "FloatStorage": ("float32", "f4"),
    "DoubleStorage": ("float64", "f8"),
    "BFloat16Storage": ("bfloat16", None),
    "LongStorage": ("int64", "i8"),
    "IntStorage": ("int32", "i4"),
    "ShortStorage": ("int16", "i2"),
    "CharStorage": ("int8", "i1"),
    "ByteStorage": ("uint8", "u1"),
    "BoolStorage": ("bool", "?"),
    "ComplexFloatStorage": ("complex64", "c8"),
    "ComplexDoubleStorage": ("complex128", "c16"),
    "UntypedStorage": ("uint8", "u1"),
}
_TORCH_DTYPE_NAMES = frozenset(
    "float16 half float32 float float64 double bfloat16 int64 long int32 int int16 short int8 uint8 bool "
    "complex64 complex128".split()
)


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: str
    numel: int


@dataclass(frozen=True)
class StoredTensor:
    """A tensor of a checkpoint: its dtype and layout, and the archive record holding its bytes."""

    archive: TorchArchive
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> str:
        """Stored element type, as torch names it (``float16``, ``float32``, ``bfloat16``...)."""
        return self.storage.dtype

    def numpy(self) -> np.ndarray:
        """Read the values into a new C-contiguous array (bfloat16 is widened to float32 exactly)."""
        return self.archive.read_tensor(self)


# --- functions the pickle may call (each only builds data) -------------------------------------------


def _check_ints(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, tuple | list) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise ModelError(f"malformed tensor record: {what} {values!r}")
    return tuple(values)


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> StoredTensor:
    if not isinstance(storage, tuple) or len(storage) != 2 or not isinstance(storage[1], _StorageRef):
        raise ModelError("malformed tensor record: storage")
    archive, ref = storage
    shape, strides = _check_ints(size, "size"), _check_ints(stride, "stride")
    if not isinstance(offset, int) or offset < 0 or len(shape) != len(strides):
        raise ModelError("malformed tensor record: offset or rank")
    if all(shape):
        if any(s == 0 and n > 1 for n, s in zip(shape, strides, strict=True)):
            raise ModelError(f"tensor record of shape {shape} repeats storage {ref.key!r} (a stride of 0)")
        if math.prod(shape) > ref.numel - offset:
            raise ModelError(
                f"tensor record of shape {shape} needs more elements than storage {ref.key!r} holds "
                f"({ref.numel})"
            )
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
        if last >= ref.numel:
            raise ModelError(f"tensor record reads past its storage {ref.key!r}")
    return StoredTensor(archive, ref, offset, shape, strides)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


_TENSOR_TYPE = stub_class("torch.Tensor")
_PARAMETER_TYPE = stub_class("torch.nn.parameter.Parameter")


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    if func is not _rebuild_tensor_v2 or new_type not in (_TENSOR_TYPE, _PARAMETER_TYPE) or state:
        raise UnsafeCheckpointError("a tensor subclass or tensor with Python state is not supported")
    return func(*args)


def _torch_device(*args: Any) -> str:
    return ":".join(str(a) for a in args)


def _torch_global(module: str, name: str) -> Any:
    """The object a pickle gets for a tensor-related ``module.name``, or ``None``."""
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
        return _rebuild_tensor_v2
    if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
        return _rebuild_parameter
    if module == "torch._tensor" and name == "_rebuild_from_type_v2":
        return _rebuild_from_type_v2
    if (module, name) == ("torch", "Tensor"):
        return _TENSOR_TYPE
    if (module, name) == ("torch.nn.parameter", "Parameter"):
        return _PARAMETER_TYPE
    if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
        return _STORAGE_DTYPES[name]
    if module == "torch" and name in _TORCH_DTYPE_NAMES:
        return f"torch.{name}"
    if (module, name) == ("torch", "device"):
        return _torch_device
    return None


def _allowed_global(module: str, name: str) -> Any:
    """The object a pickle gets for ``module.name``, or ``None`` when it is not allowed."""
    found = _torch_global(module, name)
    return found if found is not None else plain_global(module, name)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler of ``data.pkl`` that resolves only allow-listed globals; storages come from ``archive``."""

    def __init__(self, file: io.BufferedIOBase, archive: TorchArchive) -> None:
        super().__init__(file)
        self.archive = archive

    def find_class(self, module: str, name: str) -> Any:
        module, name = python3_name(module, name)
        found = _allowed_global(module, name)
        if found is None:
            raise UnsafeCheckpointError(
                f"{self.archive.path}: refusing to load: the checkpoint's pickle asks for "
                f"'{module}.{name}', which is not a plain data type; loading it could run code"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ModelError(f"{self.archive.path}: unsupported persistent record {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not (isinstance(storage_type, tuple) and isinstance(key, str) and isinstance(numel, int)):
            raise ModelError(f"{self.archive.path}: malformed storage record {pid!r:.80}")
        if numel < 0 or storage_type[0] not in _STORAGE_DTYPES_BY_NAME:
            raise ModelError(f"{self.archive.path}: malformed storage record {pid!r:.80}")
        return self.archive, _StorageRef(key, storage_type[0], numel)


class TorchArchive:
    """An open ``torch.save`` zip file; :meth:`load` unpickles it, tensors stay on disk until read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: checkpoint file not found")
        if not zipfile.is_zipfile(self.path):
            with open(self.path, "rb") as fh:
                head = fh.read(2)
            if head[:1] == b"\x80":
                raise ModelError(
                    f"{self.path}: legacy (pre-1.6) torch.save format is not supported; "
                    "re-save it with torch>=1.6 (zip format) in a trusted environment"
                )
            raise ModelError(f"{self.path}: not a torch.save zip checkpoint")
        self._zip = zipfile.ZipFile(self.path)
        pkls = [n for n in self._zip.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            self._zip.close()
            raise ModelError(f"{self.path}: zip archive without a single <prefix>/data.pkl record")
        self._prefix = pkls[0][: -len("data.pkl")]
        self._byteorder = "<"
        byteorder_name = self._prefix + "byteorder"
        if byteorder_name in self._zip.namelist():
            self._byteorder = ">" if self._zip.read(byteorder_name).strip() == b"big" else "<"

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> TorchArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self) -> Any:
        """Unpickle ``data.pkl`` with the restricted unpickler; tensors come back as :class:`StoredTensor`."""
        info = self._zip.getinfo(self._prefix + "data.pkl")
        data = read_member(self._zip, info, MAX_PICKLE_BYTES, str(self.path), ModelError)
        try:
            _count_opcodes(data, str(self.path))
            return RestrictedUnpickler(io.BytesIO(data), self).load()
        except ModelError as exc:
            if str(self.path) in str(exc):
                raise
            raise type(exc)(f"{self.path}: {exc}") from exc
        except Exception as exc:  # a corrupt or unexpected pickle stream
            raise ModelError(f"{self.path}: cannot read the checkpoint's pickle: {exc!r}") from exc

    def read_tensor(self, tensor: StoredTensor) -> np.ndarray:
        ref = tensor.storage
        name = f"{self._prefix}data/{ref.key}"
        code = _STORAGE_DTYPES_BY_NAME[ref.dtype]
        dtype = np.dtype(code or "u2").newbyteorder(self._byteorder)
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            raise ModelError(f"{self.path}: storage record {name!r} is missing") from None
        needed = ref.numel * dtype.itemsize
        raw = read_member(self._zip, info, needed, str(self.path), ModelError, _MAX_INFLATION)
        if len(raw) < ref.numel * dtype.itemsize:
            raise ModelError(f"{self.path}: storage record {name!r} is truncated")
        flat = np.frombuffer(raw, dtype=dtype, count=ref.numel)
        if all(tensor.shape):
            view = np.lib.stride_tricks.as_strided(
                flat[tensor.offset :],
                shape=tensor.shape,
                strides=tuple(s * dtype.itemsize for s in tensor.stride),
                writeable=False,
            )
            values = np.array(view, dtype=dtype.newbyteorder("="), order="C")
        else:
            values = np.zeros(tensor.shape, dtype=dtype.newbyteorder("="))
        if code is None:  # bfloat16 bits are the top half of a float32
            values = (values.astype(np.uint32) << 16).view(np.float32)
        return values


_STORAGE_DTYPES_BY_NAME: dict[str, str | None] = {name: code for name, code in _STORAGE_DTYPES.values()}
# torch.save stores records uncompressed and weights barely compress; a re-zipped file stays far below this.
_MAX_INFLATION = 20


def load_torch_file(path: str | Path) -> Any:
    """Safely unpickle a whole ``torch.save`` file, tensors read into numpy arrays."""
    with TorchArchive(path) as archive:
        try:
            return map_tensors(archive.load(), lambda t: t.numpy())
        except ModelError as exc:
            if str(archive.path) in str(exc):
                raise
            raise type(exc)(f"{archive.path}: {exc}") from exc


def _count_opcodes(data: bytes, where: str) -> None:
    """Refuse a pickle of more than ``MAX_PICKLE_OPS`` opcodes (read, not run)."""
    for count, _ in enumerate(pickletools.genops(data), 1):
        if count > MAX_PICKLE_OPS:
            raise ModelError(
                f"{where}: the checkpoint's pickle has more than {MAX_PICKLE_OPS} operations; "
                "an EAT checkpoint needs about 22,000"
            )


def map_tensors(obj: Any, fn: Callable[[StoredTensor], Any]) -> Any:
    """Copy of ``obj`` with ``fn`` applied to each :class:`StoredTensor` in its dicts, lists and tuples.

    Raises :class:`ModelError` past the walk budget of :class:`.pickle_globals.WalkBudget`.
    """
    return _map(obj, fn, 0, WalkBudget())


def _map(obj: Any, fn: Callable[[StoredTensor], Any], depth: int, budget: WalkBudget) -> Any:
    budget.visit(depth)
    if isinstance(obj, StoredTensor):
        return fn(obj)
    if isinstance(obj, dict):
        out = obj.copy()
        for key, value in obj.items():
            out[key] = _map(value, fn, depth + 1, budget)
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(_map(v, fn, depth + 1, budget) for v in obj)
    return obj
