"""Container headers read by hand: whether a file was cut short, and what container it claims to be.

libsndfile silently shortens a truncated file to the bytes present, so the data-chunk sizes the headers
declare are checked here against the bytes there are: WAV (RIFF/RIFX), RF64/BW64, AIFF/AIFC, W64, CAF,
AU and Ogg. Each check reads an open binary file of a known size.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

# A RIFF data-chunk size that streaming writers leave unset (0) or at the maximum; not a truncation.
_OPEN_ENDED_SIZES = (0, 0xFFFFFFFF)
_W64_RIFF = bytes.fromhex("726966662e91cf11a5d628db04c10000")
_W64_DATA = bytes.fromhex("64617461f3acd3118cd100c04f8edb8a")
_OGG_EOS = 0x04


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


def truncation(fh: BinaryIO, size: int, frames: int) -> str | None:
    """Why the file's container header shows it cut short, or None (also for containers not checked here).

    ``fh`` is the file open at its start, ``size`` its length in bytes and ``frames`` libsndfile's count
    of the frames present.
    """
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


_MAGIC = {
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


def container_name(head: bytes, suffix: str) -> str:
    """The container a file claims to be, for messages: from its first 16 bytes ``head``, else from
    its extension ``suffix``."""
    if head == _W64_RIFF:
        return "W64"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    return _MAGIC.get(head[:4]) or suffix.lstrip(".").upper() or "audio"
