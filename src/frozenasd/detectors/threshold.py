"""The decision threshold: a clip is anomalous when its score is above it.

By default the 90th percentile of a gamma law fitted to the training clips' (cross-fitted) scores, as
DCASE's baseline does; or a percentile of the user's choice, or a fixed score.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.stats


def gamma_threshold(train_scores: Any, percentile: float = 0.9) -> float:
    """Decision threshold: the ``percentile`` quantile of a gamma law fitted to training anomaly scores.

    Fits shape, location and scale by maximum likelihood (``scipy.stats.gamma.fit``) and returns
    ``gamma.ppf(percentile, ...)``; a clip is anomalous when ``score > threshold``. Raises ``ValueError``
    for fewer than two scores, non-finite scores or constant scores. If the fit itself fails or gives a
    non-finite quantile, falls back to the empirical quantile ``numpy.quantile(scores, percentile)`` and
    emits a ``RuntimeWarning``.
    """
    if not 0.0 < percentile < 1.0:
        raise ValueError(f"percentile must be a fraction in (0, 1), got {percentile}")
    x = np.asarray(train_scores, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError(f"gamma threshold needs at least 2 training scores, got {x.size}")
    if not np.isfinite(x).all():
        raise ValueError(f"training scores hold {int((~np.isfinite(x)).sum())} non-finite value(s)")
    if np.ptp(x) == 0.0:
        raise ValueError(f"all {x.size} training scores equal {x[0]!r}; a gamma law cannot be fitted")
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            params = scipy.stats.gamma.fit(x)
            threshold = float(scipy.stats.gamma.ppf(percentile, *params))
    except (scipy.stats.FitError, ValueError, FloatingPointError):
        threshold = float("nan")
    if not np.isfinite(threshold):
        warnings.warn(
            "gamma fit of the training scores failed; using the empirical quantile as threshold",
            RuntimeWarning,
            stacklevel=2,
        )
        threshold = float(np.quantile(x, percentile))
    return threshold


DEFAULT_PERCENTILE = 90.0  # DCASE's baseline: the 90th percentile of the gamma fit


def check_threshold_choice(percentile: float | None, fixed: float | None) -> None:
    """A decision threshold is a percentile in (0, 100) or a finite fixed score, never both.

    Raises ValueError saying what is wrong (``None`` for both means the default percentile).
    """
    if percentile is not None and fixed is not None:
        raise ValueError("give a threshold percentile or a fixed threshold, not both")

    def number(x: object) -> bool:
        return not isinstance(x, bool) and isinstance(x, int | float | np.integer | np.floating)

    if percentile is not None and not (number(percentile) and 0 < percentile < 100):
        raise ValueError(f"threshold percentile must be a number between 0 and 100, got {percentile!r}")
    if fixed is not None and not (number(fixed) and np.isfinite(fixed)):
        raise ValueError(f"threshold must be a finite number, got {fixed!r}")


def decision_threshold(
    train_scores: Any, percentile: float | None = None, fixed: float | None = None
) -> float:
    """The decision threshold chosen: ``fixed`` as it is, else the gamma threshold of ``train_scores``
    at ``percentile`` percent (default ``DEFAULT_PERCENTILE``)."""
    check_threshold_choice(percentile, fixed)
    if fixed is not None:
        return float(fixed)
    return gamma_threshold(train_scores, (DEFAULT_PERCENTILE if percentile is None else percentile) / 100)
