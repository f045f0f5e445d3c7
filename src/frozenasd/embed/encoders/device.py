"""Where an encoder runs: ONNX Runtime's CUDA provider when asked for and usable, else the CPU.

``device`` is ``"cpu"``, ``"cuda"`` or ``"auto"``:

- ``cpu``: the CPU provider only.
- ``auto``: CUDA when this onnxruntime has the CUDA provider (the ``onnxruntime-gpu`` package) and
  the session could use a GPU, else the CPU, silently.
- ``cuda``: the same, but falling back to the CPU prints one line saying why (no ``onnxruntime-gpu``,
  ``CUDA_VISIBLE_DEVICES`` hiding every GPU, or ONNX Runtime not starting CUDA): a run asked for a
  GPU is not stopped on a machine without one, and the provider actually used is recorded
  (``run.json``'s views, a fitted file's ``providers``), so the fallback cannot go unnoticed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from frozenasd.embed.encoders.sessions import open_session as shared_session

DEVICES = ("cpu", "cuda", "auto")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def check_device(device: str) -> str:
    """``device`` when it is one of :data:`DEVICES`; ValueError otherwise."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    return device


def cuda_unavailable() -> str | None:
    """Why ONNX Runtime's CUDA provider cannot be asked for here, or ``None`` when it can."""
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return (
            "this onnxruntime has no CUDA provider (install the gpu extra: "
            "pip install 'frozenasd[gpu]', which replaces onnxruntime by onnxruntime-gpu)"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    return None


def providers_for(device: str) -> tuple[list[str], str | None]:
    """The providers to ask ONNX Runtime for, and why CUDA is not among them (``None``: it is, or
    ``device`` is ``cpu``)."""
    if check_device(device) == "cpu":
        return [CPU], None
    reason = cuda_unavailable()
    return ([CPU], reason) if reason else ([CUDA, CPU], None)


def open_session(
    path: str | os.PathLike,
    options: Any,
    device: str = "cpu",
    *,
    warn: Callable[[str], None] | None = None,
) -> tuple[Any, str]:
    """An ``InferenceSession`` of ``path`` on ``device``, and the provider it actually runs on.

    With ``device="cuda"`` a CPU fallback is told through ``warn`` (default: one line on stderr);
    ``auto`` falls back silently. Errors of the session itself propagate.
    """
    providers, reason = providers_for(device)
    session = shared_session(path, options, providers)
    used = session.get_providers()[0]
    if reason is None and CUDA in providers and used != CUDA:
        reason = "ONNX Runtime could not start CUDA on this machine (no visible GPU or driver)"
    if device == "cuda" and used != CUDA:
        (warn or _stderr_once)(f"note: --device cuda: running on the CPU: {reason}")
    return session, used


_told: set[str] = set()


def _stderr_once(message: str) -> None:
    """Print ``message`` to stderr the first time only (a fusion opens several sessions)."""
    if message not in _told:
        _told.add(message)
        print(message, file=sys.stderr)
