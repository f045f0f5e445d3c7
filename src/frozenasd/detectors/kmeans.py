"""The seed's detector: distance to the nearest k-means centroid."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.cluster import KMeans
from sklearn.utils.validation import check_is_fitted, validate_data

from frozenasd.detectors.base import AnomalyDetectorMixin
from frozenasd.detectors.crossfit import fold_ids, refit_folds


class KMeansNN(AnomalyDetectorMixin, BaseEstimator):
    """Distance to the nearest of ``n_components`` k-means centroids fitted on normal embeddings.

    ``contamination`` sets ``offset_``: the fraction of training clips that ``decision_function``
    calls outliers. After ``fit`` alone, ``train_scores_`` are the in-sample distances of the training
    clips; in a scoring pipeline ``crossfit`` replaces them by cross-fitted ones. ``domains`` is
    accepted by ``fit`` and ignored.
    """

    _score_name = "distance"
    _state_attributes = ("cluster_centers_", "train_scores_", "offset_", "n_features_in_")

    def __init__(
        self,
        n_components: int = 2,
        *,
        random_state: int | None = 0,
        n_init: int = 10,
        contamination: float = 0.1,
    ) -> None:
        self.n_components = n_components
        self.random_state = random_state
        self.n_init = n_init
        self.contamination = contamination

    def fit(self, X: np.ndarray, y: object = None, domains: object = None) -> KMeansNN:
        X = validate_data(self, X, dtype=np.float64)
        if not 1 <= self.n_components <= X.shape[0]:
            raise ValueError(
                f"n_components={self.n_components} needs between 1 and {X.shape[0]} training clips"
            )
        self._check_contamination()
        kmeans = KMeans(n_clusters=self.n_components, n_init=self.n_init, random_state=self.random_state)
        kmeans.fit(X)
        self.cluster_centers_ = kmeans.cluster_centers_
        self.train_scores_ = self._anomaly_scores(X)
        self._set_offset()
        return self

    def crossfit(self, X: np.ndarray, scaler: Any, **fit_params: Any) -> KMeansNN:
        """Cross-fitted distances: per fold, the scaler and k-means refitted on the other clips.

        Leave-one-out up to ``LOO_REFIT_LIMIT`` clips, else ``MAX_REFIT_FOLDS`` folds. Each fold's
        k-means starts from the centroids fitted on all clips (mapped through the fold's scaler) and
        runs Lloyd's iterations to convergence on the fold: a k-means fit of the fold's clips that
        lands in the same clustering, where ``n_init`` random restarts per fold would cost ``n_init``
        times more and could swap clusters between folds.
        """
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        centers = scaler.inverse_transform(self.cluster_centers_)
        ids = fold_ids(X.shape[0], refit_folds(X.shape[0]))
        smallest = int((ids != 0).sum())  # fold 0 holds the most rows out
        if smallest < self.n_components:
            raise ValueError(
                f"n_components={self.n_components} needs at least {self.n_components + 1} training clips "
                f"(each is scored by a k-means fitted without it), got n_samples={X.shape[0]}"
            )
        scores = np.empty(X.shape[0], dtype=np.float64)
        for f in np.unique(ids):
            held, kept = ids == f, ids != f
            fold_scaler = clone(scaler).fit(X[kept])
            init = fold_scaler.transform(centers)
            kmeans = KMeans(n_clusters=self.n_components, init=init, n_init=1, random_state=self.random_state)
            kmeans.fit(fold_scaler.transform(X[kept]))
            sq = ((fold_scaler.transform(X[held])[:, None, :] - kmeans.cluster_centers_[None]) ** 2).sum(-1)
            scores[held] = np.sqrt(sq.min(axis=1))
        self._set_train_scores(scores)
        return self

    def _anomaly_scores(self, X: np.ndarray) -> np.ndarray:
        # |x - c|² = |x|² - 2 x·c + |c|², clipped at 0 against rounding
        sq = (X**2).sum(1)[:, None] - 2.0 * X @ self.cluster_centers_.T + (self.cluster_centers_**2).sum(1)
        return np.sqrt(np.maximum(sq.min(axis=1), 0.0))
