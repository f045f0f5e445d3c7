"""``frame_scores.csv``: one row per frame of a clip, ``path,frame,start_s,score``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from frozenasd.outputs.files import write_csv_rows

CSV_HEADER = ("path", "frame", "start_s", "score")


def frame_rows(
    paths: Sequence[str | os.PathLike], scores: Sequence[np.ndarray], hop: float | None
) -> list[tuple[str, int, str, str]]:
    """``(path, frame, start_s, score)`` rows of every real frame (start empty when the hop is unknown)."""
    rows = []
    for path, per_frame in zip(paths, scores, strict=True):
        for t in np.flatnonzero(~np.isnan(per_frame)):
            start = "" if hop is None else f"{t * hop:.3f}"
            rows.append((str(path), int(t), start, f"{per_frame[t]:.6f}"))
    return rows


def write_frame_scores(
    path: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    scores: Sequence[np.ndarray],
    hop: float | None,
) -> Path:
    """Write ``path,frame,start_s,score`` rows for the clips ``paths`` (one row per real frame)."""
    write_csv_rows(path, [CSV_HEADER, *frame_rows(paths, scores, hop)])
    return Path(path)
