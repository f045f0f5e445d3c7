"""frozenasd: anomalous-sound detection with frozen pre-trained audio encoders.

``from frozenasd import ScoringModel`` fits a detector on normal recordings (files, folders or
waveforms) with any backbone, scores new ones and saves it; the seed's names are in
:mod:`frozenasd.compat`. Importing the package loads nothing else until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Scored", "ScoringModel", "__version__"]

if TYPE_CHECKING:
    from frozenasd.scoring import Scored, ScoringModel


def __getattr__(name: str) -> Any:
    # Lazy: `frozenasd.__version__` (read by every module) must not import scikit-learn or ONNX Runtime.
    if name in ("ScoringModel", "Scored"):
        from frozenasd import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'frozenasd' has no attribute {name!r}")
