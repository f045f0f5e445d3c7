"""Which globals a checkpoint's pickle may name, and the plain data each one builds.

- ``collections.OrderedDict`` / ``defaultdict``, plain builtin types, numpy scalars, dtypes and arrays;
- classes of ``omegaconf``, ``fairseq``, ``hydra``, ``typing`` and ``argparse.Namespace`` become inert
  :class:`InertObject` stand-ins holding their pickled state; :func:`to_plain` turns them (a pickled
  omegaconf ``DictConfig`` included) back into dicts and lists.

Globals of ``torch`` (tensors, storages) are resolved by :mod:`.torch_zip`. Any other global
(``os.system``, ``builtins.eval``, ``subprocess.Popen``...) is not allowed: :func:`plain_global` gives
``None`` and the unpickler raises :class:`UnsafeCheckpointError` before anything is called.

What the allowed calls build is bounded: a ``range`` or ``bytes`` of at most ``MAX_ITEMS`` items, a
numpy array of at most ``MAX_PICKLE_BYTES``; walks over the result (:func:`to_plain`) stop at
``MAX_DEPTH`` levels and ``MAX_NODES`` visits, so shared parts cannot multiply the work.
"""

from __future__ import annotations

import _compat_pickle
import math
from collections import OrderedDict, defaultdict
from typing import Any

import numpy as np

from frozenasd.errors import ModelError

# The data.pkl of the largest released EAT layout (EAT-large pre-training, omegaconf cfg, as written by
# tests/eat_checkpoints.py) is 84 KB: 22,300 opcodes, ~10 levels deep. The budgets leave more than 20x
# room (a real trainer's optimizer state adds a tensor record or two per weight).
MAX_PICKLE_BYTES = 2 << 20
MAX_PICKLE_OPS = 500_000
MAX_ITEMS = 1 << 20  # the longest range or bytes one call may build
MAX_DEPTH = 100
MAX_NODES = 200_000


class UnsafeCheckpointError(ModelError):
    """A checkpoint's pickle asks for a global that is not on the allow-list."""


class WalkBudget:
    """Counts the nodes a walk over unpickled data visits; raises past ``MAX_DEPTH`` or ``MAX_NODES``."""

    def __init__(self) -> None:
        self.left = MAX_NODES

    def visit(self, depth: int) -> None:
        self.left -= 1
        if depth > MAX_DEPTH:
            raise ModelError(f"the checkpoint's data is nested more than {MAX_DEPTH} levels deep")
        if self.left < 0:
            raise ModelError(
                f"the checkpoint's data has more than {MAX_NODES} parts (shared ones counted per use)"
            )


_PLAIN_TYPES = (dict, list, tuple, set, frozenset, str, bytes, bytearray) + (
    int,
    float,
    complex,
    bool,
    slice,
    range,
)
_PLAIN_BUILTINS: dict[str, Any] = {t.__name__: t for t in _PLAIN_TYPES}
_NDARRAY_NAME = "numpy.ndarray"  # stands for np.ndarray as _reconstruct's argument; never built itself
# Modules whose classes are replaced by inert stand-ins: configuration objects, never code to run.
_STUB_PACKAGES = ("omegaconf", "fairseq", "hydra", "typing")


class InertObject:
    """Stand-in for an object of a class that is never imported: it only records what was pickled."""

    _qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items={}, list=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"][key] = value

    def append(self, value: Any) -> None:
        self.__dict__["list"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["list"].extend(values)

    def __getitem__(self, item: Any) -> InertObject:
        # typing.Dict[str, Any] and similar subscripted annotations
        return stub_class(self._qualname + "[]")(item)

    def __class_getitem__(cls, item: Any) -> InertObject:
        return stub_class(cls._qualname + "[]")(item)

    def __repr__(self) -> str:
        return f"<inert {self._qualname}>"


_STUB_CLASSES: dict[str, type[InertObject]] = {}


def stub_class(qualname: str) -> type[InertObject]:
    """The inert stand-in class for ``qualname`` (one class per name)."""
    cls = _STUB_CLASSES.get(qualname)
    if cls is None:
        cls = type(qualname.rsplit(".", 1)[-1], (InertObject,), {"_qualname": qualname})
        _STUB_CLASSES[qualname] = cls
    return cls


def _inert_qualname(obj: Any) -> str | None:
    if isinstance(obj, InertObject):
        return obj._qualname
    return None


# --- functions the pickle may call (each only builds data) -------------------------------------------


def _ordered_dict(*args: Any) -> OrderedDict:
    return OrderedDict(*args)


def _defaultdict(factory: Any = None, *args: Any) -> defaultdict:
    if factory is not None and factory not in (*_PLAIN_BUILTINS.values(), *_SIZED_BUILTINS.values()):
        raise UnsafeCheckpointError(f"defaultdict with factory {factory!r} is not allowed")
    return defaultdict(factory, *args)


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # protocol-2 pickles store bytes as encode(str, 'latin1')
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError("_codecs.encode is allowed only to rebuild latin1 bytes")
    return text.encode("latin1")


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype):
        raise ModelError("malformed numpy scalar record")
    if dtype.hasobject:
        return data
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise ModelError("malformed numpy scalar record")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _sized(kind: type, what: str) -> Any:
    """``kind`` (``bytes``, ``bytearray``) refusing a length or range over ``MAX_ITEMS``."""

    def build(*args: Any) -> Any:
        if args and isinstance(args[0], int | range) and _length(args[0]) > MAX_ITEMS:
            raise ModelError(f"the checkpoint's pickle builds a {what} of {_length(args[0])} items")
        return kind(*args)

    return build


def _length(arg: int | range) -> int:
    return len(arg) if isinstance(arg, range) else arg


def _range(*args: Any) -> range:
    built = range(*args)
    if len(built) > MAX_ITEMS:
        raise ModelError(f"the checkpoint's pickle builds a range of {len(built)} items")
    return built


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not stub_class(_NDARRAY_NAME):
        raise UnsafeCheckpointError(f"numpy array of type {subtype!r} is not allowed")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ModelError("malformed numpy array record")
    dtype = np.dtype(dtype)
    if math.prod(shape) * max(dtype.itemsize, 1) > MAX_PICKLE_BYTES:
        raise ModelError(f"the checkpoint's pickle builds a numpy array of shape {shape}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _np_dtype(*args: Any) -> np.dtype:
    return np.dtype(*args)


def _type_of(obj: Any) -> Any:
    if obj is not None:
        raise UnsafeCheckpointError("builtins.type is allowed only for type(None)")
    return type(None)


def _getitem(container: Any, item: Any) -> Any:
    if not isinstance(container, type) or not issubclass(container, InertObject):
        raise UnsafeCheckpointError("operator.getitem is allowed only on typing annotations")
    return container[item]


_SIZED_BUILTINS: dict[str, Any] = {
    "range": _range,
    "bytes": _sized(bytes, "bytes object"),
    "bytearray": _sized(bytearray, "bytearray"),
}


def python3_name(module: str, name: str) -> tuple[str, str]:
    """The global pickle would import: protocol-2 streams use Python 2 names (``__builtin__.long``)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def plain_global(module: str, name: str) -> Any:
    """The object a pickle gets for ``module.name`` (a Python 3 name), or ``None`` when it is not allowed."""
    if module == "collections" and name == "OrderedDict":
        return _ordered_dict
    if module == "collections" and name == "defaultdict":
        return _defaultdict
    if module == "builtins" and name in _SIZED_BUILTINS:
        return _SIZED_BUILTINS[name]
    if module == "builtins" and name in _PLAIN_BUILTINS:
        return _PLAIN_BUILTINS[name]
    if module == "builtins" and name == "type":
        return _type_of
    if module == "_codecs" and name == "encode":
        return _codecs_encode
    if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        return {"scalar": _np_scalar, "_reconstruct": _np_reconstruct}.get(name)
    if (module, name) == ("numpy", "dtype"):
        return _np_dtype
    if (module, name) == ("numpy", "ndarray"):
        return stub_class(_NDARRAY_NAME)
    if (module, name) == ("operator", "getitem"):
        return _getitem
    if (module, name) == ("argparse", "Namespace") or module.split(".")[0] in _STUB_PACKAGES:
        return stub_class(f"{module}.{name}")
    return None


_OMEGACONF_CONTAINERS = ("omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig")


def to_plain(obj: Any) -> Any:
    """Turn inert stand-ins (omegaconf configs, ``argparse.Namespace``...) back into plain data.

    A pickled ``DictConfig`` / ``ListConfig`` keeps its entries in ``_content`` as nodes whose value is
    ``_val``; those become a dict / list of plain values. Another stand-in becomes the dict of its
    pickled attributes, or its single constructor argument (an enum member). Numpy scalars become
    Python numbers; tensors are left as they are. Raises :class:`ModelError` past the walk budget.
    """
    return _plain(obj, frozenset(), 0, WalkBudget())


def _plain(obj: Any, seen: frozenset[int], depth: int, budget: WalkBudget) -> Any:
    budget.visit(depth)
    if id(obj) in seen:
        return None
    seen = seen | {id(obj)}
    depth += 1

    def plain(value: Any) -> Any:
        return _plain(value, seen, depth, budget)

    name = _inert_qualname(obj)
    if name is not None:
        state = obj.state if isinstance(obj.state, dict) else {}
        if name in _OMEGACONF_CONTAINERS:
            return plain(state.get("_content"))
        if name.startswith("omegaconf.nodes."):
            return plain(state.get("_val"))
        if state:
            return {k: plain(v) for k, v in state.items() if k != "_parent"}
        if obj.items:
            return {k: plain(v) for k, v in obj.items.items()}
        if obj.list:
            return [plain(v) for v in obj.list]
        if len(obj.args) == 1:
            return plain(obj.args[0])
        return name
    if isinstance(obj, type) and issubclass(obj, InertObject):
        return obj._qualname
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
