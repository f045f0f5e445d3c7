"""Reading clips: decode, mix to mono, resample to 16 kHz, remove the whole-clip DC offset.

Every problem with a file raises :class:`~frozenasd.errors.AudioError` naming the file and what is wrong.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from frozenasd.errors import AudioError

SAMPLE_RATE = 16000

# soxr "HQ" keeps about 20 bits of precision (~120 dB stop-band), beyond the 96 dB range of the 16-bit
# recordings DCASE ships and far below the log-mel floor; "VHQ" costs more CPU for no measurable change.
RESAMPLE_QUALITY = "HQ"

# A RIFF data-chunk size that streaming writers leave unset (0) or at the maximum; not a truncation.
_OPEN_ENDED_SIZES = (0, 0xFFFFFFFF)


def _wav_data_shortfall(path: Path) -> tuple[int, int] | None:
    """Return (declared, present) byte counts when a WAV file ends before its data chunk does, else None.

    libsndfile silently shortens such files to the bytes present, so the header is checked here.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE":
            return None
        endian = {b"RIFF": "<", b"RIFX": ">"}.get(head[:4])
        if endian is None:  # RF64 keeps its sizes in a ds64 chunk; left to libsndfile
            return None
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk_id, chunk_size = struct.unpack(endian + "4sI", fh.read(8))
            if chunk_id == b"data":
                present = size - pos - 8
                if chunk_size in _OPEN_ENDED_SIZES or chunk_size <= present:
                    return None
                return chunk_size, present
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


READ_BLOCK = 1 << 20  # frames decoded at a time: a long multichannel file never sits in memory whole


def _read(path: Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a file to its float64 channel mean; raise AudioError if unreadable, cut or non-finite.

    The file is decoded a block of frames at a time and each block averaged over its channels at
    once, so memory holds the mono signal, not every channel of it. With ``max_seconds`` decoding
    stops after that much audio (the checks then cover what was read).
    """
    parts: list[np.ndarray] = []
    bad = 0
    try:
        with sf.SoundFile(path) as f:
            declared, rate, file_format = f.frames, f.samplerate, f.format
            limit = None if max_seconds is None else math.ceil(max_seconds * rate)
            wanted = declared if limit is None else min(declared, limit)
            got = 0
            while limit is None or got < limit:  # to the end: a declared length may fall short
                size = READ_BLOCK if limit is None else min(READ_BLOCK, limit - got)
                block = f.read(size, dtype="float64", always_2d=True)
                if block.shape[0] == 0:
                    break
                got += block.shape[0]
                bad += block.size - np.count_nonzero(np.isfinite(block))
                with np.errstate(invalid="ignore"):  # +inf and -inf in one frame: rejected below
                    parts.append(block.mean(axis=1))
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        # libsndfile errors carry the bare reason in error_string; str(exc) repeats the path
        reason = getattr(exc, "error_string", None) or str(exc)
        raise AudioError(f"{path}: cannot be read as audio ({reason})") from exc
    mono = np.concatenate(parts) if parts else np.empty(0)
    if file_format.startswith("WAV"):
        shortfall = _wav_data_shortfall(path)
        if shortfall is not None:
            raise AudioError(
                f"{path}: truncated WAV file: the header declares {shortfall[0]} bytes of audio data "
                f"but only {shortfall[1]} are present"
            )
    if mono.shape[0] < wanted:
        raise AudioError(
            f"{path}: truncated audio file: the header declares {declared} frames "
            f"but only {mono.shape[0]} could be read"
        )
    if bad:
        raise AudioError(f"{path}: {bad} non-finite samples (NaN or infinity)")
    return mono, rate


def samples_at(path: str | os.PathLike[str], rate: int) -> float:
    """A file's length in samples at ``rate``, from its header alone; 0 when it cannot be read."""
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, OSError):
        return 0.0
    return info.frames * rate / info.samplerate


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int = SAMPLE_RATE,
    *,
    min_samples: int | None = None,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Read a clip as a 1-D float32 waveform at ``sample_rate``.

    Channels are averaged, the signal is resampled with soxr when the file's rate differs, and the
    whole-clip mean is subtracted. Amplitudes are not normalised (integer PCM maps to [-1, 1)).
    ``min_samples``: reject clips shorter than this many samples after resampling.
    ``max_seconds``: read only the first seconds of a longer file (its mean is then theirs).
    """
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: audio file does not exist")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")

    mono, rate = _read(path, max_seconds)
    if mono.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples (0 frames)")
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, int(sample_rate), quality=RESAMPLE_QUALITY)
    if min_samples is not None and mono.shape[0] < min_samples:
        raise AudioError(
            f"{path}: too short: {mono.shape[0]} samples at {sample_rate} Hz, "
            f"shorter than the required {min_samples} samples"
        )
    return (mono - mono.mean()).astype(np.float32)
