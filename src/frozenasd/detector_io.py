"""Save fitted detectors and scoring Pipelines as ``.npz`` files, and load them without pickle.

A file holds numeric arrays (the fitted state) and one string array ``__meta__``: JSON with the
format name and version, and per estimator its class name, its parameters (``get_params``), its
scalar fitted attributes and the names of its arrays. Loading uses ``np.load(allow_pickle=False)``
and only rebuilds the classes listed in ``SAVEABLE``, so a file can never run code.
"""

from __future__ import annotations

import json
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
from frozenasd.detectors import DomainBanks, KMeansNN, KNNDetector, MahalanobisDetector
from frozenasd.detectors.scaling import FlooredStandardScaler
from frozenasd.errors import ModelError

FORMAT = "frozenasd-detector"
FORMAT_VERSION = 1
_META = "__meta__"
_OPTIONAL = ("feature_names_in_",)  # set by scikit-learn when fitted on a DataFrame

# class name -> (class, fitted attributes a file must restore)
SAVEABLE: dict[str, tuple[type, tuple[str, ...]]] = {
    **{
        c.__name__: (c, c._state_attributes)
        for c in (KMeansNN, KNNDetector, DomainBanks, MahalanobisDetector)
    },
    "StandardScaler": (StandardScaler, ("mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_")),
    "FlooredStandardScaler": (
        FlooredStandardScaler,
        ("mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_"),
    ),
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
    meta, _ = _read(path)
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
    attrs = SAVEABLE[name][1] + tuple(a for a in _OPTIONAL if hasattr(est, a))
    for attr in attrs:
        value = getattr(est, attr)
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
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
    allowed = set(required) | set(_OPTIONAL)
    unexpected = sorted(set(values) - allowed)
    if unexpected:
        raise ModelError(f"{path}: unexpected fitted attributes {unexpected} for {name}")
    missing = [a for a in required if a not in values]
    if missing:
        raise ModelError(f"{path}: the {name} lacks its fitted state {missing}")
    for attr, value in values.items():
        if isinstance(value, dict) and isinstance(value.get("strings"), list):
            value = np.array(value["strings"], dtype=object)
        setattr(est, attr, value)
    return est


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


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON description and the arrays of a file, checked for format and version."""
    if not path.is_file():
        raise ModelError(f"{path}: no such detector file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ModelError(f"{path}: holds a single array, not an .npz detector file")
        with loaded as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path}: not a readable .npz detector file ({exc})") from exc
    raw = arrays.pop(_META, None)
    if raw is None or raw.dtype.kind != "U" or raw.size != 1:
        raise ModelError(f"{path}: no {_META} description; not a frozenasd detector file")
    try:
        meta = json.loads(str(raw.reshape(-1)[0]))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: the {_META} description is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelError(f"{path}: not a frozenasd detector file (format {found!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise ModelError(
            f"{path}: format version {meta.get('version')!r}; this version reads {FORMAT_VERSION}"
        )
    for key, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise ModelError(f"{path}: array {key!r} has dtype {value.dtype}; only numbers are allowed")
    return meta, arrays
