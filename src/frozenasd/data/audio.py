"""Reading clips: decode, mix to mono, resample to 16 kHz, remove the whole-clip DC offset.

Every problem with a file raises :class:`~frozenasd.errors.AudioError` naming the file and what is wrong:
a header that declares more audio than the file holds (truncated WAV, RF64, W64, AIFF, CAF, AU and Ogg
files are recognised from their headers, others by the frames libsndfile finds), a sample rate outside
1 kHz–768 kHz, non-finite samples or samples more than 120 dB above full scale.

Memory is bounded by a block, not by the file: decoding, the channel mean and resampling (a soxr stream)
proceed a block of samples at a time, and only the mono float32 signal at the target rate is kept.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

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

# A RIFF data-chunk size that streaming writers leave unset (0) or at the maximum; not a truncation.
_OPEN_ENDED_SIZES = (0, 0xFFFFFFFF)
_W64_RIFF = bytes.fromhex("726966662e91cf11a5d628db04c10000")
_W64_DATA = bytes.fromhex("64617461f3acd3118cd100c04f8edb8a")
_OGG_EOS = 0x04

# libsndfile's words for a header it could not make sense of; they name no cause a user could act on.
_UNINFORMATIVE = (
    "SF_INFO struct incomplete",
    "Unspecified internal error",
    "psf_fseek() failed",
    "File does not exist or is not a regular file",  # said of existing files it cannot parse
)


def _shortfall(container: str, declared: int, present: int) -> str | None:
    """The truncation message when ``declared`` bytes of audio data exceed the ``present`` ones."""
    if declared <= present:
        return None
    return (
        f"truncated {container} file: the header declares {declared} bytes of audio data "
        f"but only {max(present, 0)} are present"
    )


def _riff_check(fh: BinaryIO, size: int, head: bytes) -> str | None:
    """WAV (RIFF/RIFX) and RF64/BW64: the data chunk's size (RF64: its ds64 size) against the bytes left."""
    endian = ">" if head[:4] == b"RIFX" else "<"
    container = "WAV" if head[:4] in (b"RIFF", b"RIFX") else "RF64"
    ds64_data: int | None = None
    pos = 12
    while pos + 8 <= size:
        fh.seek(pos)
        chunk_id, chunk_size = struct.unpack(endian + "4sI", fh.read(8))
        if chunk_id == b"ds64" and chunk_size >= 16 and pos + 24 <= size:
            ds64_data = struct.unpack("<QQ", fh.read(16))[1]
        if chunk_id == b"data":
            declared = chunk_size
            if container == "RF64" and chunk_size == 0xFFFFFFFF and ds64_data is not None:
                declared = 0 if ds64_data == 0xFFFFFFFFFFFFFFFF else ds64_data
            if declared in _OPEN_ENDED_SIZES:
                return None
            return _shortfall(container, declared, size - pos - 8)
        pos += 8 + chunk_size + (chunk_size & 1)
    return None


def _aiff_check(fh: BinaryIO, size: int, frames: int) -> str | None:
    """AIFF/AIFC: the SSND chunk's size (less its offset and block-size words) against the bytes left,
    and the COMM chunk's frame count against the ``frames`` libsndfile found in that data."""
    pos, declared_frames, cut = 12, 0, None
    while pos + 8 <= size:
        fh.seek(pos)
        chunk_id, chunk_size = struct.unpack(">4sI", fh.read(8))
        if chunk_id == b"COMM" and chunk_size >= 6 and pos + 14 <= size:
            declared_frames = struct.unpack(">hI", fh.read(6))[1]
        elif chunk_id == b"SSND" and chunk_size not in _OPEN_ENDED_SIZES:
            cut = _shortfall("AIFF", chunk_size - 8, size - pos - 16)
        pos += 8 + chunk_size + (chunk_size & 1)
    if cut is None and declared_frames > frames:
        cut = f"truncated AIFF file: the header declares {declared_frames} frames but its data holds {frames}"
    return cut


def _w64_check(fh: BinaryIO, size: int) -> str | None:
    """W64: the data chunk's 64-bit size (which counts its 24-byte header) against the bytes left."""
    pos = 40
    while pos + 24 <= size:
        fh.seek(pos)
        guid, chunk_size = struct.unpack("<16sQ", fh.read(24))
        if chunk_size < 24:  # malformed; libsndfile judges it
            return None
        if guid == _W64_DATA:
            return _shortfall("W64", chunk_size - 24, size - pos - 24)
        pos += (chunk_size + 7) & ~7
    return None


def _caf_check(fh: BinaryIO, size: int) -> str | None:
    """CAF: the data chunk's size (-1: open-ended; it counts a 4-byte edit count) against the bytes left."""
    pos = 8
    while pos + 12 <= size:
        fh.seek(pos)
        chunk_type, chunk_size = struct.unpack(">4sq", fh.read(12))
        if chunk_type == b"data":
            return None if chunk_size == -1 else _shortfall("CAF", chunk_size - 4, size - pos - 16)
        if chunk_size < 0:
            return None
        pos += 12 + chunk_size
    return None


def _au_check(fh: BinaryIO, size: int, head: bytes) -> str | None:
    """AU: the header's data size (all ones: unknown) against the bytes after the data offset."""
    offset, data_size = struct.unpack((">" if head[:4] == b".snd" else "<") + "II", head[4:12])
    return None if data_size == 0xFFFFFFFF else _shortfall("AU", data_size, size - offset)


def _ogg_check(fh: BinaryIO, size: int) -> str | None:
    """Ogg (Vorbis, Opus, FLAC): every page whole, the last one marked end-of-stream.

    Pages are walked by their headers alone; bytes that are not a page stop the walk undecided.
    """
    pos, flags = 0, 0
    while pos < size:
        fh.seek(pos)
        header = fh.read(27)
        if not (header.startswith(b"OggS") or b"OggS".startswith(header)):
            return None  # not a page
        if len(header) < 27:
            return f"truncated Ogg file: it ends inside the header of the page at byte {pos}"
        flags, segments = header[5], header[26]
        lacing = fh.read(segments)
        length = 27 + segments + sum(lacing)
        if len(lacing) < segments or pos + length > size:
            return (
                f"truncated Ogg file: the page at byte {pos} declares {length} bytes "
                f"but only {size - pos} are present"
            )
        pos += length
    if not flags & _OGG_EOS:
        return "truncated Ogg file: the stream ends without its end-of-stream page"
    return None


def _header_check(path: Path, frames: int) -> str | None:
    """Why the file's container header shows it cut short, or None (also for containers not checked here).

    ``frames`` is libsndfile's count of the frames present.

    libsndfile silently shortens such files to the bytes present, so the headers are read here.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(40)
        if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE":
            return _riff_check(fh, size, head)
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _aiff_check(fh, size, frames)
        if head[:16] == _W64_RIFF:
            return _w64_check(fh, size)
        if head[:4] == b"caff":
            return _caf_check(fh, size)
        if head[:4] in (b".snd", b"dns.") and len(head) >= 12:
            return _au_check(fh, size, head)
        if head[:4] == b"OggS":
            return _ogg_check(fh, size)
    return None


def _container(path: Path) -> str:
    """The container a file claims to be, from its first bytes (else its extension) for messages."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    magic = {
        b"RIFF": "WAV",
        b"RIFX": "WAV",
        b"RF64": "RF64",
        b"BW64": "RF64",
        b"FORM": "AIFF",
        b"caff": "CAF",
        b".snd": "AU",
        b"OggS": "Ogg",
        b"fLaC": "FLAC",
    }
    if head == _W64_RIFF:
        return "W64"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    return magic.get(head[:4]) or path.suffix.lstrip(".").upper() or "audio"


def _library_error(path: Path, exc: Exception) -> AudioError:
    """An AudioError with libsndfile's reason, made actionable where libsndfile's own words are not."""
    # libsndfile errors carry the bare reason in error_string; str(exc) repeats the path
    reason = getattr(exc, "error_string", None) or str(exc)
    if any(words in reason for words in _UNINFORMATIVE):
        return AudioError(
            f"{path}: cannot be read as audio: not a valid {_container(path)} file, its header is "
            f"malformed or cut short (libsndfile: {reason})"
        )
    return AudioError(f"{path}: cannot be read as audio ({reason})")


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
    for block in _blocks(f, limit):
        got += block.shape[0]
        counts = _out_of_range(block)
        bad, huge, peak = bad + counts[0], huge + counts[1], max(peak, counts[2])
        if bad or huge:  # the clip is refused below; the rest is read only to count
            continue
        mono = block.mean(axis=1) if stream is None else stream.resample_chunk(block.mean(axis=1))
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
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: audio file does not exist")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        with sf.SoundFile(library_path(path)) as f:
            _check_rate(path, f.samplerate)
            cut = _header_check(path, f.frames)
            if cut is not None:
                raise AudioError(f"{path}: {cut}")
            mono = _decode(path, f, int(sample_rate), max_seconds)
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise _library_error(path, exc) from exc
    if min_samples is not None and mono.shape[0] < min_samples:
        raise AudioError(
            f"{path}: too short: {mono.shape[0]} samples at {sample_rate} Hz, "
            f"shorter than the required {min_samples} samples"
        )
    return mono
