"""Mahalanobis distance to the training embeddings under a Ledoit–Wolf shrunk covariance."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import solve_triangular
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from frozenasd.detectors.base import AnomalyDetectorMixin
from frozenasd.detectors.crossfit import fold_ids, refit_folds

# A shrunk covariance eigenvalue this small relative to the largest is rounding, not spread.
_FLAT = 1e-12


def lw_shrinkage(R: np.ndarray) -> float:
    """Ledoit–Wolf shrinkage intensity of centred rows ``R``, as ``sklearn.covariance.ledoit_wolf_shrinkage``
    with ``assume_centered=True`` computes it, through the smaller of ``RᵀR`` and ``RRᵀ``."""
    n, d = R.shape
    gram = R @ R.T if n < d else R.T @ R  # the same squared Frobenius norm either way
    return _lw_from(R, float((gram**2).sum()))


def _lw_from(R: np.ndarray, gram_fro2: float) -> float:
    """``lw_shrinkage`` given ``‖RᵀR‖²_F`` (from whichever Gram matrix the caller already has)."""
    n, d = R.shape
    if d == 1:
        return 0.0
    sq = R**2
    trace_per_dim = sq.sum(axis=0) / n
    mu = trace_per_dim.sum() / d
    beta_ = float((sq.sum(axis=1) ** 2).sum())  # sum of the entries of (R²)ᵀR²
    delta_ = gram_fro2 / n**2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * trace_per_dim.sum() + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def _covariance_eig(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of ``RᵀR/n`` for its non-zero spectrum (the rest is 0).

    With fewer rows than dimensions the ``n × n`` Gram matrix is decomposed instead of the ``d × d``
    covariance (same non-zero eigenvalues; eigenvectors ``Rᵀu/√(nλ)``), so a fit costs ``O(n² d)``.
    """
    n, d = R.shape
    if n >= d:
        lam, V = np.linalg.eigh(R.T @ R / n)
        return np.maximum(lam, 0.0), V
    lam, U = np.linalg.eigh(R @ R.T / n)
    keep = lam > _FLAT * max(float(lam.max(initial=0.0)), 0.0)
    lam, U = lam[keep], U[:, keep]
    return lam, (R.T @ U) / np.sqrt(n * lam)


def loo_mahalanobis(R: np.ndarray, lam: np.ndarray, V: np.ndarray, shrinkage: float) -> np.ndarray:
    """Each row's Mahalanobis distance to the mean and shrunk covariance of the *other* rows.

    ``R`` are the centred rows, ``lam, V`` the eigendecomposition of their biased covariance ``C``.
    The covariance without row ``i`` is ``(1 − α)·C₋ᵢ + α·tr(C₋ᵢ)/d·I`` (``C₋ᵢ`` the biased empirical
    covariance of the other rows, ``α = shrinkage`` held fixed). With ``r = xᵢ − mean`` and
    ``c₁ = n/(n−1)``, ``c₂ = n/(n−1)²``: ``C₋ᵢ = c₁C − c₂ r rᵀ`` and ``xᵢ − mean₋ᵢ = c₁ r``, so the one
    eigendecomposition of ``C`` and a rank-one (Sherman–Morrison) correction give every row in
    ``O(n d²)``, exactly as refitting ``n`` times would.
    """
    n, d = R.shape
    c1, c2 = n / (n - 1), n / (n - 1) ** 2
    sq = (R**2).sum(axis=1)
    beta = shrinkage * (c1 * lam.sum() - c2 * sq) / d  # the shrinkage target's scale per row
    Z = R @ V
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (Z**2 / ((1.0 - shrinkage) * c1 * lam[None, :] + beta[:, None])).sum(axis=1)
        rest = 1.0 - (1.0 - shrinkage) * c2 * q
        d2 = np.where(rest > 0.0, c1**2 * q / rest, np.inf)
    return np.sqrt(np.maximum(d2, 0.0))


def varying_dimensions(X: np.ndarray) -> np.ndarray:
    """The dimensions in which the rows of ``X`` are not all equal (boolean mask).

    The others are absent for the detector: a scaler before it sets a dimension it drops to 0 for
    every clip, and such a dimension must count neither in a distance nor in the shrinkage target.
    """
    return (X != X[:1]).any(axis=0)


def _held_out_distances(Z: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Distances of the rows ``Q`` under the detector ``fit`` would make on ``Z`` (no eigendecomposition)."""
    active = varying_dimensions(Z)
    if not active.all():
        Z, Q = Z[:, active], Q[:, active]
    n, d = Z.shape
    R = Z - Z.mean(axis=0)
    gram = R @ R.T if n < d else R.T @ R
    shrinkage = _lw_from(R, float((gram**2).sum()))
    floor = shrinkage * float((R**2).sum()) / (n * d)
    D = Q - Z.mean(axis=0)
    try:
        if shrinkage >= 1.0:
            d2 = (D**2).sum(axis=1) / floor
        elif n < d:  # Woodbury: ((1 − α)RᵀR/n + floor·I)⁻¹ through an n × n system
            if not floor > 0.0:
                raise np.linalg.LinAlgError
            inner = np.linalg.cholesky(gram + (n * floor / (1.0 - shrinkage)) * np.eye(n))
            W = solve_triangular(inner, R @ D.T, lower=True)
            d2 = ((D**2).sum(axis=1) - (W**2).sum(axis=0)) / floor
        else:
            L = np.linalg.cholesky((1.0 - shrinkage) * gram / n + floor * np.eye(d))
            d2 = (solve_triangular(L, D.T, lower=True) ** 2).sum(axis=0)
    except np.linalg.LinAlgError as exc:
        raise ValueError(
            f"the {n} training embeddings of a cross-fitting fold do not vary along every direction, even "
            "after shrinkage (identical or mirrored clips?): no Mahalanobis distance is defined"
        ) from exc
    return np.sqrt(np.maximum(d2, 0.0))


class MahalanobisDetector(AnomalyDetectorMixin, BaseEstimator):
    """Mahalanobis distance to the training mean under a Ledoit–Wolf shrunk covariance.

    ``train_scores_`` are leave-one-out: each training clip against the mean and covariance of the
    other clips, with the shrinkage intensity held at the value fitted on all clips (see
    ``loo_mahalanobis``; re-estimating it per clip would move it by ``O(1/n)``). Dimensions constant
    over the training clips (those a scaler before it drops) are absent: the shrinkage target averages
    the variance over the other dimensions only, and the precision is 0 along them. Needs at least 3
    training clips. ``domains`` is accepted by ``fit`` and ignored.
    """

    _state_attributes = (
        "location_",
        "precision_",
        "shrinkage_",
        "train_scores_",
        "offset_",
        "n_features_in_",
    )

    def __init__(self, *, contamination: float = 0.1) -> None:
        self.contamination = contamination

    def fit(self, X: np.ndarray, y: object = None, domains: object = None) -> MahalanobisDetector:
        X = validate_data(self, X, dtype=np.float64)
        self._check_contamination()
        if X.shape[0] < 3:
            raise ValueError(
                f"MahalanobisDetector needs at least 3 training clips, got n_samples={X.shape[0]}"
            )
        # The Ledoit-Wolf estimate (1 − α)·C + α·tr(C)/d·I shares C's eigenvectors: one eigendecomposition
        # gives its precision and the leave-one-out scores. Constant dimensions are left out (d counts
        # the others); the precision is 0 along them.
        self.location_ = X.mean(axis=0)
        active = varying_dimensions(X)
        n, d = X.shape[0], int(active.sum())
        if d == 0:
            raise ValueError(
                f"the {n} training embeddings do not vary along {X.shape[1]} of {X.shape[1]} directions "
                "(identical clips?): no Mahalanobis distance is defined"
            )
        R = X - self.location_ if active.all() else X[:, active] - self.location_[active]
        lam, V = _covariance_eig(R)
        self.shrinkage_ = lw_shrinkage(R)
        floor = self.shrinkage_ * lam.sum() / d  # the shrunk eigenvalue of every direction without spread
        shrunk = (1.0 - self.shrinkage_) * lam + floor
        largest = max(float(shrunk.max(initial=0.0)), floor)
        flat = int((shrunk <= _FLAT * largest).sum()) + (d - lam.size) * int(floor <= _FLAT * largest)
        if flat:
            raise ValueError(
                f"the {n} training embeddings do not vary along {flat} of {d} directions, "
                "even after shrinkage (identical or mirrored clips?): no Mahalanobis distance is defined"
            )
        if lam.size == d:
            precision = (V / shrunk) @ V.T
        else:  # 1/floor off the spanned subspace
            precision = (V * (1.0 / shrunk - 1.0 / floor)) @ V.T + np.eye(d) / floor
        if active.all():
            self.precision_ = precision
        else:
            self.precision_ = np.zeros((X.shape[1], X.shape[1]))
            self.precision_[np.ix_(active, active)] = precision
        self.train_scores_ = loo_mahalanobis(R, lam, V, self.shrinkage_)
        self._set_offset()
        return self

    def crossfit(self, X: np.ndarray, scaler: Any, **fit_params: Any) -> MahalanobisDetector:
        """Cross-fitted distances: per fold, the scaler, mean, covariance and shrinkage of the other clips.

        Leave-one-out up to ``LOO_REFIT_LIMIT`` clips, else ``MAX_REFIT_FOLDS`` folds (a fold costs a
        ``d × d`` factorisation once there are more clips than dimensions). Each held-out clip gets
        exactly the distance a scaler and detector fitted on the fold's other clips give it (the
        dimensions that fold's scaler drops absent), computed
        by a linear solve (in the ``n × n`` sample space when the fold has fewer clips than dimensions)
        instead of the full eigendecomposition a refit would make.
        """
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        ids = fold_ids(X.shape[0], refit_folds(X.shape[0]))
        scores = np.empty(X.shape[0], dtype=np.float64)
        for f in np.unique(ids):
            held, kept = ids == f, ids != f
            fold_scaler = clone(scaler).fit(X[kept])
            scores[held] = _held_out_distances(fold_scaler.transform(X[kept]), fold_scaler.transform(X[held]))
        self._set_train_scores(scores)
        return self

    def _anomaly_scores(self, X: np.ndarray) -> np.ndarray:
        diff = X - self.location_
        return np.sqrt(np.maximum(((diff @ self.precision_) * diff).sum(axis=1), 0.0))
