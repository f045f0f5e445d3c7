"""Exact nearest-neighbour distances by brute force (numpy matrix products, queries in chunks)."""

from __future__ import annotations

import numpy as np

METRICS = ("cosine", "euclidean")

# A chunk of queries holds at most this many query-to-memory distances (float64: 32 MB).
_CHUNK_ELEMENTS = 1 << 22


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row stays zero (cosine distance 1 to everything)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0.0, norms, 1.0)


def pairwise_distances(Q: np.ndarray, B: np.ndarray, metric: str) -> np.ndarray:
    """All distances ``(len(Q), len(B))``: ``1 - cos`` or Euclidean (fast, rounding of order 1e-8)."""
    if metric == "cosine":
        return 1.0 - unit_rows(Q) @ unit_rows(B).T
    sq = (Q**2).sum(1)[:, None] - 2.0 * Q @ B.T + (B**2).sum(1)[None, :]
    return np.sqrt(np.maximum(sq, 0.0))


def per_query_distances(
    Q: np.ndarray, B: np.ndarray, metric: str, loc: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """Distances ``(len(Q), len(B))``, query ``i`` and the memory mapped by ``(· − loc[i]) / scale[i]``.

    Each query brings its own standardisation (e.g. a scaler fitted without that query); matrix products
    keep this at the cost of a plain ``pairwise_distances`` times a small factor (rounding of order 1e-8).
    An infinite ``scale`` sets a dimension to 0 for the query and the memory alike.
    """
    W = 1.0 / scale**2
    if metric == "euclidean":  # the location cancels
        sq = (W * Q**2).sum(1)[:, None] - 2.0 * (W * Q) @ B.T + W @ (B**2).T
        return np.sqrt(np.maximum(sq, 0.0))
    Qc = Q - loc
    dots = (W * Qc) @ B.T - (W * Qc * loc).sum(1)[:, None]
    b_norms = W @ (B**2).T - 2.0 * (W * loc) @ B.T + (W * loc**2).sum(1)[:, None]
    q_norms = np.sqrt((W * Qc**2).sum(1))[:, None]
    denom = q_norms * np.sqrt(np.maximum(b_norms, 0.0))
    return 1.0 - np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0.0)


def _exact(Q: np.ndarray, P: np.ndarray, metric: str) -> np.ndarray:
    """Distances between each query row and its own candidate rows ``P[i]`` (shape (c, k, d))."""
    if metric == "cosine":
        # for unit vectors 1 - cos = |u - v|² / 2, which keeps its precision near zero
        diff = unit_rows(Q)[:, None, :] - unit_rows(P.reshape(-1, P.shape[-1])).reshape(P.shape)
        return 0.5 * (diff**2).sum(-1)
    return np.linalg.norm(Q[:, None, :] - P, axis=-1)


def knn_mean_distance(
    Q: np.ndarray,
    B: np.ndarray,
    k: int,
    metric: str,
    *,
    query_ids: np.ndarray | None = None,
    parents: np.ndarray | None = None,
    loc: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """Mean distance of each row of ``Q`` to its ``k`` nearest rows of the memory ``B``.

    Leave-one-out: with ``query_ids`` (one id per query) and ``parents`` (``(len(B), p)`` ids, -1 for
    none), memory row ``j`` is ignored for query ``i`` whenever ``query_ids[i]`` is among
    ``parents[j]``. The candidates are chosen on the fast matrix-product distances and their distances
    then recomputed directly, so near-zero distances are exact to rounding.

    With ``loc`` and ``scale`` (``(len(Q), d)`` each), query ``i`` and the memory are standardised by
    ``(· − loc[i]) / scale[i]`` before its distances are taken (see ``per_query_distances``), and with
    ``keep`` (boolean, ``(len(Q), d)``) only its dimensions ``keep[i]`` count.
    """
    per_query = loc is not None and scale is not None
    check_metric(metric)
    n, m = Q.shape[0], B.shape[0]
    out = np.empty(n, dtype=np.float64)
    if n == 0:
        return out
    chunk = max(1, _CHUNK_ELEMENTS // max(m, k * Q.shape[1], 1))
    for start in range(0, n, chunk):
        q = Q[start : start + chunk]
        if per_query:
            lc, sc = loc[start : start + chunk], scale[start : start + chunk]
            if keep is not None:  # a dropped dimension: divided by inf, it is 0 for query and memory alike
                sc = np.where(keep[start : start + chunk], sc, np.inf)
            d = per_query_distances(q, B, metric, lc, sc)
        else:
            d = pairwise_distances(q, B, metric)
        if query_ids is not None and parents is not None:
            ids = query_ids[start : start + chunk, None]
            skip = np.zeros(d.shape, dtype=bool)
            for col in range(parents.shape[1]):
                skip |= parents[None, :, col] == ids
            if (m - skip.sum(1)).min() < k:
                raise ValueError(f"leave-one-out needs more than {k} other memory rows per training clip")
            d[skip] = np.inf
        elif m < k:
            raise ValueError(f"n_neighbors={k} needs at least {k} memory rows, got {m}")
        idx = np.argpartition(d, k - 1, axis=1)[:, :k]
        if per_query:
            q, P = (q - lc) / sc, (B[idx] - lc[:, None, :]) / sc[:, None, :]
        else:
            P = B[idx]
        out[start : start + chunk] = _exact(q, P, metric).mean(axis=1)
    return out
