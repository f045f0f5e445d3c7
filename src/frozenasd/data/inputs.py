"""What a user hands over to fit or score: audio files, folders of them, or waveforms in memory."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from frozenasd.data.dcase import Clip, is_audio_file
from frozenasd.data.waveforms import wave_clips
from frozenasd.errors import FrozenASDError, LayoutError

PathLike = str | os.PathLike
# One file or folder, several, one waveform (1-D), the rows of a 2-D array, or a sequence of waveforms.
Inputs = PathLike | np.ndarray | Sequence[PathLike] | Sequence[np.ndarray]


def unique_files(files: Iterable[PathLike]) -> list[Path]:
    """The files in order, each once (a file named twice, or also found in a folder, counts once)."""
    seen: set[Path] = set()
    unique: list[Path] = []
    for f in map(Path, files):
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def audio_files(inputs: Iterable[PathLike]) -> list[Path]:
    """The audio files named, and those found (recursively, sorted) in the folders named.

    A file named is taken whatever its extension (it is reported if it cannot be read); in a folder,
    only files with an audio extension (``dcase.AUDIO_EXTENSIONS``) that are not hidden are. Each file
    appears once, however often it is named or found.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if is_audio_file(p))
        elif item.exists():
            found.append(item)
        else:
            raise LayoutError(f"{item}: no such file or folder")
    return unique_files(found)


def input_clips(inputs: Inputs, sample_rate: int | None, machine: str, split: str) -> list[Clip]:
    """``inputs`` as clips: files and folders (searched as ``audio_files`` does) or waveforms.

    Waveforms need their ``sample_rate``; files are read at their own rate, so giving one is an
    error (it would be ignored). Paths and waveforms are not mixed in one call.
    """
    if isinstance(inputs, str | os.PathLike):
        items: list = [inputs]
    elif isinstance(inputs, np.ndarray):
        items = [inputs] if inputs.ndim == 1 else list(inputs)
    else:
        items = list(inputs)
    waves = [isinstance(x, np.ndarray) for x in items]
    if items and all(waves):
        if sample_rate is None:
            raise FrozenASDError("waveforms given without their sample rate: pass sample_rate=")
        return list(wave_clips(items, sample_rate, machine, split))
    if any(waves):
        raise FrozenASDError("give either audio files and folders or waveforms (numpy arrays), not both")
    if not all(isinstance(x, str | os.PathLike) for x in items):
        bad = next(x for x in items if not isinstance(x, str | os.PathLike))
        raise FrozenASDError(
            f"an input of type {type(bad).__name__}: give file or folder paths, or waveforms as numpy arrays"
        )
    if sample_rate is not None:
        raise FrozenASDError("sample_rate is for waveforms; audio files are read at their own rate")
    return [Clip.from_path(p, machine, split) for p in audio_files(items)]


def check_machine_name(machine: str) -> None:
    """A machine name is a plain name: it names output folders and files."""
    if not machine or machine in (".", "..") or any(c in machine for c in "/\\"):
        raise LayoutError(f"machine name {machine!r}: use a plain name (no path separators)")
