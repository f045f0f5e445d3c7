"""Reading clips: decode, mix to mono, resample to 16 kHz, remove the whole-clip DC offset.

Every problem with a file raises :class:`~frozenasd.errors.AudioError` naming the file and what is wrong:
a header that declares more audio than the file holds (truncated WAV, RF64, W64, AIFF, CAF, AU and Ogg
files are recognised from their headers, others by the frames libsndfile finds), a sample rate outside
1 kHz–768 kHz, non-finite samples or samples more than 120 dB above full scale.

Memory is bounded by a block, not by the file: decoding, the channel mean and resampling (a soxr stream)
proceed a block of samples at a time, and only the mono float32 signal at the target rate is kept.

A file's bytes held in memory (an upload) are read the same way by :func:`load_audio_bytes`, with the
same result and the same refusals. The container checks are in :mod:`frozenasd.data.containers`.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from frozenasd.data.containers import container_name, truncation
from frozenasd.errors import AudioError

SAMPLE_RATE = 16000

# soxr "HQ" keeps about 20 bits of precision (~120 dB stop-band), beyond the 96 dB range of the 16-bit
# recordings DCASE ships and far below the log-mel floor; "VHQ" costs more CPU for no measurable change.
RESAMPLE_QUALITY = "HQ"

# Sample rates a file may declare. Below 1 kHz there is no usable sound for these encoders (and soxr
# would spend minutes and gigabytes upsampling a 1 Hz header); 768 kHz is the highest rate converters use.
MIN_FILE_RATE = 1_000
MAX_FILE_RATE = 768_000

# Samples are nominally in [-1, 1]; anything beyond 1e6 (120 dB above full scale) is not audio, and it
# would overflow the float32 power spectra of the frontends.
MAX_MAGNITUDE = 1e6

READ_BLOCK = 1 << 20  # samples (over all channels) decoded at a time

# Integer encodings libsndfile scales into [-1, 1): their samples need no finiteness or range check.
_BOUNDED_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW"})

# libsndfile's words for a header it could not make sense of; they name no cause a user could act on.
_UNINFORMATIVE = (
    "SF_INFO struct incomplete",
    "Unspecified internal error",
    "psf_fseek() failed",
    "File does not exist or is not a regular file",  # said of existing files it cannot parse
)


@dataclass(frozen=True)
class _Source:
    """A recording's bytes, on disk or in memory: what messages call it, its size and how to open it."""

    label: Path
    size: int
    open_raw: Callable[[], BinaryIO]
    open_sound: Callable[[], sf.SoundFile]


def _file_source(path: Path, label: Path | None = None) -> _Source:
    return _Source(
        label or path,
        path.stat().st_size,
        lambda: open(path, "rb"),
        lambda: sf.SoundFile(library_path(path)),
    )


class _HeldBytes(io.BytesIO):
    """A file's bytes as libsndfile reads them: a seek before the start fails quietly, as on a file."""

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: len(self.getbuffer())}[whence]
        if base + offset < 0:  # BytesIO would raise inside libsndfile's callback, which prints it
            return self.tell()
        return super().seek(offset, whence)


def _memory_source(data: bytes, label: Path) -> _Source:
    return _Source(label, len(data), lambda: _HeldBytes(data), lambda: sf.SoundFile(_HeldBytes(data)))


def _header_check(source: _Source, frames: int) -> str | None:
    """Why the file's container header shows it cut short (see :func:`truncation`), or None."""
    with source.open_raw() as fh:
        return truncation(fh, source.size, frames)


def _container(source: _Source) -> str:
    with source.open_raw() as fh:
        return container_name(fh.read(16), source.label.suffix)


def _library_error(source: _Source, exc: Exception) -> AudioError:
    """An AudioError with libsndfile's reason, made actionable where libsndfile's own words are not."""
    # libsndfile errors carry the bare reason in error_string; str(exc) repeats the path
    reason = getattr(exc, "error_string", None) or str(exc)
    if any(words in reason for words in _UNINFORMATIVE):
        return AudioError(
            f"{source.label}: cannot be read as audio: not a valid {_container(source)} file, its header "
            f"is malformed or cut short (libsndfile: {reason})"
        )
    return AudioError(f"{source.label}: cannot be read as audio ({reason})")


def _check_rate(path: Path, rate: int) -> None:
    if not MIN_FILE_RATE <= rate <= MAX_FILE_RATE:
        raise AudioError(
            f"{path}: the header declares a sample rate of {rate} Hz, outside the "
            f"{MIN_FILE_RATE}-{MAX_FILE_RATE} Hz of real audio (a malformed or hostile header)"
        )


def _blocks(f: sf.SoundFile, limit: int | None) -> Iterator[np.ndarray]:
    """The file's frames ``(frames, channels)`` as float64, ``READ_BLOCK`` samples at a time, to ``limit``.

    Decoding goes to the end of the file (or ``limit``), not to the declared length, which may fall short.
    """
    block_frames = max(1, READ_BLOCK // max(f.channels, 1))
    got = 0
    while limit is None or got < limit:
        block = f.read(
            block_frames if limit is None else min(block_frames, limit - got), dtype="float64", always_2d=True
        )
        if block.shape[0] == 0:
            return
        got += block.shape[0]
        yield block


def _out_of_range(block: np.ndarray) -> tuple[int, int, float]:
    """A block's count of non-finite samples, of samples beyond ``MAX_MAGNITUDE`` (infinities too), and
    its largest finite magnitude when there are such samples (else 0)."""
    magnitude = np.abs(block)
    bad = block.size - np.count_nonzero(np.isfinite(block))
    with np.errstate(invalid="ignore"):  # NaN compares False
        huge = np.count_nonzero(magnitude > MAX_MAGNITUDE)
    peak = float(magnitude[np.isfinite(magnitude)].max(initial=0.0)) if huge else 0.0
    return bad, huge, peak


def _decode(path: Path, f: sf.SoundFile, sample_rate: int, max_seconds: float | None) -> np.ndarray:
    """Decode an open file to its channel mean at ``sample_rate``, float32 with the whole-clip mean removed.

    Each block is checked, averaged over its channels and resampled (a soxr stream) before the next is
    decoded; only the mono float32 result is kept. With ``max_seconds`` decoding stops after that much
    audio (the checks then cover what was read).
    """
    rate, declared = f.samplerate, f.frames
    limit = None if max_seconds is None else math.ceil(max_seconds * rate)
    stream = None
    if rate != sample_rate:
        stream = soxr.ResampleStream(rate, sample_rate, 1, dtype="float64", quality=RESAMPLE_QUALITY)
    parts: list[np.ndarray] = []
    got = bad = huge = 0
    peak = total = 0.0
    checked = f.subtype not in _BOUNDED_SUBTYPES
    for block in _blocks(f, limit):
        got += block.shape[0]
        if checked:
            counts = _out_of_range(block)
            bad, huge, peak = bad + counts[0], huge + counts[1], max(peak, counts[2])
            if bad or huge:  # the clip is refused below; the rest is read only to count
                continue
        mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)  # one channel: its own mean
        if stream is not None:
            mono = stream.resample_chunk(mono)
        total += float(mono.sum())
        parts.append(mono.astype(np.float32))
    if stream is not None and not (bad or huge):
        tail = stream.resample_chunk(np.empty(0), last=True)
        total += float(tail.sum())
        parts.append(tail.astype(np.float32))
    if got < (declared if limit is None else min(declared, limit)):
        raise AudioError(
            f"{path}: truncated audio file: the header declares {declared} frames "
            f"but only {got} could be read"
        )
    if bad:
        raise AudioError(f"{path}: {bad} non-finite samples (NaN or infinity)")
    if huge:
        raise AudioError(
            f"{path}: {huge} samples far outside [-1, 1] (largest magnitude {peak:.3g}; "
            f"at most {MAX_MAGNITUDE:.0e} is accepted): not audio"
        )
    if got == 0:
        raise AudioError(f"{path}: contains no audio samples (0 frames)")
    signal = np.concatenate(parts) if len(parts) != 1 else parts[0]
    if signal.size == 0:
        raise AudioError(
            f"{path}: too short: its {got} frames at {rate} Hz give no sample at {sample_rate} Hz"
        )
    signal -= np.float32(total / signal.size)
    return signal


def library_path(path: str | os.PathLike[str]) -> str | bytes:
    """``path`` as libsndfile should get it: its bytes on POSIX, so a name that is not UTF-8 opens too."""
    return os.fsencode(path) if os.name == "posix" else os.fspath(path)


def samples_at(path: str | os.PathLike[str], rate: int) -> float:
    """A file's length in samples at ``rate``, from its header alone; 0 when it cannot be read."""
    try:
        info = sf.info(library_path(path))
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
    _check_target_rate(sample_rate)
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: audio file does not exist")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    return _load(_file_source(path), int(sample_rate), min_samples, max_seconds)


def load_audio_bytes(
    data: bytes,
    name: str | os.PathLike[str],
    sample_rate: int = SAMPLE_RATE,
    *,
    min_samples: int | None = None,
    max_seconds: float | None = None,
) -> np.ndarray:
    """:func:`load_audio` of a file's bytes held in memory (an upload); messages call it ``name``.

    The result, and every refusal, is the one ``load_audio`` gives for the same bytes in a file called
    ``name``: libsndfile tells a few formats by the file's extension alone, so bytes it cannot open from
    memory are read from a temporary file with ``name``'s extension.
    """
    _check_target_rate(sample_rate)
    label = Path(name)
    if not data:
        raise AudioError(f"{label}: empty file (0 bytes)")
    memory = _memory_source(data, label)
    if _opens(memory):
        return _load(memory, int(sample_rate), min_samples, max_seconds)
    with _spilled(data, label.suffix) as path:
        return _load(_file_source(path, label), int(sample_rate), min_samples, max_seconds)


def audio_header_bytes(data: bytes, name: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(frames, sample_rate)`` from the header of a file's bytes in memory; None when unreadable."""
    memory = _memory_source(data, Path(name))
    try:
        with memory.open_sound() as f:
            return f.frames, f.samplerate
    except (sf.SoundFileError, RuntimeError, OSError):
        pass
    with _spilled(data, Path(name).suffix) as path:
        try:
            info = sf.info(library_path(path))
        except (sf.SoundFileError, RuntimeError, OSError):
            return None
        return info.frames, info.samplerate


def _check_target_rate(sample_rate: int) -> None:
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")


def _opens(source: _Source) -> bool:
    try:
        with source.open_sound():
            return True
    except (sf.SoundFileError, RuntimeError, OSError):
        return False


@contextmanager
def _spilled(data: bytes, suffix: str) -> Iterator[Path]:
    """A temporary file holding ``data``, named with ``suffix`` when it is a plain extension."""
    fd, name = tempfile.mkstemp(
        prefix="frozenasd-", suffix=suffix if suffix[1:].isalnum() and len(suffix) <= 9 else ".audio"
    )
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        yield Path(name)
    finally:
        os.unlink(name)


def _load(
    source: _Source, sample_rate: int, min_samples: int | None, max_seconds: float | None
) -> np.ndarray:
    label = source.label
    try:
        with source.open_sound() as f:
            _check_rate(label, f.samplerate)
            cut = _header_check(source, f.frames)
            if cut is not None:
                raise AudioError(f"{label}: {cut}")
            mono = _decode(label, f, sample_rate, max_seconds)
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise _library_error(source, exc) from exc
    if min_samples is not None and mono.shape[0] < min_samples:
        raise AudioError(
            f"{label}: too short: {mono.shape[0]} samples at {sample_rate} Hz, "
            f"shorter than the required {min_samples} samples"
        )
    return mono
