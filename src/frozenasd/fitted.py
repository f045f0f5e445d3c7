"""Fit on a machine's normal clips and save; score new recordings with a saved model.

Thin functions over :class:`frozenasd.scoring.model.ScoringModel` for a DCASE layout's machine
(``fit_machine``), a list of recordings (``fit_files``) and a saved file (``score_files``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from frozenasd.data.dcase import Clip, list_clips
from frozenasd.embed import Executor
from frozenasd.data.inputs import audio_files, check_machine_name, unique_files
from frozenasd.scoring.model import Scored, ScoringModel
from frozenasd.settings import RunSettings

__all__ = ["Scored", "audio_files", "fit_files", "fit_machine", "score_files"]


def fit_machine(
    data_root: str | os.PathLike,
    machine: str,
    settings: RunSettings,
    path: str | os.PathLike,
    executor: Executor | None = None,
) -> dict:
    """Fit on ``<data_root>/<machine>/train`` and save to ``path``; returns the saved info.

    ``executor`` embeds the clips (default: in this process).
    """
    clips = list_clips(Path(data_root), machine, "train")
    where = Path(data_root) / machine / "train"
    return ScoringModel.fit_clips(clips, settings, where, by_name=False, executor=executor).save(path)


def fit_files(
    files: Sequence[str | os.PathLike],
    settings: RunSettings,
    path: str | os.PathLike,
    machine: str = "recordings",
    executor: Executor | None = None,
) -> dict:
    """Fit on normal recordings given as files (any names, any layout) and save to ``path``.

    Domains are read from DCASE-style names when every name gives one; otherwise all clips are one domain.
    """
    check_machine_name(machine)
    clips = [Clip.from_path(f, machine, "train") for f in unique_files(files)]
    where = "the recordings given"
    return ScoringModel.fit_clips(clips, settings, where, by_name=True, executor=executor).save(path)


def score_files(
    fitted: str | os.PathLike,
    encoder: str | os.PathLike | None,
    files: Sequence[str | os.PathLike],
    *,
    batch_size: int = 8,
    num_threads: int | None = None,
    progress: bool = False,
    frames: bool = False,
) -> Scored:
    """Score audio files with a saved model (see ``ScoringModel.load`` for ``encoder``).

    ``frames``: also each clip's per-frame scores (a frame detector's; an error for other detectors).
    """
    model = ScoringModel.load(fitted, encoder, batch_size=batch_size, num_threads=num_threads)
    clips = [Clip.from_path(p, model.machine, "score") for p in files]
    return model.score_clips(clips, frames=frames, progress=progress)
