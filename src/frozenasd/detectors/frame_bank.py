"""A memory bank of training frames: a clip is as anomalous as its frames farthest from every normal frame.

The rows given to ``FrameBank`` are clips whose frames (the vectors ``frames`` pooling keeps: log-mel
frames, EAT time steps, YAMNet patches, aiSFX blocks) are flattened row-major, ``frame_dim`` values each;
shorter clips are right-padded with frames that are NaN throughout, which are ignored. The bank holds the
training frames, standardised per dimension by the training frames' statistics (``kept_dimensions`` and
``floored_scale``, as ``FlooredStandardScaler`` does for clips), and cut to ``budget`` frames by greedy
k-center selection (:mod:`frozenasd.detectors.coreset`). A frame's score is its Euclidean distance to the
nearest bank frame (:mod:`frozenasd.detectors.nearest`), a clip's the largest (``aggregate="max"``) or the
mean of its ``top_k`` largest frame scores; ``frame_scores`` tells when in the clip they are high.

Training scores are cross-fitted: a clip's frames are scored against the bank, statistics and coreset
fitted without it (leave-one-out up to ``LOO_REFIT_LIMIT`` clips, else ``MAX_REFIT_FOLDS`` folds), so an
unseen normal clip scores like the training clips. Every fold's statistics come from sums (the whole
set's less the held-out clips'), and one greedy pass over the shared frames selects every fold's
coreset, each with its own standardisation and without the held-out frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from frozenasd.detectors.base import AnomalyDetectorMixin
from frozenasd.detectors.coreset import greedy_kcenter
from frozenasd.detectors.crossfit import fold_ids, refit_folds
from frozenasd.detectors.nearest import nearest_distances
from frozenasd.detectors.scaling import MIN_SCALE_RATIO, NoScaler, floored_scale, kept_dimensions

AGGREGATES = ("max", "topk")
# Frames of more dimensions are selected on a Gaussian random projection to PROJECTED_DIMS dimensions.
MAX_SELECTION_DIMS = 256
PROJECTED_DIMS = 128


@dataclass
class Frames:
    """The real (not padding) frames of some rows: values, row of each, position in its row."""

    values: np.ndarray  # (m, frame_dim)
    row: np.ndarray  # (m,) row index, non-decreasing
    position: np.ndarray  # (m,) frame number within the row
    lengths: np.ndarray  # (n,) frames per row up to its last real frame

    def starts(self, n: int) -> np.ndarray:
        """Index of each row's first frame (every row has one)."""
        return np.searchsorted(self.row, np.arange(n))


def split_frames(X: np.ndarray, frame_dim: int, what: str) -> Frames:
    """The frames of the rows of ``X`` (``what``: e.g. "training rows", for messages); padding dropped.

    A frame that is NaN throughout is padding; a frame partly NaN, a width that is not a multiple of
    ``frame_dim`` or a row without any real frame is a ValueError (``X`` is checked finite elsewhere).
    """
    n, width = X.shape
    if width % frame_dim:
        raise ValueError(
            f"{what} have {width} values, not a whole number of frames of frame_dim={frame_dim} values"
        )
    F = X.reshape(n, width // frame_dim, frame_dim)
    nan = np.isnan(F)
    padding = nan.all(axis=2)
    partial = nan.any(axis=2) & ~padding
    if partial.any():
        i, t = np.argwhere(partial)[0]
        raise ValueError(
            f"{what}: row {i}, frame {t} is NaN in {int(nan[i, t].sum())} of its {frame_dim} values; only "
            "whole padding frames may be NaN"
        )
    real = ~padding
    empty = np.flatnonzero(~real.any(axis=1))
    if empty.size:
        raise ValueError(f"{what}: row {empty[0]} has no frames (all {F.shape[1]} are NaN padding)")
    row, position = np.nonzero(real)
    lengths = F.shape[1] - np.argmax(real[:, ::-1], axis=1)
    return Frames(F[row, position], row, position, lengths)


def standardise(values: np.ndarray, mean: np.ndarray, scale: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Frames standardised per dimension; the dimensions not kept set to 0."""
    return np.where(keep, (values - mean) / scale, 0.0)


@dataclass
class _Bank:
    """One fit's frame statistics and bank (standardised frames)."""

    mean: np.ndarray
    scale: np.ndarray
    keep: np.ndarray
    bank: np.ndarray

    def standardise(self, values: np.ndarray) -> np.ndarray:
        return standardise(values, self.mean, self.scale, self.keep)


class FrameBank(AnomalyDetectorMixin, BaseEstimator):
    """Distance of a clip's frames to a coreset of standardised training frames; max or top-k mean.

    Parameters
    ----------
    frame_dim: values per frame (the extractor's ``frame_dim_``); ``None``: each row is one frame.
    budget: the most frames the bank keeps (greedy k-center selection beyond it); ``None``: all.
    aggregate: ``"max"`` (the clip's highest frame score) or ``"topk"`` (the mean of its ``top_k``
        highest; all of them in a clip of fewer frames).
    top_k: frames averaged by ``"topk"``.
    min_scale_ratio: floor of a frame dimension's divisor, as a fraction of the largest (see
        ``frozenasd.detectors.scaling``).
    contamination: sets ``offset_`` on the training scores.
    random_state: seeds the coreset's first frame and, for frames of more than
        ``MAX_SELECTION_DIMS`` dimensions, the random projection the selection runs on.

    Fitted: ``bank_`` (standardised frames), ``mean_``, ``scale_``, ``keep_`` (the frame statistics),
    ``frame_dim_``, ``train_scores_`` (cross-fitted), ``offset_``. ``domains`` is accepted and ignored.
    It standardises its own inputs (``_scales_itself``): a scoring pipeline puts a ``NoScaler`` before it.
    """

    _scales_itself = True
    _state_attributes = (
        "bank_",
        "mean_",
        "scale_",
        "keep_",
        "frame_dim_",
        "train_scores_",
        "offset_",
        "n_features_in_",
    )

    def __init__(
        self,
        frame_dim: int | None = None,
        *,
        budget: int | None = 2048,
        aggregate: str = "max",
        top_k: int = 10,
        min_scale_ratio: float = MIN_SCALE_RATIO,
        contamination: float = 0.1,
        random_state: int | None = 0,
    ) -> None:
        self.frame_dim = frame_dim
        self.budget = budget
        self.aggregate = aggregate
        self.top_k = top_k
        self.min_scale_ratio = min_scale_ratio
        self.contamination = contamination
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def _check_params(self, width: int) -> int:
        self._check_contamination()
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        for name, value, optional in (
            ("frame_dim", self.frame_dim, True),
            ("budget", self.budget, True),
            ("top_k", self.top_k, False),
        ):
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer{' or None' * optional}, got {value!r}")
        if not 0.0 < self.min_scale_ratio <= 1.0:
            raise ValueError(f"min_scale_ratio must be in (0, 1], got {self.min_scale_ratio!r}")
        return width if self.frame_dim is None else int(self.frame_dim)

    def fit(self, X: np.ndarray, y: object = None, domains: object = None) -> FrameBank:
        """Fit the bank on every training clip, and the cross-fitted training scores."""
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        frame_dim = self._check_params(X.shape[1])
        n = X.shape[0]
        if n < 2:
            raise ValueError(f"FrameBank needs at least 2 training clips (cross-fitted scores), got {n}")
        frames = split_frames(X, frame_dim, "training rows")
        ids = fold_ids(n, refit_folds(n))
        held_out = [np.zeros(n, dtype=bool)] + [ids == f for f in range(ids.max() + 1)]
        banks = self._fit_banks(frames, held_out)
        whole = banks[0]
        self.bank_, self.mean_, self.scale_, self.keep_ = whole.bank, whole.mean, whole.scale, whole.keep
        self.frame_dim_ = frame_dim
        scores = np.empty(n)
        for fold, bank in zip(held_out[1:], banks[1:], strict=True):
            rows = np.flatnonzero(fold)
            mask = fold[frames.row]
            dist = nearest_distances(bank.standardise(frames.values[mask]), bank.bank)
            local = np.searchsorted(frames.row[mask], rows)
            scores[rows] = self._aggregate(dist, local)
        self._set_train_scores(scores)
        return self

    def crossfit(self, X: np.ndarray, scaler: Any, **fit_params: Any) -> FrameBank:
        """Nothing to add: ``fit`` already cross-fits everything it fits (statistics, coreset, bank).

        The scaler before it must be a ``NoScaler`` (nothing fitted outside the detector).
        """
        check_is_fitted(self)
        if not isinstance(scaler, NoScaler):
            raise ValueError(
                f"FrameBank standardises its own frames: it needs a NoScaler before it, got "
                f"{type(scaler).__name__} (build the pipeline with scoring_pipeline)"
            )
        return self

    def _fit_banks(self, frames: Frames, held_out: list[np.ndarray]) -> list[_Bank]:
        """One bank per entry of ``held_out`` (boolean per row), fitted on the frames of the other rows."""
        V = frames.values
        m, d = V.shape
        # statistics about the per-dimension median, from sums: whole set's minus the held-out rows'
        centre = np.median(V, axis=0)
        D = V - centre
        starts = frames.starts(len(frames.lengths))
        row_sum = np.add.reduceat(D, starts, axis=0)
        row_sq = np.add.reduceat(D**2, starts, axis=0)
        row_count = np.diff(np.append(starts, m))
        total_sum, total_sq = row_sum.sum(axis=0), row_sq.sum(axis=0)
        stats = []
        for held in held_out:
            count = m - row_count[held].sum()
            s1 = (total_sum - row_sum[held].sum(axis=0)) / count
            var = np.maximum((total_sq - row_sq[held].sum(axis=0)) / count - s1**2, 0.0)
            keep = kept_dimensions(var)
            if not keep.any():
                if not held.any():
                    raise ValueError(
                        f"the {m} training frames are all equal (none of their {d} dimensions varies): "
                        "nothing to learn from"
                    )
                raise ValueError(
                    f"without training clip(s) {np.flatnonzero(held)[:5].tolist()} the other clips' frames "
                    "are all equal (no dimension varies): a cross-fitting fold has nothing to learn from"
                )
            stats.append((centre + s1, floored_scale(var, self.min_scale_ratio), keep, count))
        allowed = [~held[frames.row] for held in held_out]
        chosen = self._select(D, stats, allowed)
        banks = []
        for (mean, scale, keep, _), use, idx in zip(stats, allowed, chosen, strict=True):
            picked = np.flatnonzero(use) if idx is None else idx
            banks.append(_Bank(mean, scale, keep, standardise(V[picked], mean, scale, keep)))
        return banks

    def _select(
        self, D: np.ndarray, stats: list[tuple], allowed: list[np.ndarray]
    ) -> list[np.ndarray | None]:
        """Per fit, the frames its greedy k-center coreset keeps (indices into ``D``), None: all."""
        out: list[np.ndarray | None] = [None] * len(stats)
        budget = self.budget
        todo = [i for i, (*_, count) in enumerate(stats) if budget is not None and count > budget]
        if not todo:
            return out
        rng_first = [np.random.default_rng(self.random_state).integers(stats[i][3]) for i in todo]
        first = np.array([np.flatnonzero(allowed[i])[k] for i, k in zip(todo, rng_first, strict=True)])
        if D.shape[1] <= MAX_SELECTION_DIMS:
            # one pass for every fit: the frames centred and scaled alike (by the first fit's scale, for
            # conditioning), each fit's own standardisation as per-dimension weights
            ref = stats[0][1]
            weights = np.stack([np.where(stats[i][2], (ref / stats[i][1]) ** 2, 0.0) for i in todo])
            Y = D / ref
            use = np.stack([allowed[i] for i in todo])
            chosen = greedy_kcenter(Y, budget, first, weights=weights, allowed=use)
            for k, i in enumerate(todo):
                out[i] = chosen[k]
            return out
        P = np.random.default_rng(self.random_state).standard_normal((D.shape[1], PROJECTED_DIMS))
        for k, i in enumerate(todo):
            _, scale, keep, _ = stats[i]
            rows = np.flatnonzero(allowed[i])
            Y = np.where(keep, D[rows] / scale, 0.0) @ P  # the fit's standardised frames, less a shift
            local_first = np.searchsorted(rows, first[k])
            out[i] = rows[greedy_kcenter(Y, budget, np.array([local_first]))[0]]
        return out

    # ------------------------------------------------------------------ scoring
    def _aggregate(self, dist: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Clip scores from frame scores grouped by row (``starts``: each row's first frame)."""
        if self.aggregate == "max":
            return np.maximum.reduceat(dist, starts)
        bounds = np.append(starts, len(dist))
        out = np.empty(len(starts))
        for i in range(len(starts)):
            part = dist[bounds[i] : bounds[i + 1]]
            k = min(self.top_k, len(part))
            out[i] = np.partition(part, len(part) - k)[len(part) - k :].mean()
        return out

    def _frames_of(self, X: Any) -> tuple[np.ndarray, Frames]:
        check_is_fitted(self)
        X = check_array(X, dtype=np.float64, ensure_all_finite="allow-nan")
        if self.frame_dim is None and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but FrameBank is expecting {self.n_features_in_} features as "
                "input (one frame per row: frame_dim is None)"
            )
        frames = split_frames(X, int(self.frame_dim_), "rows to score")
        Z = standardise(frames.values, self.mean_, self.scale_, self.keep_)
        return nearest_distances(Z, self.bank_), frames

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score column ``(n, 1)``: max or top-k mean of each row's frame scores."""
        dist, frames = self._frames_of(X)
        return self._aggregate(dist, frames.starts(len(frames.lengths)))[:, None]

    def frame_scores(self, X: np.ndarray) -> list[np.ndarray]:
        """Per row, the score of each of its frames (up to its last real frame; NaN for padding)."""
        dist, frames = self._frames_of(X)
        grid = np.full((len(frames.lengths), int(frames.lengths.max())), np.nan)
        grid[frames.row, frames.position] = dist
        return [grid[i, :length].copy() for i, length in enumerate(frames.lengths)]

    def _anomaly_scores(self, X: np.ndarray) -> np.ndarray:
        return self.transform(X)[:, 0]
