"""ONNX Runtime sessions shared between encoders that open the same model file with the same settings.

A process that holds several fitted models (``frozenasd serve``) often holds the same encoder more than
once: two machines fitted on aiSFX, or the log-mel view of two fusions. Inside :func:`sharing_sessions`
every encoder opened gets its session from one :class:`SessionCache`, keyed by the model file's sha256
and the session options, so each distinct model is loaded into memory once. ONNX Runtime's ``run`` may
be called from several threads on one session. Outside such a block every encoder opens its own session,
as before.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from frozenasd.hashing import file_sha256

__all__ = ["SessionCache", "open_session", "sharing_sessions"]

SessionKey = tuple[str, int, int, int, tuple[str, ...]]


class SessionCache:
    """Sessions by (model sha256, intra-op threads, inter-op threads, optimisation level, providers)."""

    def __init__(self) -> None:
        self._sessions: dict[SessionKey, Any] = {}
        self._lock = threading.Lock()
        self.opened = 0  # sessions created
        self.reused = 0  # encoders handed a session created earlier

    def get(self, path: str | os.PathLike, options: Any, providers: Sequence[str], opener: Callable[[], Any]):
        """The session for ``path`` with ``options``: the cached one, else ``opener()``'s (then cached)."""
        key: SessionKey = (
            file_sha256(path),
            int(options.intra_op_num_threads),
            int(options.inter_op_num_threads),
            int(options.graph_optimization_level),
            tuple(providers),
        )
        with self._lock:
            if key in self._sessions:
                self.reused += 1
                return self._sessions[key]
            session = opener()
            self._sessions[key] = session
            self.opened += 1
            return session

    def __len__(self) -> int:
        return len(self._sessions)


_ACTIVE: ContextVar[SessionCache | None] = ContextVar("frozenasd_session_cache", default=None)


@contextmanager
def sharing_sessions(cache: SessionCache | None = None) -> Iterator[SessionCache]:
    """Within the block, encoders opened take their sessions from ``cache`` (a new one by default)."""
    cache = SessionCache() if cache is None else cache
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)


def open_session(path: str | os.PathLike, options: Any, providers: Sequence[str]) -> Any:
    """An ``onnxruntime.InferenceSession`` of ``path``: shared inside :func:`sharing_sessions`, else new."""
    import onnxruntime as ort

    def opener() -> Any:
        return ort.InferenceSession(str(path), options, providers=list(providers))

    cache = _ACTIVE.get()
    if cache is None:
        return opener()
    return cache.get(path, options, providers, opener)
