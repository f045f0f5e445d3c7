"""Fit on a machine's normal clips and save; score new recordings with a saved model.

Thin functions over :class:`frozenasd.scoring.model.ScoringModel` for a DCASE layout's machine
(``fit_machine``), a list of recordings (``fit_files``) and a saved file (``score_files``); ``fit`` and
``score_and_write`` are ``frozenasd fit`` and ``frozenasd score`` without their printing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from frozenasd.data.dcase import Clip, list_clips
from frozenasd.data.inputs import Inputs, audio_files, check_machine_name, unique_files
from frozenasd.embed import Executor
from frozenasd.errors import FrozenASDError
from frozenasd.outputs.files import write_decisions_csv
from frozenasd.outputs.frame_scores import write_frame_scores
from frozenasd.outputs.score_json import score_record, write_score_json
from frozenasd.scoring.model import Scored, ScoringModel
from frozenasd.settings import RunSettings

__all__ = ["Scored", "audio_files", "fit", "fit_files", "fit_machine", "score_and_write", "score_files"]

PathLike = str | os.PathLike


def fit(
    settings: RunSettings,
    out: PathLike,
    *,
    inputs: Sequence[PathLike] = (),
    data: PathLike | None = None,
    machine: str | None = None,
    executor: Executor | None = None,
) -> dict:
    """Fit on normal recordings (``inputs``: files or folders) or on ``<data>/<machine>/train``; save
    to ``out`` and return the saved info. ``executor`` embeds the clips (default: in this process)."""
    if inputs and data:
        raise FrozenASDError("give either recordings (files or folders) or --data ROOT --machine M, not both")
    if inputs:
        files = audio_files(inputs)
        if not files:
            raise FrozenASDError(f"no audio file found in {', '.join(map(str, inputs))}")
        return fit_files(files, settings, out, machine or "recordings", executor)
    if data and machine:
        return fit_machine(data, machine, settings, out, executor)
    raise FrozenASDError("give the normal recordings (files or folders), or --data ROOT --machine M")


def score_and_write(
    fitted: PathLike,
    inputs: Inputs,
    *,
    encoder: PathLike | None = None,
    csv: PathLike | None = None,
    frames: PathLike | None = None,
    json: PathLike | None = None,
    batch_size: int = 8,
    num_threads: int | None = None,
    progress: bool = True,
    device: str = "auto",
    executor: Executor | None = None,
) -> Scored:
    """Score ``inputs`` with the saved model ``fitted`` (encoders on ``device``); write the decisions
    (``csv``), every clip's frame scores (``frames``) and the JSON record (``json``, ``-`` for stdout)
    when asked. ``executor`` embeds the clips (default: in this process)."""
    model = ScoringModel.load(
        fitted, encoder, batch_size=batch_size, num_threads=num_threads, executor=executor, device=device
    )
    result = model.score(inputs, frames=frames is not None, progress=progress)
    if csv is not None:
        write_decisions_csv(csv, result.paths, result.scores, result.decisions)
    if frames is not None:
        write_frame_scores(frames, result.paths, result.frames, result.frame_hop)
    if json is not None:
        write_score_json(score_record(result, fitted), json)
    return result


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
    device: str = "auto",
) -> Scored:
    """Score audio files with a saved model (see ``ScoringModel.load`` for ``encoder``).

    ``frames``: also each clip's per-frame scores (a frame detector's; an error for other detectors).
    """
    model = ScoringModel.load(fitted, encoder, batch_size=batch_size, num_threads=num_threads, device=device)
    clips = [Clip.from_path(p, model.machine, "score") for p in files]
    return model.score_clips(clips, frames=frames, progress=progress)
