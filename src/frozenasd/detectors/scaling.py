"""Per-dimension standardisation that does not blow up dimensions with (almost) no training spread.

Embeddings taken after a ReLU have many dimensions that are zero for nearly every clip: exactly
constant ones, and ones where a single clip has a tiny value. Dividing by such a dimension's standard
deviation turns any small test value in it into a huge z-score that outweighs all the other
dimensions. Here the divisor of each dimension is at least ``min_scale_ratio`` times the largest
training standard deviation, so no dimension is amplified more than ``1 / min_scale_ratio`` times
the most spread one; an exactly constant dimension gets that floor too (scikit-learn's
``StandardScaler`` would divide it by 1 in the embedding's own units, whatever they are).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.preprocessing import StandardScaler

# Dimensions are amplified at most 100 times relative to the most spread one.
MIN_SCALE_RATIO = 0.01


def floored_scale(variance: np.ndarray, min_ratio: float) -> np.ndarray:
    """Standard deviations, each raised to at least ``min_ratio`` times the largest (1 where none varies)."""
    std = np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 0.0))
    largest = float(std.max(initial=0.0))
    if not largest > 0.0:
        return np.ones_like(std)
    return np.maximum(std, min_ratio * largest)


class FlooredStandardScaler(StandardScaler):
    """``StandardScaler`` whose per-dimension divisor ``scale_`` is floored by ``floored_scale``.

    ``min_scale_ratio`` in (0, 1]: the floor as a fraction of the largest training standard
    deviation (1 divides every dimension by that largest one). ``mean_`` and ``var_`` are the
    plain training statistics; only ``scale_`` differs from ``StandardScaler``'s, and it is what
    ``transform`` divides by, so a saved ``scale_`` carries the rule.
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
        """Update the statistics as ``StandardScaler`` does (``fit`` goes through here), then floor."""
        if not 0.0 < self.min_scale_ratio <= 1.0:
            raise ValueError(f"min_scale_ratio must be in (0, 1], got {self.min_scale_ratio!r}")
        super().partial_fit(X, y, sample_weight)
        if self.with_std:
            self.scale_ = floored_scale(self.var_, self.min_scale_ratio)
        return self
