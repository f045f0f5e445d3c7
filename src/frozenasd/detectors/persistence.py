"""Save fitted detectors and scoring Pipelines as ``.npz`` files, and load them without pickle.

A file holds numeric arrays (the fitted state) and one string array ``__meta__``: JSON with the
format name and version, and per estimator its class name, its parameters (``get_params``), its
scalar fitted attributes and the names of its arrays. Loading reads ``.npy`` members of plain
numbers only (never a pickle) and only rebuilds the classes listed in ``SAVEABLE``, so a file can never
run code. It reads ``__meta__`` first (at most ``MAX_META_BYTES``, nested at most ``MAX_META_DEPTH``
levels, no NaN or infinity), then only the arrays it names: another member is refused unread, and each
array's header (dtype, shape) is checked against the member's size before its data is read. Arrays with
NaN or infinite values are refused.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.validation import check_is_fitted

from frozenasd import __version__
from frozenasd.detectors import (
    DomainBanks,
    FrameBank,
    FusionDetector,
    KMeansNN,
    KNNDetector,
    MahalanobisDetector,
)
from frozenasd.detectors.scaling import FlooredStandardScaler, NoScaler
from frozenasd.errors import ModelError
from frozenasd.zip_limits import inflation_reason, read_member, unreadable_reason

FORMAT = "frozenasd-detector"
FORMAT_VERSION = 1
_META = "__meta__"
_OPTIONAL = ("feature_names_in_",)  # set by scikit-learn when fitted on a DataFrame
# Fitted attributes of one class that older files lack: a FlooredStandardScaler saved before it dropped
# constant dimensions keeps every dimension.
_OPTIONAL_BY_CLASS: dict[str, tuple[str, ...]] = {"FlooredStandardScaler": ("keep_",)}
# The description is a few KB (its longest part lists the clips a fit skipped); this allows ~4 million
# characters (stored as UTF-32). It nests about 5 levels deep.
MAX_META_BYTES = 16 << 20
MAX_META_DEPTH = 32
# np.savez stores members uncompressed; a compressed member may inflate this much (beyond its first MiB).
MAX_INFLATION = 100

# class name -> (class, fitted attributes a file must restore)
SAVEABLE: dict[str, tuple[type, tuple[str, ...]]] = {
    **{
        c.__name__: (c, c._state_attributes)
        for c in (KMeansNN, KNNDetector, DomainBanks, MahalanobisDetector, FusionDetector, FrameBank)
    },
    "StandardScaler": (StandardScaler, ("mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_")),
    "FlooredStandardScaler": (
        FlooredStandardScaler,
        ("mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_"),
    ),
    "NoScaler": (NoScaler, ("n_features_in_",)),
    "MinMaxScaler": (
        MinMaxScaler,
        ("min_", "scale_", "data_min_", "data_max_", "data_range_", "n_samples_seen_", "n_features_in_"),
    ),
}


def save_detector(detector: Any, path: str | os.PathLike) -> None:
    """Write a fitted detector (or scaler) of a class in ``SAVEABLE`` to ``path`` (.npz)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    entry = _encode(detector, "0.", arrays, path)
    _write(path, {"kind": "detector", "estimator": entry}, arrays)


def load_detector(path: str | os.PathLike) -> Any:
    """The fitted detector saved by ``save_detector``."""
    path = Path(path)
    meta, arrays = _read(path)
    if meta.get("kind") != "detector" or not isinstance(meta.get("estimator"), dict):
        raise ModelError(f"{path}: holds a {meta.get('kind')!r}, not a detector (see load_scoring_pipeline)")
    detector = _decode(meta["estimator"], "0.", arrays, path)
    _check_usable(detector, path)
    return detector


def save_scoring_pipeline(pipe: Pipeline, path: str | os.PathLike, info: dict | None = None) -> None:
    """Write a fitted Pipeline of ``SAVEABLE`` steps (e.g. StandardScaler → detector → MinMaxScaler).

    ``info``: JSON-serialisable facts kept beside it (read back with ``pipeline_info``).
    """
    path = Path(path)
    if not isinstance(pipe, Pipeline):
        raise ModelError(f"{path}: expected a scikit-learn Pipeline, got {type(pipe).__name__}")
    arrays: dict[str, np.ndarray] = {}
    steps = []
    for i, (name, step) in enumerate(pipe.steps):
        entry = _encode(step, f"{i}.", arrays, path, where=f"step {name!r}: ")
        steps.append({"name": name, **entry})
    try:
        info = json.loads(json.dumps(info or {}))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: the info cannot be saved as JSON ({exc})") from exc
    _write(path, {"kind": "pipeline", "steps": steps, "info": info}, arrays)


def pipeline_info(path: str | os.PathLike) -> dict:
    """The ``info`` saved with a scoring pipeline (empty when none was given)."""
    path = Path(path)
    meta, _ = _read(path, with_arrays=False)
    info = meta.get("info", {})
    if not isinstance(info, dict):
        raise ModelError(f"{path}: the saved info is not a mapping")
    return info


def load_scoring_pipeline(path: str | os.PathLike) -> Pipeline:
    """The fitted Pipeline saved by ``save_scoring_pipeline``."""
    path = Path(path)
    meta, arrays = _read(path)
    if meta.get("kind") != "pipeline" or not isinstance(meta.get("steps"), list) or not meta["steps"]:
        raise ModelError(f"{path}: holds a {meta.get('kind')!r}, not a scoring pipeline (see load_detector)")
    steps = []
    for i, entry in enumerate(meta["steps"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ModelError(f"{path}: step {i} has no name")
        steps.append((entry["name"], _decode(entry, f"{i}.", arrays, path)))
    try:
        pipe = Pipeline(steps)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: the saved steps do not form a Pipeline: {exc}") from exc
    _check_usable(pipe, path)
    return pipe


def _encode(est: Any, prefix: str, arrays: dict[str, np.ndarray], path: Path, where: str = "") -> dict:
    """The JSON entry of one fitted estimator; its numeric arrays go into ``arrays``."""
    name = type(est).__name__
    if name not in SAVEABLE or SAVEABLE[name][0] is not type(est):
        raise ModelError(f"{path}: {where}cannot save {name}; supported: {sorted(SAVEABLE)}")
    try:
        check_is_fitted(est)
    except Exception as exc:
        raise ModelError(f"{path}: {where}the {name} is not fitted") from exc
    params = {}
    for key, value in est.get_params(deep=False).items():
        params[key] = _json_value(value, f"{path}: {where}parameter {key!r} of {name}")
    state, names = {}, []
    optional = _OPTIONAL + _OPTIONAL_BY_CLASS.get(name, ())
    attrs = SAVEABLE[name][1] + tuple(a for a in optional if hasattr(est, a))
    nested = getattr(type(est), "_nested_state", ())
    for attr in attrs:
        value = getattr(est, attr)
        if attr in nested:  # groups of fitted estimators (a fusion's scaler and detector per branch)
            state[attr] = {
                "estimators": [
                    [
                        _encode(e, f"{prefix}{attr}.{k}.{j}.", arrays, path, f"{where}{name}.{attr}[{k}]: ")
                        for j, e in enumerate(group)
                    ]
                    for k, group in enumerate(value)
                ]
            }
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            arrays[prefix + attr] = value
            names.append(attr)
        elif isinstance(value, np.ndarray) and all(isinstance(v, str) for v in value.ravel()):
            state[attr] = {"strings": [str(v) for v in value.ravel()]}
        else:
            state[attr] = _json_value(value, f"{path}: {where}fitted attribute {attr!r} of {name}")
    return {"class": name, "params": params, "state": state, "arrays": names}


def _json_value(value: Any, what: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)) and all(
        v is None or isinstance(v, (bool, int, float, str)) for v in value
    ):
        return list(value)
    raise ModelError(f"{what} cannot be saved: {type(value).__name__} is not a number, string or None")


def _decode(entry: dict, prefix: str, arrays: dict[str, np.ndarray], path: Path) -> Any:
    """Rebuild one estimator from its JSON entry and arrays."""
    name = entry.get("class")
    if name not in SAVEABLE:
        raise ModelError(f"{path}: unknown estimator class {name!r}; this version reads {sorted(SAVEABLE)}")
    cls, required = SAVEABLE[name]
    params, state, names = entry.get("params"), entry.get("state"), entry.get("arrays")
    if not isinstance(params, dict) or not isinstance(state, dict) or not isinstance(names, list):
        raise ModelError(f"{path}: the {name} entry lacks its params, state or array list")
    try:
        est = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
    except TypeError as exc:
        raise ModelError(f"{path}: bad parameters for {name}: {exc}") from exc
    values = dict(state)
    for attr in names:
        key = prefix + str(attr)
        if key not in arrays:
            raise ModelError(f"{path}: array {key!r} of the {name} is missing")
        values[attr] = arrays[key]
    allowed = set(required) | set(_OPTIONAL) | set(_OPTIONAL_BY_CLASS.get(name, ()))
    unexpected = sorted(set(values) - allowed)
    if unexpected:
        raise ModelError(f"{path}: unexpected fitted attributes {unexpected} for {name}")
    missing = [a for a in required if a not in values]
    if missing:
        raise ModelError(f"{path}: the {name} lacks its fitted state {missing}")
    nested = getattr(cls, "_nested_state", ())
    for attr, value in values.items():
        if isinstance(value, dict) and isinstance(value.get("strings"), list):
            value = np.array(value["strings"], dtype=object)
        elif attr in nested:
            value = _decode_groups(value, f"{prefix}{attr}.", arrays, path, f"{name}.{attr}")
        setattr(est, attr, value)
    return est


def _decode_groups(value: Any, prefix: str, arrays: dict[str, np.ndarray], path: Path, what: str) -> list:
    """The groups of fitted estimators saved under one attribute (see ``_encode``)."""
    groups = value.get("estimators") if isinstance(value, dict) else None
    if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
        raise ModelError(f"{path}: {what} must hold groups of estimators")
    return [
        tuple(_entry(e, f"{prefix}{k}.{j}.", arrays, path, what) for j, e in enumerate(group))
        for k, group in enumerate(groups)
    ]


def _entry(entry: Any, prefix: str, arrays: dict[str, np.ndarray], path: Path, what: str) -> Any:
    if not isinstance(entry, dict):
        raise ModelError(f"{path}: an estimator of {what} is not described")
    return _decode(entry, prefix, arrays, path)


def _check_usable(est: Any, path: Path) -> None:
    """Score one dummy row, so that state that does not fit together fails here, not later."""
    n_features = getattr(est, "n_features_in_", None)
    if not isinstance(n_features, int) or n_features < 1:
        raise ModelError(f"{path}: n_features_in_ must be a positive integer, got {n_features!r}")
    try:
        out = est.transform(np.zeros((1, n_features)))
    except Exception as exc:
        raise ModelError(f"{path}: the saved state does not fit together: {exc}") from exc
    if np.shape(out)[0] != 1:
        raise ModelError(f"{path}: the saved state does not fit together: one row gave {np.shape(out)}")


def _write(path: Path, body: dict, arrays: dict[str, np.ndarray]) -> None:
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "frozenasd": __version__, **body}
    arrays = {_META: np.array(json.dumps(meta)), **arrays}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path, with_arrays: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON description and the arrays it names, checked for format, version and values."""
    if not path.is_file():
        raise ModelError(f"{path}: no such detector file")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as fh:
            what = "holds a single array, not" if fh.read(6) == b"\x93NUMPY" else "is not"
        raise ModelError(f"{path}: {what} an .npz detector file")
    try:
        with zipfile.ZipFile(path) as zf:
            members = _members(zf, path)
            if _META not in members:
                raise ModelError(f"{path}: no {_META} description; not a frozenasd detector file")
            meta = _parse_meta(_read_npy(zf, members[_META], path, MAX_META_BYTES, "U"), path)
            named = _array_names(meta)
            unexpected = sorted(set(members) - named - {_META})
            if unexpected:
                shown = ", ".join(repr(k[:80]) for k in unexpected[:5])
                raise ModelError(f"{path}: holds members its {_META} does not name ({shown}); refused unread")
            arrays = {}
            if with_arrays:
                for key in sorted(named & set(members)):
                    arrays[key] = _read_npy(zf, members[key], path, None, "biuf")
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path}: not a readable .npz detector file ({exc})") from exc
    return meta, arrays


def _members(zf: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    """The ``.npy`` members by array name; anything else is refused."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy") or info.filename[:-4] in members:
            raise ModelError(
                f"{path}: member {info.filename[:80]!r} is not an array of an .npz detector file"
            )
        reason = unreadable_reason(info)
        if reason:
            raise ModelError(f"{path}: member {info.filename[:80]!r}: {reason}")
        members[info.filename[:-4]] = info
    return members


def _npy_header(fh: Any, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of an ``.npy`` stream, read without its data."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fh)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(fh)
        raise ValueError(f"npy format version {version}")
    except ValueError as exc:
        raise ModelError(f"{what} has no valid .npy header ({exc})") from exc


def _read_npy(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, limit: int | None, kinds: str
) -> np.ndarray:
    """One ``.npy`` member: its header checked (dtype kind, size agreeing with the member) before its data."""
    key = info.filename[:-4][:80]
    what = f"{path}: array {key!r}"
    reason = inflation_reason(info, MAX_INFLATION)
    if reason:
        raise ModelError(f"{what} {reason}")
    if limit is not None and info.file_size > limit:
        raise ModelError(f"{what} is {info.file_size} bytes, more than the {limit} it can need")
    with zf.open(info) as fh:
        shape, fortran, dtype = _npy_header(fh, what)
        start = fh.tell()
    if dtype.kind not in kinds or dtype.hasobject:
        raise ModelError(
            f"{path}: not a readable .npz detector file: array {key!r} has dtype {dtype}; "
            "only numbers are allowed"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if start + nbytes != info.file_size:
        raise ModelError(
            f"{what}: its header declares {shape} {dtype} ({nbytes} bytes) but the member holds "
            f"{info.file_size - start}"
        )
    raw = read_member(zf, info, info.file_size, str(path), ModelError)
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=start)
    array = array.reshape(shape, order="F" if fortran else "C").copy()
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ModelError(f"{what} holds NaN or infinite values; the file is damaged")
    return array


def _parse_meta(raw: np.ndarray, path: Path) -> dict:
    """The ``__meta__`` JSON, refused when nested too deeply or holding NaN or infinity."""

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"the number {text} is not finite")
        return value

    def no_constant(text: str) -> float:
        raise ValueError(f"{text} is not a number this format holds")

    if raw.size != 1:
        raise ModelError(f"{path}: no {_META} description; not a frozenasd detector file")
    try:
        meta = json.loads(str(raw.reshape(-1)[0]), parse_float=finite, parse_constant=no_constant)
    except RecursionError:
        meta = None
    except ValueError as exc:
        raise ModelError(f"{path}: the {_META} description is not valid JSON ({exc})") from exc
    if meta is None or _depth(meta) > MAX_META_DEPTH:
        raise ModelError(f"{path}: the {_META} description is nested more than {MAX_META_DEPTH} levels deep")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelError(f"{path}: not a frozenasd detector file (format {found!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise ModelError(
            f"{path}: format version {meta.get('version')!r}; this version reads {FORMAT_VERSION}"
        )
    return meta


def _depth(obj: object) -> int:
    """How deeply dicts and lists nest in ``obj`` (without recursion)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _array_names(meta: dict) -> set[str]:
    """The array members ``meta`` names (``<step>.<attribute>``), whatever its other faults."""
    entries = [meta.get("estimator")] if meta.get("kind") == "detector" else meta.get("steps")
    names: set[str] = set()
    stack = [(f"{i}.", e) for i, e in enumerate(entries if isinstance(entries, list) else [])]
    while stack:  # estimators nested in a fusion's state are named by their path (see ``_encode``)
        prefix, entry = stack.pop()
        if not isinstance(entry, dict):
            continue
        listed = entry.get("arrays")
        names.update(f"{prefix}{a}" for a in (listed if isinstance(listed, list) else []))
        state = entry.get("state")
        for attr, value in state.items() if isinstance(state, dict) else ():
            groups = value.get("estimators") if isinstance(value, dict) else None
            for k, group in enumerate(groups if isinstance(groups, list) else []):
                for j, sub in enumerate(group if isinstance(group, list) else []):
                    stack.append((f"{prefix}{attr}.{k}.{j}.", sub))
    return names
