"""Greedy k-center coresets: a few frames that cover all the others (PatchCore's subsampling).

Greedy k-center (Gonzalez) starts from one point and repeatedly adds the point farthest from those
chosen so far. Its covering radius (the largest distance from any point to its nearest chosen one) is
at most twice the best possible for that many points. One call selects for several *problems* at once:
problem ``f`` uses the points ``allowed[f]`` and the weighted distance ``Σ_d weights[f, d] · (y_d −
c_d)²``, so one pass over the shared points serves every cross-fitting fold (each fold standardises its
frames by its own statistics, which is a per-dimension weight on shared, centred points).
"""

from __future__ import annotations

import numpy as np

from frozenasd.cores import one_blas_thread

# The per-problem distance arrays of one batch hold at most this many float32 values (64 MB each).
_BATCH_ELEMENTS = 1 << 24


def greedy_kcenter(
    Y: np.ndarray,
    size: int,
    first: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """Indices ``(n_problems, size)`` of the points each problem's greedy k-center chooses, in order.

    ``Y``: the points ``(n, k)``; ``first``: each problem's first point (an allowed index);
    ``weights``: ``(n_problems, k)`` non-negative per-dimension weights of the squared distance (all
    ones by default); ``allowed``: ``(n_problems, n)`` boolean, the points each problem may use and
    must cover (all by default). Every problem needs at least ``size`` allowed points. Distances are
    computed in float32 from matrix products: the choice among points at almost the same distance may
    differ from an exact computation's, the covering property does not.
    """
    first = np.atleast_1d(np.asarray(first, dtype=np.int64))
    n_problems, n = len(first), Y.shape[0]
    W = np.ones((n_problems, Y.shape[1]), np.float32) if weights is None else np.asarray(weights, np.float32)
    ok = np.ones((n_problems, n), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    if W.shape != (n_problems, Y.shape[1]) or ok.shape != (n_problems, n):
        raise ValueError(
            f"weights {W.shape} and allowed {ok.shape} must be ({n_problems}, {Y.shape[1]}) and "
            f"({n_problems}, {n}), one row per problem"
        )
    if size < 1 or (ok.sum(axis=1) < size).any():
        raise ValueError(f"a coreset of {size} points needs at least that many allowed points per problem")
    if not ok[np.arange(n_problems), first].all():
        raise ValueError("every problem's first point must be one of its allowed points")
    Yf = np.ascontiguousarray(Y, dtype=np.float32)
    Yt = np.ascontiguousarray(Yf.T)
    per_batch = max(1, _BATCH_ELEMENTS // max(n, 1))
    out = np.empty((n_problems, size), dtype=np.int64)
    # thousands of small matrix products: BLAS threads cost more in waking up than they save
    with one_blas_thread():
        for start in range(0, n_problems, per_batch):
            part = slice(start, start + per_batch)
            out[part] = _greedy(Yf, Yt, size, first[part], W[part], ok[part])
    return out


def _greedy(
    Y: np.ndarray, Yt: np.ndarray, size: int, first: np.ndarray, W: np.ndarray, allowed: np.ndarray
) -> np.ndarray:
    rows = np.arange(len(first))
    norms = W @ (Yt * Yt)  # (problems, n): each point's weighted squared norm
    # a point not allowed is never chosen (-inf); chosen ones are set to -inf too
    nearest = np.where(allowed, np.float32(np.inf), np.float32(-np.inf))
    chosen = np.empty((len(first), size), dtype=np.int64)
    current = first.copy()
    for t in range(size):
        chosen[:, t] = current
        C = W * Y[current]  # (problems, k): the new centres, weighted
        d2 = norms - 2.0 * (C @ Yt)
        d2 += (C * Y[current]).sum(axis=1, keepdims=True)
        np.minimum(nearest, d2, out=nearest)
        nearest[rows, current] = -np.inf
        current = nearest.argmax(axis=1)
    return chosen


def covering_radius(Z: np.ndarray, centres: np.ndarray) -> float:
    """The largest Euclidean distance from a row of ``Z`` to its nearest row ``Z[centres]``."""
    from frozenasd.detectors.nearest import nearest_distances

    return float(nearest_distances(Z, Z[centres]).max())
