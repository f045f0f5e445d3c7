"""Embedding cache: embeddings per machine and split, kept across runs and resumed after a kill.

A cache folder is keyed by everything that determines an embedding except the clip: the model file's
sha256, the frontend parameters and the extractor's settings. Inside it, each (machine, split) has
numbered chunk files written atomically; every row is keyed by its clip's identity (a hash of the
file's bytes), so an edited or replaced file is embedded again, whatever its modification time says.
A run killed halfway keeps the chunks it finished and restarts from there; the temporary file of a
chunk it was writing is removed by a later run once it is clearly abandoned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
import uuid
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from frozenasd.data.dcase import link_problem
from frozenasd.embed.encoders.pooling import pad_rows
from frozenasd.errors import AudioError
from frozenasd.hashing import file_digest
from frozenasd.hashing import file_sha256 as file_sha256  # also importable from here, as it was

# Bumped whenever the embeddings a given model and settings produce change, or the rows' keys do, so
# no stale entry is read (2: files read at a frontend rate other than 16 kHz are no longer resampled a
# second time; 3: rows are keyed by a hash of the clip's bytes instead of its path, size and mtime).
FORMAT = 3
# A chunk's temporary file is written in well under a second. One this old whose writer (a process of
# this host) has ended is left over from a killed run; one older than the second limit always is.
ABANDONED_SECONDS = 60.0
STALE_SECONDS = 3600.0
_TMP_NAME = re.compile(r"^\.chunk_.*\.(?P<pid>\d+)@(?P<host>[^@/]*)\.tmp$")


def default_cache_dir() -> Path:
    """``$FROZENASD_CACHE``, else ``$XDG_CACHE_HOME/frozenasd``, else ``~/.cache/frozenasd``."""
    if os.environ.get("FROZENASD_CACHE"):
        return Path(os.environ["FROZENASD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "frozenasd"


def clip_identity(path: str | os.PathLike) -> str:
    """``<blake2b of the file's bytes><extension>``: changes whenever the content does.

    Size and modification time cannot tell: a copy that keeps them (``cp -p``, ``rsync -t``) may
    replace a clip with another. Raises AudioError naming the file when it cannot be read.
    """
    try:
        digest = file_digest(path, hashlib.blake2b(digest_size=20))
    except OSError as exc:
        reason = link_problem(Path(path)) or f"cannot read the file ({exc.strerror or exc})"
        raise AudioError(f"{path}: {reason}") from exc
    return digest + Path(path).suffix.lower()


def _writer_gone(pid: int, host: str) -> bool:
    """True when ``pid`` of ``host`` is known to have ended (only a process of this host can be checked)."""
    if host != socket.gethostname() or os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process: it exists
        return False
    return False


def _abandoned(tmp: Path, now: float) -> bool:
    """A chunk's temporary file that no running process will finish."""
    try:
        age = now - tmp.stat().st_mtime
    except OSError:
        return False  # already gone
    if age > STALE_SECONDS:
        return True
    match = _TMP_NAME.match(tmp.name)
    return age > ABANDONED_SECONDS and match is not None and _writer_gone(int(match["pid"]), match["host"])


def cache_key(model_sha256: str, settings: dict[str, Any]) -> str:
    """The folder name for a model and the settings that shape its embeddings."""
    doc = json.dumps({"format": FORMAT, "model": model_sha256, "settings": settings}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:24]


class EmbeddingCache:
    """Embeddings of one (model, settings) pair, stored under ``root/<key>/<machine>/<split>/``."""

    def __init__(self, root: str | os.PathLike, model_sha256: str, settings: dict[str, Any]) -> None:
        self.folder = Path(root) / cache_key(model_sha256, settings)
        self._description = {"format": FORMAT, "model_sha256": model_sha256, "settings": settings}

    def _split_dir(self, machine: str, split: str) -> Path:
        return self.folder / machine / split

    def load(self, machine: str, split: str) -> dict[str, np.ndarray]:
        """Every cached embedding of this machine and split, by clip identity.

        Temporary files that runs killed while writing a chunk left behind are removed.
        """
        found: dict[str, np.ndarray] = {}
        folder = self._split_dir(machine, split)
        now = time.time()
        for tmp in folder.glob(".chunk_*.tmp"):
            if _abandoned(tmp, now):
                try:
                    tmp.unlink(missing_ok=True)
                except OSError:  # e.g. another user's file in a shared cache: it stays
                    pass
        for chunk in sorted(folder.glob("chunk_*.npz")):
            try:
                with np.load(chunk, allow_pickle=False) as data:
                    rows = dict(zip(data["ids"].tolist(), data["embeddings"], strict=True))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                continue  # an unreadable chunk (cut short, damaged) is embedded again
            found.update(rows)
        return found

    def store(self, machine: str, split: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """Append one chunk of (identity, embedding) rows, atomically.

        Rows of different widths (``frames`` pooling) are stored right-padded with NaN to the widest;
        ``load`` gives them back so padded.
        """
        items = list(items)
        if not items:
            return
        folder = self._split_dir(machine, split)
        folder.mkdir(parents=True, exist_ok=True)
        description = self.folder / "cache.json"
        if not description.exists():
            description.write_text(json.dumps(self._description, indent=2, sort_keys=True) + "\n")
        # A random part keeps runs sharing the cache (other processes, other machines) from ever
        # writing to the same chunk or temporary file.
        number = len(list(folder.glob("chunk_*.npz")))
        target = folder / f"chunk_{number:06d}_{uuid.uuid4().hex}.npz"
        tmp = folder / f".{target.name}.{os.getpid()}@{socket.gethostname()}.tmp"
        with open(tmp, "wb") as f:
            # rows of ``frames`` pooling may differ in width: NaN-padded, as embed_clips stacks them
            np.savez(f, ids=np.array([i for i, _ in items]), embeddings=pad_rows([e for _, e in items]))
        os.replace(tmp, target)
