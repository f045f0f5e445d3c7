"""Recognise the layout of a released EAT checkpoint and map its key names to the canonical ones.

Layouts understood (key names as in the EAT spec, section 3 and appendix):

- ``fairseq_pretrain``: ``torch.save`` dict of the fairseq trainer; ``state['model']`` holds the fp16
  student (``modality_encoders.IMAGE.*``, ``blocks.*``), the CNN decoder (ignored) and ``_ema``, a dict of
  the fp32 EMA teacher under the same names (used only with ``use_ema=True``);
- ``fairseq_finetune``: the same names behind a ``model.`` prefix, plus ``fc_norm.*`` / ``head.*`` (ignored);
- ``fairseq_state_dict``: a bare ``Data2VecMultiModel`` state dict (student names, optional ``_ema``);
- ``hf``: the Hugging Face port (``model.safetensors`` or ``pytorch_model.bin``, or their folder):
  ``model.extra_tokens``, ``model.local_encoder.proj.*``, ``model.fixed_positional_encoder.positions``,
  ``model.pre_norm.*``, ``model.blocks.*`` (``model.fc_norm.*`` / ``model.head.*`` ignored);
- ``canonical``: this package's own key names
  (:func:`~frozenasd.backbones.eat_export.config.expected_shapes`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from frozenasd.errors import ModelError
from frozenasd.safe_pickle.pickle_globals import to_plain

_IMAGE = "modality_encoders.IMAGE."
# fairseq student / teacher names -> canonical names (blocks.* keep their names)
_FAIRSEQ_NAMES = {
    _IMAGE + "extra_tokens": "cls_token",
    _IMAGE + "local_encoder.proj.weight": "patch_embed.weight",
    _IMAGE + "local_encoder.proj.bias": "patch_embed.bias",
    _IMAGE + "fixed_positional_encoder.positions": "positions",
    _IMAGE + "context_encoder.norm.weight": "pre_norm.weight",
    _IMAGE + "context_encoder.norm.bias": "pre_norm.bias",
}
_HF_NAMES = {
    "model.extra_tokens": "cls_token",
    "model.local_encoder.proj.weight": "patch_embed.weight",
    "model.local_encoder.proj.bias": "patch_embed.bias",
    "model.fixed_positional_encoder.positions": "positions",
    "model.pre_norm.weight": "pre_norm.weight",
    "model.pre_norm.bias": "pre_norm.bias",
}
# keys that are not part of the feature encoder
_FAIRSEQ_IGNORED = re.compile(r"^(_ema$|modality_encoders\.IMAGE\.(decoder\.|encoder_mask$))")
_FINETUNE_IGNORED = re.compile(r"^(fc_norm|head)\.")
_HF_IGNORED = re.compile(r"^(model\.)?(fc_norm|head)\.")


def model_cfg(cfg: Any) -> dict:
    """The encoder settings of a fairseq cfg (pre-training or fine-tuning) or of an HF config.json."""
    if not isinstance(cfg, Mapping):
        return {}
    model = cfg.get("model")
    if isinstance(model, Mapping):
        pretrained = model.get("pretrained_model_args")
        if isinstance(pretrained, Mapping) and isinstance(pretrained.get("model"), Mapping):
            return dict(pretrained["model"])
        return dict(model)
    return dict(cfg)


def hf_config(weights: Path) -> dict | None:
    """The ``config.json`` beside an HF weights file, or ``None`` when there is none."""
    config_json = weights.parent / "config.json"
    if not config_json.is_file():
        return None
    try:
        cfg = json.loads(config_json.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{config_json}: unreadable config.json ({exc})") from exc
    except RecursionError:
        raise ModelError(f"{config_json}: unreadable config.json (nested too deeply)") from None
    return cfg if isinstance(cfg, dict) else None


def _plain_cfg(cfg: Any, path: Path) -> Any:
    try:
        return to_plain(cfg)
    except ModelError as exc:
        raise ModelError(f"{path}: cfg: {exc}") from exc


def detect_layout(root: Any, path: Path) -> tuple[str, dict[str, Any], Any]:
    """(layout, the model's state dict, cfg as plain data) of an unpickled checkpoint."""
    if not isinstance(root, Mapping):
        raise ModelError(f"{path}: checkpoint holds a {type(root).__name__}, not a dict")
    model = root.get("model")
    if isinstance(model, Mapping):
        cfg = root.get("cfg")
        if cfg is None and root.get("args") is not None:
            cfg = {"model": root["args"]}  # older fairseq: an argparse.Namespace
        keys = list(model)
        if any(k.startswith(_IMAGE) for k in keys):
            return "fairseq_pretrain", dict(model), _plain_cfg(cfg, path)
        if any(k.startswith("model." + _IMAGE) for k in keys):
            return "fairseq_finetune", dict(model), _plain_cfg(cfg, path)
        raise ModelError(f"{path}: state['model'] holds no EAT encoder keys (first keys: {keys[:5]})")
    keys = list(root)
    if any(k.startswith(_IMAGE) for k in keys):
        return "fairseq_state_dict", dict(root), None
    if "patch_embed.weight" in root:
        return "canonical", dict(root), None
    if any(k.startswith("model.") for k in keys):
        return "hf", dict(root), hf_config(path)
    raise ModelError(f"{path}: not an EAT checkpoint (first keys: {keys[:5]})")


def canonical_name(layout: str, key: str) -> str | None:
    """Canonical name of ``key``; ``""`` for keys outside the encoder; ``None`` for unknown keys."""
    if layout == "canonical":
        return key
    if layout == "hf":
        if _HF_IGNORED.match(key):
            return ""
        if key.startswith("model.blocks."):
            return key[len("model.") :]
        return _HF_NAMES.get(key)
    if layout == "fairseq_finetune":
        if _FINETUNE_IGNORED.match(key):
            return ""
        if not key.startswith("model."):
            return None
        key = key[len("model.") :]
    if _FAIRSEQ_IGNORED.match(key):
        return ""
    if key.startswith("blocks."):
        return key
    return _FAIRSEQ_NAMES.get(key)


def map_keys(layout: str, state: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Canonical name -> source value, and the keys that fit no rule."""
    mapped: dict[str, Any] = {}
    unexpected: list[str] = []
    for key, value in state.items():
        name = canonical_name(layout, key)
        if name is None:
            unexpected.append(key)
        elif name:
            mapped[name] = value
    return mapped, unexpected
