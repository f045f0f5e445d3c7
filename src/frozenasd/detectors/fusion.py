"""Label-free fusion of several (view, detector) branches into one anomaly score.

Each branch is a scaler and a detector fitted on its own columns of the input (one view of the clip:
log-mel frames max-pooled, an encoder's mean embedding, …). A branch's raw scores are on its own
scale, so each is turned into a robust z-score against its own cross-fitted training scores, the
training clips' scores under a scaler and detector fitted without them: ``z = (s − median) / (1.4826 ·
MAD)``. A normal unseen clip's z is then distributed like the training clips' in every branch, and
the branches are combined by a rule that needs no labels:

- ``max``: the largest z: a clip is as anomalous as its most alarmed view (one view that hears the
  fault is enough);
- ``mean``: the average z: views vote, one noisy view cannot raise an alarm alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from frozenasd.detectors.base import AnomalyDetectorMixin
from frozenasd.detectors.registry import DETECTORS, make_detector
from frozenasd.detectors.scaling import FlooredStandardScaler

RULES = ("max", "mean")
MAD_TO_SD = 1.4826  # the MAD of a normal distribution times this is its standard deviation


def robust_location_spread(scores: np.ndarray) -> tuple[float, float]:
    """Median and MAD-based spread of ``scores``; the standard deviation where the MAD is 0.

    The spread is never 0: with every score equal it is 1 (z then measures distance in raw units).
    """
    s = np.asarray(scores, dtype=np.float64)
    loc = float(np.median(s))
    spread = MAD_TO_SD * float(np.median(np.abs(s - loc)))
    if not spread > 0.0:
        spread = float(s.std())
    return loc, spread if spread > 0.0 else 1.0


def combine(z: np.ndarray, rule: str) -> np.ndarray:
    """Rows of branch z-scores ``(n, branches)`` combined by ``rule``."""
    if rule == "max":
        return z.max(axis=1)
    if rule == "mean":
        return z.mean(axis=1)
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


class FusionDetector(AnomalyDetectorMixin, BaseEstimator):
    """Several detectors, each on its own columns, z-normalised by their training scores and combined.

    Parameters
    ----------
    bounds: column boundaries of the branches: branch ``k`` reads columns ``bounds[k]:bounds[k + 1]``
        (``bounds[0] = 0``, the last bound is the input's width).
    detectors: the detector name of each branch (see ``frozenasd.detectors.pipeline.DETECTORS``);
        one fewer than ``bounds``.
    rule: how the branches' z-scores are combined: ``"max"`` or ``"mean"``.
    n_components, random_state: passed to the branch detectors that take them.
    contamination: sets ``offset_`` on the fused training scores.

    Each branch has its own ``FlooredStandardScaler`` (``branches_``: ``(scaler, detector)`` pairs),
    cross-fitted as a scoring pipeline's is, so the detector standardises its inputs itself and
    ``scoring_pipeline`` puts a ``NoScaler`` before it. ``loc_`` and ``spread_`` are each branch's
    median and robust spread of its cross-fitted training scores; ``train_scores_`` are the fused
    z-scores of the training clips.
    """

    _scales_itself = True
    _nested_state = ("branches_",)  # groups of fitted estimators, saved as such (detector_io)
    _state_attributes = ("branches_", "loc_", "spread_", "train_scores_", "offset_", "n_features_in_")

    def __init__(
        self,
        bounds: tuple[int, ...] = (0,),
        detectors: tuple[str, ...] = (),
        *,
        rule: str = "max",
        n_components: int = 2,
        random_state: int = 0,
        contamination: float = 0.1,
    ) -> None:
        self.bounds = bounds
        self.detectors = detectors
        self.rule = rule
        self.n_components = n_components
        self.random_state = random_state
        self.contamination = contamination

    def _check_params(self, width: int) -> list[tuple[int, int]]:
        bounds, names = list(self.bounds), list(self.detectors)
        if len(names) < 1 or len(bounds) != len(names) + 1:
            raise ValueError(
                f"a fusion needs at least one branch and one more bound than detectors; got bounds "
                f"{bounds} for detectors {names}"
            )
        rising = all(a < b for a, b in zip(bounds, bounds[1:], strict=False))
        if bounds[0] != 0 or bounds[-1] != width or not rising:
            raise ValueError(f"bounds {bounds} must rise strictly from 0 to the input's {width} columns")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        unknown = [n for n in names if n not in DETECTORS]
        if unknown:
            raise ValueError(f"unknown branch detector(s) {unknown}; choose from {sorted(DETECTORS)}")
        nested = [n for n in names if getattr(DETECTORS[n].cls, "_scales_itself", False)]
        if nested:
            raise ValueError(f"a fusion branch cannot itself be {nested}: it needs one row per clip")
        return list(zip(bounds, bounds[1:], strict=False))

    def fit(self, X: np.ndarray, y: object = None, domains: object = None) -> FusionDetector:
        X = self._validate_data(X, reset=True)
        self._check_contamination()
        spans = self._check_params(X.shape[1])
        self.branches_: list[tuple[FlooredStandardScaler, Any]] = []
        loc, spread, z = [], [], []
        for (a, b), name in zip(spans, self.detectors, strict=True):
            scaler = FlooredStandardScaler()
            detector = make_detector(name, self.n_components, self.random_state)
            try:
                detector.fit(scaler.fit_transform(X[:, a:b]), domains=domains)
                detector.crossfit(X[:, a:b], scaler, domains=domains)
            except ValueError as exc:
                raise ValueError(f"fusion branch {len(self.branches_) + 1} ({name}): {exc}") from exc
            m, s = robust_location_spread(detector.train_scores_)
            self.branches_.append((scaler, detector))
            loc.append(m)
            spread.append(s)
            z.append((detector.train_scores_ - m) / s)
        self.loc_ = np.array(loc)
        self.spread_ = np.array(spread)
        self.train_scores_ = combine(np.stack(z, axis=1), self.rule)
        self._set_offset()
        return self

    def crossfit(self, X: np.ndarray, scaler: Any, **fit_params: Any) -> FusionDetector:
        """Nothing to do: every branch's training scores were cross-fitted, scaler included, in ``fit``."""
        check_is_fitted(self)
        return self

    def branch_scores(self, X: np.ndarray) -> np.ndarray:
        """Each branch's z-score of each row ``(n, branches)``: which view raised an alarm."""
        check_is_fitted(self)
        X = self._validate_data(X, reset=False)
        spans = self._check_params(X.shape[1])
        if len(self.branches_) != len(spans) or np.shape(self.loc_) != (len(spans),):
            raise ValueError(f"the fitted state holds {len(self.branches_)} branches for {len(spans)} bounds")
        cols = []
        for (a, b), (scaler, detector), m, s in zip(
            spans, self.branches_, self.loc_, self.spread_, strict=True
        ):
            cols.append((detector.transform(scaler.transform(X[:, a:b]))[:, 0] - m) / s)
        return np.stack(cols, axis=1)

    def _anomaly_scores(self, X: np.ndarray) -> np.ndarray:
        return combine(self.branch_scores(X), self.rule)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Fused anomaly score column ``(n, 1)``; higher = more anomalous."""
        return self._anomaly_scores(X)[:, None]

    def _validate_data(self, X: Any, *, reset: bool) -> np.ndarray:
        return validate_data(self, X, dtype=np.float64, reset=reset)
