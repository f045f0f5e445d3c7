"""Mahalanobis distance to the training embeddings under a Ledoit–Wolf shrunk covariance."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.utils.validation import validate_data

from frozenasd.detectors.base import AnomalyDetectorMixin

# A shrunk covariance eigenvalue this small relative to the largest is rounding, not spread.
_FLAT = 1e-12


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


class MahalanobisDetector(AnomalyDetectorMixin, BaseEstimator):
    """Mahalanobis distance to the training mean under a Ledoit–Wolf shrunk covariance.

    ``train_scores_`` are leave-one-out: each training clip against the mean and covariance of the
    other clips, with the shrinkage intensity held at the value fitted on all clips (see
    ``loo_mahalanobis``; re-estimating it per clip would move it by ``O(1/n)``). Needs at least 3
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
        # gives its precision and the leave-one-out scores.
        self.location_ = X.mean(axis=0)
        R = X - self.location_
        lam, V = np.linalg.eigh(R.T @ R / X.shape[0])
        lam = np.maximum(lam, 0.0)
        self.shrinkage_ = float(ledoit_wolf_shrinkage(R, assume_centered=True))
        shrunk = (1.0 - self.shrinkage_) * lam + self.shrinkage_ * lam.sum() / X.shape[1]
        flat = int((shrunk <= _FLAT * shrunk.max()).sum())
        if flat:
            raise ValueError(
                f"the {X.shape[0]} training embeddings do not vary along {flat} of {X.shape[1]} directions, "
                "even after shrinkage (identical or mirrored clips?): no Mahalanobis distance is defined"
            )
        self.precision_ = (V / shrunk) @ V.T
        self.train_scores_ = loo_mahalanobis(R, lam, V, self.shrinkage_)
        self._set_offset()
        return self

    def _anomaly_scores(self, X: np.ndarray) -> np.ndarray:
        diff = X - self.location_
        return np.sqrt(np.maximum(((diff @ self.precision_) * diff).sum(axis=1), 0.0))
