"""A scoring-pipeline step that drops the embedding dimensions that never vary over the training clips.

Such a dimension (a ReLU unit that stays at zero, a level statistic that ``--normalise`` fixes) carries
no information about what is normal, and a scaler can only divide it by an arbitrary floor; some
detectors (a covariance, a cosine) are better off without it. ``DropConstantFeatures`` keeps the
dimensions whose training minimum and maximum differ, and applies the same selection to every clip it
scores. It belongs first in the scoring pipeline::

    Pipeline([("drop", DropConstantFeatures()), ("scale", FlooredStandardScaler()), ...])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class DropConstantFeatures(TransformerMixin, BaseEstimator):
    """Keep the columns that vary over the rows ``fit`` sees; ``columns_`` holds their indices."""

    _state_attributes = ("columns_", "n_features_in_")

    def fit(self, X: Any, y: object = None) -> DropConstantFeatures:
        """Find the varying columns; ValueError when none varies (the clips are all alike)."""
        x = validate_data(self, X, dtype=np.float64)
        varies = x.max(axis=0) > x.min(axis=0)
        if not varies.any():
            raise ValueError(
                f"every one of the {x.shape[1]} embedding dimensions is the same in all {len(x)} "
                "training clips: nothing tells them apart"
            )
        self.columns_ = np.flatnonzero(varies).astype(np.int64)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The kept columns of ``X``."""
        check_is_fitted(self, "columns_")
        x = validate_data(self, X, reset=False, dtype=np.float64)
        cols = np.asarray(self.columns_)
        if cols.ndim != 1 or cols.dtype.kind not in "iu" or not np.all((cols >= 0) & (cols < x.shape[1])):
            raise ValueError(f"columns_ must be indices of the {x.shape[1]} input columns")
        return x[:, cols]
