"""Reading members of zip files that come from elsewhere (data set archives, checkpoints, fitted models).

A member is read only when this Python can read it (not encrypted, a known compression method) and
within a byte budget that is checked twice: against the size the archive declares, before anything
is read, and against the bytes that actually come out while reading.
"""

from __future__ import annotations

import lzma
import zipfile
import zlib
from collections.abc import Iterator

from frozenasd.errors import FrozenASDError

READABLE_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
_ENCRYPTED = 0x1  # general purpose flag bit 0
_BLOCK = 1 << 20
#: What a damaged member raises while it is read (bz2 raises OSError, a bad CRC BadZipFile).
DAMAGED = (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError)


def unreadable_reason(info: zipfile.ZipInfo) -> str | None:
    """Why ``info`` cannot be read (encrypted, unknown compression method), or ``None``."""
    if info.flag_bits & _ENCRYPTED:
        return "encrypted (password-protected) member"
    if info.compress_type not in READABLE_METHODS:
        known = ", ".join(READABLE_METHODS.values())
        return f"compression method {info.compress_type}, which cannot be read (known: {known})"
    return None


def inflation_reason(info: zipfile.ZipInfo, max_inflation: float) -> str | None:
    """Why a compressed member inflates implausibly (over its first MiB), or ``None``."""
    inflation = info.file_size / max(info.compress_size, 1)
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > _BLOCK and inflation > max_inflation:
        return f"inflates {inflation:.0f}x, more than the {max_inflation:g}x this file can need (a zip bomb)"
    return None


def iter_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> Iterator[bytes]:
    """The bytes of ``info`` in blocks; raises :class:`ValueError` when the member is damaged or more than
    ``limit`` bytes, or more than it declares, come out."""
    allowed = min(limit, info.file_size)
    produced = 0
    try:
        with zf.open(info) as src:
            while block := src.read(_BLOCK):
                produced += len(block)
                if produced > allowed:
                    raise ValueError(f"yields more than {allowed} bytes (it declares {info.file_size})")
                yield block
    except DAMAGED as exc:
        raise ValueError(f"damaged ({exc})") from exc


def read_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    limit: int,
    where: str,
    error: type[FrozenASDError] = FrozenASDError,
    max_inflation: float | None = None,
) -> bytes:
    """Member ``info`` whole, if readable and at most ``limit`` bytes; else ``error`` naming ``where``."""
    reason = unreadable_reason(info)
    if reason is None and info.file_size > limit:
        reason = f"{info.file_size} bytes uncompressed, more than the {limit} this file can need"
    if reason is None and max_inflation is not None:
        reason = inflation_reason(info, max_inflation)
    if reason is None:
        try:
            return b"".join(iter_member(zf, info, limit))
        except ValueError as exc:
            reason = str(exc)
    raise error(f"{where}: member {info.filename!r:.200}: {reason}")
