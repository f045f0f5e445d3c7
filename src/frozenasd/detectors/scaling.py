"""Per-dimension standardisation that drops dimensions without training spread and floors the rest.

Embeddings taken after a ReLU have many dimensions that are zero for nearly every clip: exactly
constant ones, and ones where a single clip has a tiny value. Dividing by such a dimension's standard
deviation turns any small test value in it into a huge z-score that outweighs all the other
dimensions. Two rules, in ``kept_dimensions`` and ``floored_scale``, used by every fit and every
cross-fitting fold alike:

- a dimension whose training variance is numerically zero (at most ``DROP_RTOL`` times the largest)
  is dropped: ``transform`` sets it to 0 for every clip, so a test clip that deviates in a dimension
  that never varied in training scores as if the dimension were absent;
- every other dimension's divisor is at least ``min_scale_ratio`` times the largest training standard
  deviation, so none is amplified more than ``1 / min_scale_ratio`` times the most spread one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

# Dimensions are amplified at most 100 times relative to the most spread one.
MIN_SCALE_RATIO = 0.01
# A variance at most this fraction of the largest is rounding, not spread: a standard deviation below
# 1e-6 of the largest. Float64 leaves about 1e-16 of a value's magnitude in the mean of a constant
# dimension (1e-32 in its variance), so rounding stays far below this; and a dimension this flat would
# hold, even after the 1 % floor, under 1e-4 of a standardised unit of training spread.
DROP_RTOL = 1e-12


def kept_dimensions(variance: np.ndarray) -> np.ndarray:
    """Which dimensions vary (last axis): variance above ``DROP_RTOL`` times the largest in its row.

    Nothing is kept in a row whose dimensions are all constant.
    """
    variance = np.asarray(variance, dtype=np.float64)
    largest = variance.max(axis=-1, keepdims=True, initial=0.0)
    return (variance > DROP_RTOL * largest) & (largest > 0.0)


def floored_scale(variance: np.ndarray, min_ratio: float) -> np.ndarray:
    """Standard deviations (last axis), each raised to at least ``min_ratio`` times the largest in its row.

    1 in a row where no dimension varies.
    """
    std = np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 0.0))
    largest = std.max(axis=-1, keepdims=True, initial=0.0)
    return np.where(largest > 0.0, np.maximum(std, min_ratio * largest), 1.0)


class FlooredStandardScaler(StandardScaler):
    """``StandardScaler`` that drops constant dimensions (``keep_``) and floors the others' ``scale_``.

    ``min_scale_ratio`` in (0, 1]: the floor as a fraction of the largest training standard
    deviation (1 divides every dimension by that largest one). ``mean_`` and ``var_`` are the
    plain training statistics; ``scale_`` is floored by ``floored_scale`` and ``keep_`` (boolean, one
    entry per dimension) marks the dimensions ``kept_dimensions`` keeps. ``transform`` standardises and
    sets the dropped dimensions to 0 (as good as removing them for a distance, a dot product or a
    cluster centre; ``MahalanobisDetector`` treats such constant inputs as absent). A scaler saved
    without ``keep_`` keeps every dimension, as it did when it was saved. Fitting data in which no
    dimension varies is an error.
    """

    def __init__(
        self,
        *,
        min_scale_ratio: float = MIN_SCALE_RATIO,
        copy: bool = True,
        with_mean: bool = True,
        with_std: bool = True,
    ) -> None:
        super().__init__(copy=copy, with_mean=with_mean, with_std=with_std)
        self.min_scale_ratio = min_scale_ratio

    def partial_fit(self, X: Any, y: object = None, sample_weight: Any = None) -> FlooredStandardScaler:
        """Update the statistics as ``StandardScaler`` does (``fit`` goes through here); drop, then floor."""
        if not 0.0 < self.min_scale_ratio <= 1.0:
            raise ValueError(f"min_scale_ratio must be in (0, 1], got {self.min_scale_ratio!r}")
        super().partial_fit(X, y, sample_weight)
        if not self.with_std:
            self.keep_ = np.ones(self.n_features_in_, dtype=bool)
            return self
        self.keep_ = kept_dimensions(self.var_)
        if not self.keep_.any():
            seen = int(np.max(self.n_samples_seen_))
            raise ValueError(
                f"the {seen} training embeddings are all equal (none of their {self.n_features_in_} "
                "dimensions varies): nothing to learn from"
            )
        self.scale_ = floored_scale(self.var_, self.min_scale_ratio)
        return self

    def transform(self, X: Any, copy: bool | None = None) -> np.ndarray:
        """Standardise, then set the dimensions dropped in training to 0."""
        Z = super().transform(X, copy=copy)
        keep = self._keep()
        if keep is not None:
            Z[:, ~keep] = 0.0
        return Z

    def _keep(self) -> np.ndarray | None:
        """The fitted ``keep_`` mask, checked; ``None`` for a scaler saved before dimensions were dropped."""
        keep = getattr(self, "keep_", None)
        if keep is None:
            return None
        keep = np.asarray(keep)
        if keep.dtype != bool or keep.shape != (self.n_features_in_,):
            raise ValueError(
                f"keep_ must be a boolean mask of {self.n_features_in_} dimensions, "
                f"got {keep.dtype} of shape {keep.shape}"
            )
        return keep


class NoScaler(TransformerMixin, BaseEstimator):
    """The ``scale`` step of a scoring pipeline whose detector standardises its own inputs.

    A detector that combines several views, or scores a clip's frames, fits a scaler per view or
    per frame dimension inside itself (and inside each cross-fitting fold); before it the pipeline
    passes the embeddings on unchanged, as float64. Rows of any width pass (a clip longer than the
    training clips has more frames): the detector checks what it can take. NaN passes too (the
    padding frames of ``frames`` pooling).
    """

    def fit(self, X: Any, y: object = None) -> NoScaler:
        validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        return check_array(X, dtype=np.float64, ensure_all_finite="allow-nan")
