"""What every detector shares: the score conventions, ``offset_`` and the domain labels."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from frozenasd.data.dcase import DOMAINS
from frozenasd.detectors.crossfit import refit_folds, refit_scores


class AnomalyDetectorMixin(TransformerMixin):
    """Score conventions shared by the detectors.

    ``transform`` gives the anomaly score as an ``(n, 1)`` column (higher = more anomalous);
    ``score_samples`` is its negative and ``decision_function`` is ``score_samples - offset_``
    (negative = outlier), as scikit-learn defines them. ``train_scores_`` holds the leave-one-out
    anomaly scores of the training clips and ``fit_transform`` returns them, so a scaler after the
    detector in a Pipeline is fitted on scores comparable to those of unseen clips (for a
    nearest-neighbour detector ``fit(X).transform(X)`` would be the in-sample distance, often 0).
    Subclasses implement ``fit`` (setting ``train_scores_`` and calling ``_set_offset``) and
    ``_anomaly_scores``; ``crossfit`` (refits by default) brings the scaler before the detector into
    the folds.
    """

    _score_name = "anomaly_score"

    def _check_contamination(self) -> None:
        if not 0.0 < self.contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {self.contamination}")

    def _set_offset(self) -> None:
        self.offset_ = float(np.percentile(-self.train_scores_, 100.0 * self.contamination))

    def _anomaly_scores(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def crossfit(self, X: np.ndarray, scaler: Any, **fit_params: Any) -> AnomalyDetectorMixin:
        """Replace ``train_scores_`` (and ``offset_``) by scores cross-fitted with the scaler in the folds.

        The detector must already be fitted on ``scaler.transform(X)``, ``X`` being the raw training
        rows and ``scaler`` the fitted scaler before it; ``fit_params`` are those given to ``fit``. A
        row's new score is its score under a clone of ``scaler`` and of this detector fitted without it
        (leave-one-out up to ``LOO_REFIT_LIMIT`` rows, else ``MAX_REFIT_FOLDS`` folds; see
        ``frozenasd.detectors.crossfit``). Subclasses override this with closed forms where exact.
        """
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        self._set_train_scores(refit_scores(X, scaler, self, refit_folds(X.shape[0]), fit_params))
        return self

    def _set_train_scores(self, scores: np.ndarray) -> None:
        self.train_scores_ = np.asarray(scores, dtype=np.float64)
        self._set_offset()

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score column ``(n, 1)``; higher = more anomalous."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._anomaly_scores(X)[:, None]

    def fit_transform(self, X: np.ndarray, y: object = None, **fit_params: Any) -> np.ndarray:
        """Fit, then return the leave-one-out training scores ``train_scores_`` as a column."""
        return self.fit(X, y, **fit_params).train_scores_[:, None].copy()

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Normality: the negative anomaly score (lower = more abnormal)."""
        return -self.transform(X)[:, 0]

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """``score_samples - offset_``: negative for clips the detector calls anomalous."""
        return self.score_samples(X) - self.offset_

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.array([self._score_name], dtype=object)


def domain_codes(domains: Any, n: int) -> np.ndarray | None:
    """Domain per training row as 0 (source) / 1 (target); ``None`` when there is no domain information.

    ``domains`` holds ``'source'``/``'target'`` per row; ``None`` or all-``None`` entries mean no
    domain information.
    """
    if domains is None:
        return None
    values = np.asarray(domains, dtype=object)
    if values.shape != (n,):
        raise ValueError(f"domains has shape {values.shape}; expected ({n},), one label per training row")
    missing = np.array([v is None for v in values], dtype=bool)
    if missing.all():
        return None
    if missing.any():
        raise ValueError(f"domains: {int(missing.sum())} of {n} training rows have no domain label")
    codes = np.full(n, -1, dtype=np.int64)
    for code, name in enumerate(DOMAINS):
        codes[np.array([str(v) == name for v in values])] = code
    if (codes < 0).any():
        bad = sorted({str(v) for v in values[codes < 0]})
        raise ValueError(f"domains must be 'source' or 'target'; got {bad[:5]}")
    return codes
