"""Exact Euclidean distance to the nearest memory row: numpy for small memories, faiss for large ones.

Both searches are exact (brute force): numpy in float64 chunks of matrix products, faiss's
``IndexFlatL2`` (float32, multithreaded) from ``FAISS_MIN_MEMORY`` memory rows on when faiss-cpu is
installed (``pip install frozenasd[faiss]``). Either way the search only picks the nearest row; its
distance is then recomputed directly in float64, so both give the same distances (up to which of two
almost equally near rows is picked).
"""

from __future__ import annotations

import importlib.util

import numpy as np

# From this many memory rows on, faiss searches when it is installed.
FAISS_MIN_MEMORY = 8192
METHODS = ("auto", "numpy", "faiss")

# A chunk of queries holds at most this many query-to-memory distances (float64: 32 MB).
_CHUNK_ELEMENTS = 1 << 22


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def nearest_distances(Q: np.ndarray, B: np.ndarray, method: str = "auto") -> np.ndarray:
    """Euclidean distance from each row of ``Q`` to its nearest row of ``B`` (float64, exact).

    ``method``: ``"numpy"``, ``"faiss"`` (an error when it is not installed) or ``"auto"`` (faiss for
    memories of at least ``FAISS_MIN_MEMORY`` rows when installed, else numpy).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    Q = np.asarray(Q, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if B.ndim != 2 or Q.ndim != 2 or B.shape[1] != Q.shape[1] or len(B) == 0:
        raise ValueError(f"queries {Q.shape} and a non-empty memory {B.shape} must have the same width")
    if len(Q) == 0:
        return np.empty(0)
    if method == "auto":
        method = "faiss" if len(B) >= FAISS_MIN_MEMORY and faiss_available() else "numpy"
    nearest = _nearest_faiss(Q, B) if method == "faiss" else _nearest_numpy(Q, B)
    out = np.empty(len(Q))
    step = max(1, _CHUNK_ELEMENTS // Q.shape[1])
    for start in range(0, len(Q), step):  # the distance of the row found, without cancellation
        part = slice(start, start + step)
        out[part] = np.linalg.norm(Q[part] - B[nearest[part]], axis=1)
    return out


def _nearest_numpy(Q: np.ndarray, B: np.ndarray) -> np.ndarray:
    b_norms = (B**2).sum(axis=1)
    out = np.empty(len(Q), dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // len(B))
    for start in range(0, len(Q), step):
        part = slice(start, start + step)
        out[part] = (b_norms - 2.0 * (Q[part] @ B.T)).argmin(axis=1)  # |q|² is the same for every row
    return out


def _nearest_faiss(Q: np.ndarray, B: np.ndarray) -> np.ndarray:
    try:
        import faiss
    except ImportError as exc:
        raise ImportError("faiss is not installed: pip install frozenasd[faiss] (or faiss-cpu)") from exc
    index = faiss.IndexFlatL2(B.shape[1])
    index.add(np.ascontiguousarray(B, dtype=np.float32))
    _, found = index.search(np.ascontiguousarray(Q, dtype=np.float32), 1)
    return found[:, 0].astype(np.int64)
