"""File digests, read in blocks: the one definition every module that hashes a file imports."""

from __future__ import annotations

import hashlib
import os
from typing import Any


def file_digest(path: str | os.PathLike, digest: Any, block: int = 1 << 20) -> str:
    """Hex digest of the file's bytes, read in blocks, with ``digest`` (a new hashlib object)."""
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex SHA-256 of the file's bytes."""
    return file_digest(path, hashlib.sha256(), block)
