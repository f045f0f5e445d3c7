"""EAT (Efficient Audio Transformer): checkpoint loading and ONNX export.

Importing this package does not import PyTorch; the names below are loaded on first use. Loading
tensors and exporting need the ``export`` extra (torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "EATConfig": "frozenasd.backbones.eat_export.model",
    "EATEncoder": "frozenasd.backbones.eat_export.model",
    "load_eat_checkpoint": "frozenasd.backbones.eat_export.checkpoint",
    "inspect_eat_checkpoint": "frozenasd.backbones.eat_export.checkpoint",
    "export_onnx": "frozenasd.backbones.eat_export.export",
    "UnsafeCheckpointError": "frozenasd.safe_pickle",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
