"""Embedding cache: embeddings per machine and split, kept across runs and resumed after a kill.

A cache folder is keyed by everything that determines an embedding except the clip: the model file's
sha256, the frontend parameters and the extractor's settings. Inside it, each (machine, split) has
numbered chunk files written atomically; every row is keyed by its clip's identity (resolved path,
size, modification time), so an edited or replaced file is embedded again. A run killed halfway
keeps the chunks it finished and restarts from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

# Bumped whenever the embeddings a given model and settings produce change (2: files read at a
# frontend rate other than 16 kHz are no longer resampled a second time), so no stale entry is read.
FORMAT = 2


def default_cache_dir() -> Path:
    """``$FROZENASD_CACHE``, else ``$XDG_CACHE_HOME/frozenasd``, else ``~/.cache/frozenasd``."""
    if os.environ.get("FROZENASD_CACHE"):
        return Path(os.environ["FROZENASD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "frozenasd"


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def clip_identity(path: str | os.PathLike) -> str:
    """``<resolved path>|<size>|<mtime ns>``: changes when the file is replaced or edited."""
    st = os.stat(path)
    return f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}"


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
        """Every cached embedding of this machine and split, by clip identity."""
        found: dict[str, np.ndarray] = {}
        for chunk in sorted(self._split_dir(machine, split).glob("chunk_*.npz")):
            try:
                with np.load(chunk, allow_pickle=False) as data:
                    rows = dict(zip(data["ids"].tolist(), data["embeddings"], strict=True))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                continue  # an unreadable chunk (cut short, damaged) is embedded again
            found.update(rows)
        return found

    def store(self, machine: str, split: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """Append one chunk of (identity, embedding) rows, atomically."""
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
        tmp = folder / f".{target.name}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, ids=np.array([i for i, _ in items]), embeddings=np.stack([e for _, e in items]))
        os.replace(tmp, target)
