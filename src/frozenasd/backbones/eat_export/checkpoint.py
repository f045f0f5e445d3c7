"""Load released EAT checkpoints into the encoder's canonical state dict, without fairseq.

A checkpoint is a file or a Hugging Face folder in one of the layouts of :mod:`.layouts`. Pickles are
read by :mod:`frozenasd.safe_pickle` (nothing in the file is executed); safetensors files need no
pickle at all.
The encoder's shape, :class:`~frozenasd.backbones.eat_export.config.EATConfig` (re-exported here), needs no
PyTorch, and neither does checking a file (:func:`inspect_eat_checkpoint`); building tensors does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frozenasd.backbones.eat_export.config import HEAD_DIM, EATConfig, expected_shapes
from frozenasd.backbones.eat_export.layouts import detect_layout, hf_config, map_keys, model_cfg
from frozenasd.errors import ModelError
from frozenasd.hashing import file_sha256
from frozenasd.safe_pickle.torch_zip import StoredTensor, TorchArchive

if TYPE_CHECKING:
    import torch

__all__ = [
    "HEAD_DIM",
    "HF_WEIGHT_FILES",
    "EATConfig",
    "expected_shapes",
    "file_sha256",
    "inspect_eat_checkpoint",
    "load_eat_checkpoint",
    "model_name_for",
    "resolve_weights_file",
]

log = logging.getLogger(__name__)

# Weights files of the hub port, in order of preference (safetensors cannot hide code).
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_ENCODER_KEYS = ("patch_embed.weight", "positions", "blocks.0.mlp.fc1.weight")


@dataclass(frozen=True)
class _Entry:
    """One source tensor: shape and stored dtype, and a reader giving a numpy array or a tensor."""

    shape: tuple[int, ...]
    dtype: str
    read: Callable[[], Any]


@dataclass
class _Opened:
    weights: Path
    layout: str
    entries: dict[str, _Entry]
    config: EATConfig
    cfg: Any
    archive: TorchArchive | None

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def resolve_weights_file(path: str | Path) -> Path:
    """The weights file for ``path``: the file itself, or the HF weights file inside a folder."""
    path = Path(path)
    if path.is_dir():
        for name in HF_WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise ModelError(f"{path}: folder holds no {' or '.join(HF_WEIGHT_FILES)}")
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint file not found")
    return path


def model_name_for(weights: Path) -> str:
    """A model name from the file name; for HF files (``model.safetensors``) the folder's name."""
    if weights.name not in HF_WEIGHT_FILES:
        return weights.stem
    folder = weights.parent
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name.split("--")[-1]  # Hugging Face cache: models--org--name
    return folder.name or weights.stem


def _read_safetensors(path: Path) -> dict[str, _Entry]:
    """Entries of a safetensors file (shapes and dtypes from its header; no data read)."""
    from safetensors import safe_open

    names = {"F16": "float16", "F32": "float32", "F64": "float64", "BF16": "bfloat16"}
    try:
        with safe_open(str(path), framework="numpy") as fh:
            slices = {key: fh.get_slice(key) for key in fh.keys()}
            return {
                key: _Entry(
                    tuple(sl.get_shape()), names.get(sl.get_dtype(), sl.get_dtype()), _st_reader(path, key)
                )
                for key, sl in slices.items()
            }
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise ModelError(f"{path}: not a readable safetensors file ({exc})") from exc


def _st_reader(path: Path, key: str) -> Callable[[], Any]:
    def read() -> Any:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return fh.get_tensor(key)

    return read


def _no_ema(weights: Path) -> ModelError:
    return ModelError(
        f"{weights}: has no EMA teacher (_ema); use_ema needs a fairseq pre-training checkpoint"
    )


def _entries(
    weights: Path, use_ema: bool
) -> tuple[str, dict[str, _Entry], Any, list[str], TorchArchive | None]:
    """(layout, canonical entries, cfg, unexpected keys, archive to close or None)."""
    if weights.suffix == ".safetensors":
        raw = _read_safetensors(weights)
        if use_ema:
            raise _no_ema(weights)
        layout = "canonical" if "patch_embed.weight" in raw else "hf"
        mapped, unexpected = map_keys(layout, raw)
        return layout, mapped, hf_config(weights), unexpected, None
    archive = TorchArchive(weights)
    try:
        layout, state, cfg = detect_layout(archive.load(), weights)
        if use_ema:
            ema = state.get("_ema")
            if not isinstance(ema, Mapping):
                raise _no_ema(weights)
            state = dict(ema)
        tensors = {
            k: _Entry(v.shape, v.dtype, v.numpy) for k, v in state.items() if isinstance(v, StoredTensor)
        }
        mapped, unexpected = map_keys("fairseq_state_dict" if use_ema else layout, tensors)
        unexpected += [k for k, v in state.items() if not isinstance(v, StoredTensor) and k != "_ema"]
        return layout + ("+ema" if use_ema else ""), mapped, cfg, unexpected, archive
    except BaseException:
        archive.close()
        raise


def _num_heads(settings: Mapping[str, Any], entries: Mapping[str, _Entry], weights: Path) -> int | None:
    heads = settings.get("num_heads")
    if heads is None:
        return None
    dim = entries["patch_embed.weight"].shape[0]
    if isinstance(heads, bool) or not isinstance(heads, int) or heads <= 0 or dim % heads:
        raise ModelError(f"{weights}: cfg num_heads={heads!r} does not divide embed_dim {dim}")
    return heads


def _check_keys(config: EATConfig, entries: Mapping[str, _Entry], unexpected: list[str], where: str) -> None:
    expected = expected_shapes(config)
    missing = [k for k in expected if k not in entries]
    extra = [k for k in entries if k not in expected] + unexpected
    wrong = [
        f"{k} {tuple(entries[k].shape)} (expected {shape})"
        for k, shape in expected.items()
        if k in entries and tuple(entries[k].shape) != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if extra:
        problems.append(f"unexpected keys {extra[:8]}{' ...' if len(extra) > 8 else ''}")
    if wrong:
        problems.append(f"wrong shapes: {'; '.join(wrong[:6])}")
    if problems:
        raise ModelError(f"{where}: does not fit the EAT encoder: " + "; ".join(problems))


def _open(path: str | Path, use_ema: bool) -> _Opened:
    weights = resolve_weights_file(path)
    layout, entries, cfg, unexpected, archive = _entries(weights, use_ema)
    try:
        where = f"{weights} ({layout} layout)"
        settings = model_cfg(cfg)
        if settings.get("layer_norm_first") is True:
            raise ModelError(f"{where}: cfg says layer_norm_first=True (pre-norm); EAT is post-norm")
        absent = [k for k in _ENCODER_KEYS if k not in entries]
        if absent:
            more = f"; unexpected keys {unexpected[:8]}" if unexpected else ""
            raise ModelError(f"{where}: does not fit the EAT encoder: missing keys {absent}{more}")
        try:
            config = EATConfig.from_state_dict(entries, num_heads=_num_heads(settings, entries, weights))
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}") from exc
        _check_keys(config, entries, unexpected, where)
        eps = settings.get("norm_eps")
        if isinstance(eps, float) and abs(eps - config.norm_eps) > 1e-12:
            raise ModelError(f"{where}: cfg norm_eps={eps} differs from EAT's {config.norm_eps}")
    except BaseException:
        if archive is not None:
            archive.close()
        raise
    return _Opened(weights, layout, entries, config, cfg, archive)


def _info(opened: _Opened, use_ema: bool) -> dict:
    dtypes = sorted({e.dtype for e in opened.entries.values()})
    config = opened.config
    return {
        "layout": opened.layout,
        "source_path": str(opened.weights),
        "source_file": opened.weights.name,
        "model_name": model_name_for(opened.weights),
        "size": config.size_name,
        "dtype": dtypes[0] if len(dtypes) == 1 else "mixed(" + ",".join(dtypes) + ")",
        "table_rows": config.max_positions,
        "max_frames": config.max_frames,
        "use_ema": use_ema,
        "cfg": opened.cfg,
    }


def inspect_eat_checkpoint(path: str | Path, *, use_ema: bool = False) -> tuple[EATConfig, dict]:
    """Config and description of a checkpoint, checked key by key, reading no tensor data.

    ``info`` is that of :func:`load_eat_checkpoint` without ``source_sha256``.
    """
    opened = _open(path, use_ema)
    opened.close()
    return opened.config, _info(opened, use_ema)


def load_eat_checkpoint(
    path: str | Path, *, use_ema: bool = False
) -> tuple[dict[str, torch.Tensor], EATConfig, dict]:
    """Load an EAT checkpoint of any known layout (see :mod:`.layouts`).

    Returns the encoder's canonical state dict in float32 (key names of
    :class:`frozenasd.backbones.eat_export.model.EATEncoder`), the inferred :class:`EATConfig`, and ``info``:
    ``layout``, ``source_path``, ``source_file``, ``source_sha256``, ``model_name``, ``size``,
    ``dtype`` (as stored), ``table_rows``, ``max_frames``, ``use_ema`` and ``cfg`` (plain data or None).
    ``use_ema=True`` takes the EMA teacher of a fairseq pre-training checkpoint instead of the student.
    Raises :class:`ModelError` naming the file and the keys when the file does not fit.
    """
    import numpy as np
    import torch

    opened = _open(path, use_ema)
    try:
        state: dict[str, torch.Tensor] = {}
        for key in expected_shapes(opened.config):
            value = opened.entries[key].read()
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(value)
            state[key] = value.to(torch.float32).contiguous()
    finally:
        opened.close()
    info = _info(opened, use_ema)
    info["source_sha256"] = file_sha256(opened.weights)
    config = opened.config
    log.info(
        "loaded %s: %s layout, %s, depth %d, dim %d, %d table rows",
        opened.weights,
        opened.layout,
        info["dtype"],
        config.depth,
        config.embed_dim,
        config.max_positions,
    )
    return state, config, info
