"""Cross-fitted training scores: every clip scored by a scaler and detector fitted without it.

A scoring pipeline standardises the embeddings before its detector. A training clip's leave-one-out
score computed after a scaler fitted on *all* clips still carries that clip: the scaler's mean and
spread include it, so along a dimension where it is unusual it is divided by a spread it made itself
and looks more normal than an unseen clip would. Here the scaler is fitted inside each fold too:
exactly in closed form (``loo_scaler_stats``) where a detector supports it, otherwise by refitting
clones of the scaler and the detector on every fold (``refit_scores``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone

from frozenasd.detectors.scaling import FlooredStandardScaler, floored_scale, kept_dimensions

# Leave-one-out by refitting is used up to this many clips; beyond it, ``MAX_REFIT_FOLDS`` folds.
LOO_REFIT_LIMIT = 100
MAX_REFIT_FOLDS = 10


def loo_scaler_stats(X: np.ndarray, scaler: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row ``i``, the ``mean_``, ``scale_`` and ``keep_`` that ``scaler`` would fit on the other rows.

    Three ``(n, d)`` arrays. ``scaler`` is a (possibly unfitted) ``FlooredStandardScaler``; only its
    parameters are read. Closed form, about each dimension's median ``p`` (so that the other rows of a
    dimension in which only row ``i`` differs give exactly zero spread, as a refit would): with
    ``D = X − p`` and its column sums ``S₁ = ΣD``, ``S₂ = ΣD²``, the other rows have sums
    ``s₁ = S₁ − Dᵢ``, ``s₂ = S₂ − Dᵢ²``, mean ``p + s₁/(n−1)`` and biased variance
    ``s₂/(n−1) − (s₁/(n−1))²``; then dropped and floored as the scaler does.
    """
    if type(scaler) is not FlooredStandardScaler:
        raise TypeError(
            f"closed-form leave-one-out needs a FlooredStandardScaler, got {type(scaler).__name__}"
        )
    n, d = X.shape
    if n < 3:
        raise ValueError(f"leave-one-out scaling needs at least 3 training clips, got n_samples={n}")
    p = np.median(X, axis=0)
    D = X - p
    s1 = D.sum(axis=0) - D
    loc = p + s1 / (n - 1) if scaler.with_mean else np.zeros((n, d))
    if not scaler.with_std:
        return loc, np.ones((n, d)), np.ones((n, d), dtype=bool)
    var = np.maximum(((D**2).sum(axis=0) - D**2) / (n - 1) - (s1 / (n - 1)) ** 2, 0.0)
    keep = kept_dimensions(var)
    flat = np.flatnonzero(~keep.any(axis=1))
    if flat.size:
        raise ValueError(
            f"without training clip {flat[0]} the other {n - 1} embeddings are all the same (no dimension "
            "varies): a cross-fitting fold has nothing to learn from"
        )
    return loc, floored_scale(var, scaler.min_scale_ratio), keep


def fold_ids(n: int, folds: int) -> np.ndarray:
    """Fold of each of ``n`` rows: contiguous runs of rows interleaved (``i mod folds``), no shuffling."""
    return np.arange(n) % folds


def refit_folds(n: int) -> int:
    """Folds used when refitting: leave-one-out up to ``LOO_REFIT_LIMIT`` clips, else ``MAX_REFIT_FOLDS``."""
    return n if n <= LOO_REFIT_LIMIT else MAX_REFIT_FOLDS


def refit_scores(
    X: np.ndarray, scaler: Any, detector: Any, folds: int, fit_params: dict[str, Any] | None = None
) -> np.ndarray:
    """Each row's anomaly score under clones of ``scaler`` and ``detector`` fitted on the other folds.

    Rows go to folds by ``fold_ids``; per-row fit parameters (e.g. ``domains``, one entry per row) are
    split along with the rows. ``folds = len(X)`` is leave-one-out.
    """
    n = X.shape[0]
    ids = fold_ids(n, folds)
    out = np.empty(n, dtype=np.float64)
    per_row = {k: v for k, v in (fit_params or {}).items() if v is not None}
    for f in range(folds):
        held, kept = ids == f, ids != f
        params = {k: [v[i] for i in np.flatnonzero(kept)] for k, v in per_row.items()}
        s = clone(scaler).fit(X[kept])
        det = clone(detector).fit(s.transform(X[kept]), **params)
        out[held] = det.transform(s.transform(X[held]))[:, 0]
    return out
