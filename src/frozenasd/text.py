"""How text from outside (file names above all) is written into messages and output files.

A file name that is not valid UTF-8 arrives with its undecodable bytes as lone surrogates; every
message and output file writes those bytes as ``\\xNN`` escapes, the same way everywhere, so that a
path in one file matches the same path in another.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SURROGATE = re.compile("[\\ud800-\\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    # U+DC80..U+DCFF stand for the undecodable bytes 0x80..0xFF of a file name (surrogateescape).
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every lone surrogate written as a backslash escape, so it can be encoded as UTF-8.

    Python gives the bytes of a file name that are not valid UTF-8 as the surrogates U+DC80..U+DCFF;
    those become ``\\x80``..``\\xff`` (the byte), any other lone surrogate ``\\udNNN``. Other text is
    returned unchanged.
    """
    return _SURROGATE.sub(_escape_surrogate, text)


def printable_data(value: Any) -> Any:
    """``value`` with :func:`printable` applied to every string in it (dict keys too; tuples become lists)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, Mapping):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_data(v) for v in value]
    return value
