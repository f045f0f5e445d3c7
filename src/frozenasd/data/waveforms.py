"""Recordings given as arrays instead of files: checked and shaped as a file's samples would be.

A waveform becomes a :class:`WaveClip`, a clip named ``<waveform K>`` (its place among those given)
that carries its samples, so that the embedding stage treats it as it treats a file it reads:
mixed to mono, resampled with soxr, cut to what the encoder takes, its mean removed. A waveform
that is not audio (non-finite samples, magnitudes far beyond full scale, too short) is refused
with an :class:`~frozenasd.errors.AudioError` naming it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr

from frozenasd.data.audio import MAX_FILE_RATE, MAX_MAGNITUDE, MIN_FILE_RATE, RESAMPLE_QUALITY
from frozenasd.data.dcase import Clip
from frozenasd.errors import AudioError


@dataclass(frozen=True)
class WaveClip(Clip):
    """A clip held in memory: ``wave`` (samples, or samples × channels) at ``rate`` Hz."""

    wave: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32), compare=False, repr=False)
    rate: int = field(default=16000, compare=False)


def wave_clips(
    waves: Sequence[np.ndarray] | np.ndarray, sample_rate: int, machine: str = "", split: str = "score"
) -> list[WaveClip]:
    """Waveforms (each 1-D, or 2-D as samples × channels; or the rows of one 2-D array) as clips."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise AudioError(f"waveforms: give their sample rate as an integer in Hz, got {sample_rate!r}")
    if not MIN_FILE_RATE <= sample_rate <= MAX_FILE_RATE:
        raise AudioError(
            f"waveforms: sample rate {sample_rate} Hz is outside {MIN_FILE_RATE}-{MAX_FILE_RATE} Hz"
        )
    clips = []
    for k, wave in enumerate(waves):
        name = f"<waveform {k}>"
        array = np.asarray(wave)
        if array.dtype.kind not in "fiu" or array.ndim not in (1, 2):
            raise AudioError(
                f"{name}: a waveform is a 1-D array of samples (or samples × channels) of numbers, got "
                f"{array.ndim}-D {array.dtype}"
            )
        clips.append(
            WaveClip(
                Path(name), machine, split, None, None, None, None, (), "memory", array, int(sample_rate)
            )
        )
    return clips


def read_wave(
    clip: WaveClip, sample_rate: int, *, min_samples: int | None = None, max_seconds: float | None = None
) -> np.ndarray:
    """The clip's samples as ``load_audio`` gives a file's: mono float32 at ``sample_rate``, mean removed.

    ``max_seconds``: only the first seconds are kept (their mean is removed). Integer samples are
    scaled to [-1, 1) as a PCM file's are.
    """
    wave = clip.wave
    if wave.dtype.kind in "iu":
        info = np.iinfo(wave.dtype)
        wave = (wave.astype(np.float64) - (info.max + 1 + info.min) / 2) / ((info.max - info.min + 1) / 2)
    mono = np.asarray(wave, dtype=np.float64)
    if mono.ndim == 2:
        mono = mono.mean(axis=1)
    if max_seconds is not None:
        mono = mono[: math.ceil(max_seconds * clip.rate)]
    if mono.size == 0:
        raise AudioError(f"{clip.path}: contains no audio samples")
    bad = mono.size - np.count_nonzero(np.isfinite(mono))
    if bad:
        raise AudioError(f"{clip.path}: {bad} non-finite samples (NaN or infinity)")
    huge = np.count_nonzero(np.abs(mono) > MAX_MAGNITUDE)
    if huge:
        raise AudioError(
            f"{clip.path}: {huge} samples far outside [-1, 1] (at most {MAX_MAGNITUDE:.0e} is accepted): "
            "not audio"
        )
    if clip.rate != sample_rate:
        mono = soxr.resample(mono, clip.rate, sample_rate, quality=RESAMPLE_QUALITY)
    signal = mono.astype(np.float32)
    if signal.size == 0:
        raise AudioError(f"{clip.path}: too short: no sample at {sample_rate} Hz")
    signal -= np.float32(mono.mean())
    if min_samples is not None and signal.size < min_samples:
        raise AudioError(
            f"{clip.path}: too short: {signal.size} samples at {sample_rate} Hz, "
            f"shorter than the required {min_samples} samples"
        )
    return signal
