"""Frame detectors: their pooling, their frame size, and their per-frame scores.

A frame detector (``FrameBank``: ``framebank``, ``framebank-topk``) scores the frames ``frames`` pooling
keeps; ``run``, ``fit`` and ``score`` use these helpers to give it that pooling and the extractor's frame
size, and to compute its per-frame scores (written by :mod:`frozenasd.outputs.frame_scores`). Frame
scores are on the clip scores' scale (the pipeline's final min-max step applied to them), so with
``aggregate="max"`` a clip's score is its highest frame score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from frozenasd.embed.encoders.pooling import FRAMES
from frozenasd.errors import FrozenASDError


def frame_detectors() -> list[str]:
    """The names of the detectors that score frames."""
    from frozenasd.detectors import FrameBank
    from frozenasd.detectors.pipeline import DETECTORS

    return sorted(name for name, spec in DETECTORS.items() if issubclass(spec.cls, FrameBank))


def resolve_pooling(detector: str, pooling: str | None) -> str:
    """The pooling a run uses: ``pooling``, or when ``None`` the detector's (frames for frame detectors,
    else mean). A frame detector with another pooling, or ``frames`` for another detector, is an error."""
    frame_names = frame_detectors()
    if detector in frame_names:
        if pooling in (None, FRAMES):
            return FRAMES
        raise FrozenASDError(
            f"detector {detector!r} scores a clip's frames: it needs --pooling {FRAMES} (its default), "
            f"not {pooling!r}"
        )
    if pooling == FRAMES:
        raise FrozenASDError(
            f"--pooling {FRAMES} keeps every frame of a clip; only the frame detectors "
            f"({', '.join(frame_names)}) take it, not {detector!r}"
        )
    return "mean" if pooling is None else pooling


def detector_params(detector: str, frame_dim: int | None) -> dict[str, Any]:
    """Keyword arguments for ``make_detector``: a frame detector's ``frame_dim`` (the extractor's)."""
    if detector not in frame_detectors():
        return {}
    if frame_dim is None:
        raise FrozenASDError(f"detector {detector!r} needs the encoder's frame size, which is not known")
    return {"frame_dim": int(frame_dim)}


def frame_detector(pipe: Any) -> Any | None:
    """The scoring pipeline's detector when it gives per-frame scores, else ``None``."""
    steps = dict(getattr(pipe, "steps", []))
    det = steps.get("detector")
    return det if callable(getattr(det, "frame_scores", None)) else None


def width_problem(pipe: Any, width: int) -> str | None:
    """``None`` when embeddings ``width`` values wide fit the fitted pipeline; else what it was fitted on."""
    det = frame_detector(pipe)
    if det is not None and det.frame_dim is not None:
        frame_dim = int(det.frame_dim_)
        return None if width % frame_dim == 0 else f"frames of {frame_dim} values"
    return None if width == pipe.n_features_in_ else f"{pipe.n_features_in_}-dimensional ones"


def pipeline_frame_scores(pipe: Any, X: np.ndarray) -> list[np.ndarray]:
    """Per row of ``X``, its frames' scores on the pipeline's clip-score scale (NaN: padding frame)."""
    det = frame_detector(pipe)
    if det is None:
        raise FrozenASDError("the detector gives no per-frame scores (only framebank and framebank-topk do)")
    raw = det.frame_scores(pipe.named_steps["scale"].transform(X))
    minmax = pipe.named_steps["minmax"]
    scale, shift = float(minmax.scale_[0]), float(minmax.min_[0])
    return [r * scale + shift for r in raw]


def frame_starts(n_frames: int, hop: float | None) -> np.ndarray | None:
    """Start of each frame in seconds from the clip's start; ``None`` without a regular hop."""
    return None if hop is None else np.arange(n_frames) * hop
