"""k-nearest-neighbour distance to a memory of normal training embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from frozenasd.detectors.base import AnomalyDetectorMixin
from frozenasd.detectors.crossfit import loo_scaler_stats
from frozenasd.detectors.distances import check_metric, knn_mean_distance


class KNNDetector(AnomalyDetectorMixin, BaseEstimator):
    """Mean distance to the ``n_neighbors`` nearest training embeddings (exact, brute force).

    ``metric``: ``"cosine"`` (``1 - cos``) or ``"euclidean"``. ``train_scores_`` are leave-one-out:
    each training clip's mean distance to its nearest *other* training clips. ``contamination``
    sets ``offset_`` on those scores. ``domains`` is accepted by ``fit`` and ignored (one memory
    bank; see ``DomainBanks`` for one bank per domain).
    """

    _state_attributes = ("memory_", "train_scores_", "offset_", "n_features_in_")

    def __init__(self, n_neighbors: int = 1, *, metric: str = "cosine", contamination: float = 0.1) -> None:
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.contamination = contamination

    def fit(self, X: np.ndarray, y: object = None, domains: object = None) -> KNNDetector:
        X = validate_data(self, X, dtype=np.float64)
        check_metric(self.metric)
        self._check_contamination()
        if not 1 <= self.n_neighbors < X.shape[0]:
            raise ValueError(
                f"n_neighbors={self.n_neighbors} needs at least {self.n_neighbors + 1} training clips "
                f"(leave-one-out), got n_samples={X.shape[0]}"
            )
        self.memory_ = X.copy()
        ids = np.arange(X.shape[0])
        self.train_scores_ = knn_mean_distance(
            X, X, self.n_neighbors, self.metric, query_ids=ids, parents=ids[:, None]
        )
        self._set_offset()
        return self

    def crossfit(self, X: np.ndarray, scaler: Any, **fit_params: Any) -> KNNDetector:
        """Exact leave-one-out with the scaler refitted without each clip (closed form, ``O(n² d)``).

        Clip ``i`` and the other clips are standardised by the scaler fitted on the other clips
        (``loo_scaler_stats``; the dimensions it drops left out), then its mean distance to its
        ``n_neighbors`` nearest others is taken: what a pipeline fitted without clip ``i`` gives it.
        """
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        loc, scale, keep = loo_scaler_stats(X, scaler)
        ids = np.arange(X.shape[0])
        self._set_train_scores(
            knn_mean_distance(
                X,
                X,
                self.n_neighbors,
                self.metric,
                query_ids=ids,
                parents=ids[:, None],
                loc=loc,
                scale=scale,
                keep=keep,
            )
        )
        return self

    def _anomaly_scores(self, X: np.ndarray) -> np.ndarray:
        return knn_mean_distance(X, self.memory_, self.n_neighbors, self.metric)
