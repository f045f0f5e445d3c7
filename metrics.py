"""Compatibility shim: keeps ``from metrics import compute_and_save_metrics`` working from the repo root.

The implementation lives in :mod:`frozenasd.outputs.files`; from any folder, import it from
:mod:`frozenasd.compat`.
"""

from __future__ import annotations

from frozenasd.compat import compute_and_save_metrics

__all__ = ["compute_and_save_metrics"]
