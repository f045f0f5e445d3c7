"""Recordings given as a file's bytes (an upload) instead of a path, read as that file would be.

A :class:`BytesClip` carries the bytes and the name the file came by; the embedding stage decodes it
with :func:`~frozenasd.data.audio.load_audio_bytes`, which gives the samples, and the refusals,
:func:`~frozenasd.data.audio.load_audio` gives for the same file. Like a waveform, it has no file to
identify it by, so its embedding is never cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from frozenasd.data.dcase import Clip
from frozenasd.data.waveforms import WaveClip


@dataclass(frozen=True)
class BytesClip(Clip):
    """A clip held as its file's ``data``; ``path`` names it in messages (and must be unique in a run)."""

    data: bytes = field(default=b"", compare=False, repr=False)


def bytes_clip(data: bytes, path: str | Path, machine: str = "", split: str = "score") -> BytesClip:
    """A clip of a file's ``data`` called ``path``."""
    return BytesClip(Path(path), machine, split, None, None, None, None, (), "memory", data)


def held_in_memory(clip: Clip) -> bool:
    """True for a clip that carries its audio (samples or a file's bytes) rather than a file's path."""
    return isinstance(clip, WaveClip | BytesClip)
