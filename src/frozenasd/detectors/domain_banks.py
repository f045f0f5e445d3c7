"""One nearest-neighbour memory bank per domain, each normalised by its own training distances."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from frozenasd.data.dcase import DOMAINS
from frozenasd.detectors.base import AnomalyDetectorMixin, domain_codes
from frozenasd.detectors.crossfit import loo_scaler_stats
from frozenasd.detectors.distances import check_metric, knn_mean_distance
from frozenasd.detectors.oversampling import mixup, smote

NORMALIZATIONS = ("zscore", "median", "none")
OVERSAMPLING = (None, "smote", "mixup")
_TINY = 1e-12
# A bank's spread is shrunk towards the spread pooled over the banks, as if the pooled value had been
# seen in this many more clips: a target bank of a few clips (2 give one distance twice, std 0) still
# gets a usable scale, while a bank of hundreds keeps its own.
STD_PRIOR_CLIPS = 5


class DomainBanks(AnomalyDetectorMixin, BaseEstimator):
    """k-NN distance to a source bank and a target bank, each normalised; the score is the minimum.

    ``fit(X, domains=d)`` with ``d`` holding ``'source'``/``'target'`` per training row (in a
    Pipeline: ``pipe.fit(X, detector__domains=d)``). Without domain information every clip goes
    to one bank (bank 0). A test clip needs no domain: it is scored against every bank.

    Per bank ``b``, a clip's distance ``d_b`` (mean over its ``n_neighbors`` nearest bank points)
    is normalised with the leave-one-out distances of the bank's own training clips:

    - ``normalization="zscore"`` (default): ``(d_b − mean) / std``, so a sparse bank (few target
      clips, hence large distances) is judged by its own spread. ``std`` is the bank's sample std
      shrunk towards the std pooled over banks: ``var = (SS_b + P·pooled) / (n_b − 1 + P)`` with
      ``SS_b`` the bank's sum of squared deviations and ``P = STD_PRIOR_CLIPS`` (one bank: its own);
    - ``"median"``: ``d_b / median``; ``"none"``: ``d_b``.

    Oversampling adds ``n_synthetic`` points to the target bank (seeded by ``random_state``):
    ``oversample="smote"`` interpolates each target clip towards one of its ``smote_neighbors``
    nearest target clips; ``"mixup"`` mixes it with one of its ``mixup_neighbors`` nearest source
    clips as ``a·target + (1 − a)·source``, ``a ~ U(mixup_low, mixup_high)``. Without target clips
    nothing is added.

    Leave-one-out: a training clip's distance to a bank ignores the clip itself and every synthetic
    point made from it, i.e. it is the distance to the bank built without that clip (the other
    synthetic points kept). ``train_scores_`` are these normalised scores, minimum over banks.

    Fitted: ``memory_`` (bank points in input space, training rows first, then synthetic points),
    ``memory_bank_`` (bank per point: 0 source, 1 target), ``memory_parents_`` (``(m, 2)`` training
    rows each point derives from; a real clip is ``(i, -1)``), ``banks_`` (the banks present),
    ``bank_loc_`` and ``bank_scale_`` (normalisation per entry of ``banks_``).
    """

    _state_attributes = (
        "memory_",
        "memory_bank_",
        "memory_parents_",
        "banks_",
        "bank_loc_",
        "bank_scale_",
        "train_scores_",
        "offset_",
        "n_features_in_",
    )

    def __init__(
        self,
        n_neighbors: int = 1,
        *,
        metric: str = "cosine",
        normalization: str = "zscore",
        oversample: str | None = None,
        n_synthetic: int = 100,
        smote_neighbors: int = 5,
        mixup_low: float = 0.8,
        mixup_high: float = 1.0,
        mixup_neighbors: int | None = 5,
        random_state: int | None = 0,
        contamination: float = 0.1,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.normalization = normalization
        self.oversample = oversample
        self.n_synthetic = n_synthetic
        self.smote_neighbors = smote_neighbors
        self.mixup_low = mixup_low
        self.mixup_high = mixup_high
        self.mixup_neighbors = mixup_neighbors
        self.random_state = random_state
        self.contamination = contamination

    def _check_params(self) -> None:
        check_metric(self.metric)
        self._check_contamination()
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.oversample not in OVERSAMPLING:
            raise ValueError(f"oversample must be one of {OVERSAMPLING}, got {self.oversample!r}")
        if self.n_neighbors < 1 or self.n_synthetic < 0:
            raise ValueError(
                f"need n_neighbors >= 1 and n_synthetic >= 0, got {self.n_neighbors}, {self.n_synthetic}"
            )

    def fit(self, X: np.ndarray, y: object = None, domains: Any = None) -> DomainBanks:
        X = validate_data(self, X, dtype=np.float64)
        self._check_params()
        n = X.shape[0]
        codes = domain_codes(domains, n)
        single = codes is None
        codes = np.zeros(n, dtype=np.int64) if single else codes
        self.banks_ = np.unique(codes)
        for b in self.banks_:
            count = int((codes == b).sum())
            if count <= self.n_neighbors:
                raise ValueError(
                    f"the {'single' if single else DOMAINS[b]} bank has n_samples={count} clips; "
                    f"n_neighbors={self.n_neighbors} needs at least {self.n_neighbors + 1} (leave-one-out)"
                )
        rows = np.arange(n)
        points, parents = self._synthesize(X, codes)
        self.memory_ = np.concatenate([X, points])
        self.memory_bank_ = np.concatenate([codes, np.ones(len(points), dtype=np.int64)])
        self.memory_parents_ = np.concatenate([np.stack([rows, np.full(n, -1)], axis=1), parents])

        raw = np.stack(
            [
                knn_mean_distance(
                    X,
                    self.memory_[self.memory_bank_ == b],
                    self.n_neighbors,
                    self.metric,
                    query_ids=rows,
                    parents=self.memory_parents_[self.memory_bank_ == b],
                )
                for b in self.banks_
            ],
            axis=1,
        )
        self._normalise(raw, codes)
        self._set_offset()
        return self

    def _bank_stats(self, own_distances: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Location and scale per bank from the distances of each bank's own clips."""
        squares = [((own - own.mean()) ** 2).sum() for own in own_distances]
        pooled_var = sum(squares) / max(sum(own.size - 1 for own in own_distances), 1)
        loc, scale = [], []
        for own, ss in zip(own_distances, squares, strict=True):
            if self.normalization == "zscore":
                loc.append(own.mean())
                var = (ss + STD_PRIOR_CLIPS * pooled_var) / (own.size - 1 + STD_PRIOR_CLIPS)
                scale.append(max(np.sqrt(var), _TINY))
            elif self.normalization == "median":
                loc.append(0.0)
                scale.append(max(float(np.median(own)), _TINY))
            else:
                loc.append(0.0)
                scale.append(1.0)
        return np.array(loc, dtype=np.float64), np.array(scale, dtype=np.float64)

    def _normalise(self, raw: np.ndarray, codes: np.ndarray) -> None:
        """``bank_loc_``/``bank_scale_`` from the leave-one-out distances ``raw`` (n, banks), then the
        training scores, each normalised by its bank's statistics computed without the clip itself."""
        columns = {b: j for j, b in enumerate(self.banks_)}
        own = [raw[codes == b, j] for j, b in enumerate(self.banks_)]
        self.bank_loc_, self.bank_scale_ = self._bank_stats(own)
        scores = np.empty(raw.shape[0], dtype=np.float64)
        position = np.zeros(raw.shape[0], dtype=np.int64)
        for b in self.banks_:
            position[codes == b] = np.arange(int((codes == b).sum()))
        for i in range(raw.shape[0]):
            j = columns[codes[i]]
            without = [o if k != j else np.delete(o, position[i]) for k, o in enumerate(own)]
            loc, scale = self._bank_stats(without)
            scores[i] = ((raw[i] - loc) / scale).min()
        self._set_train_scores(scores)

    def crossfit(self, X: np.ndarray, scaler: Any, **fit_params: Any) -> DomainBanks:
        """Leave-one-out with the scaler refitted without each clip (closed form, ``O(n² d)``).

        Clip ``i``'s distance to each bank is taken with the clip and the bank standardised by the
        scaler fitted without it (``loo_scaler_stats``), the bank holding neither the clip nor the
        synthetic points made from it (the other synthetic points are those fitted on all clips,
        mapped back through the scaler). ``bank_loc_``/``bank_scale_`` are refitted on these
        distances, so an unseen clip is normalised by statistics of clips unseen by the scaler too.
        """
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        n = X.shape[0]
        codes = self.memory_bank_[:n]
        loc, scale, keep = loo_scaler_stats(X, scaler)
        synthetic = self.memory_[n:]
        memory = np.concatenate([X, scaler.inverse_transform(synthetic)]) if len(synthetic) else X
        rows = np.arange(n)
        raw = np.stack(
            [
                knn_mean_distance(
                    X,
                    memory[self.memory_bank_ == b],
                    self.n_neighbors,
                    self.metric,
                    query_ids=rows,
                    parents=self.memory_parents_[self.memory_bank_ == b],
                    loc=loc,
                    scale=scale,
                    keep=keep,
                )
                for b in self.banks_
            ],
            axis=1,
        )
        self._normalise(raw, codes)
        return self

    def _synthesize(self, X: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Synthetic target points and their parents as training-row indices."""
        target, source = np.flatnonzero(codes == 1), np.flatnonzero(codes == 0)
        if self.oversample is None or target.size == 0 or self.n_synthetic == 0:
            return np.empty((0, X.shape[1])), np.empty((0, 2), dtype=np.int64)
        rng = np.random.default_rng(self.random_state)
        if self.oversample == "smote":
            points, pair = smote(X[target], self.n_synthetic, self.smote_neighbors, rng, self.metric)
            return points, np.stack([target[pair[:, 0]], target[pair[:, 1]]], axis=1)
        points, pair = mixup(
            X[target],
            X[source],
            self.n_synthetic,
            self.mixup_neighbors,
            self.mixup_low,
            self.mixup_high,
            rng,
            self.metric,
        )
        return points, np.stack([target[pair[:, 0]], source[pair[:, 1]]], axis=1)

    def bank_scores(self, X: np.ndarray) -> np.ndarray:
        """Normalised distance of each clip to each bank, ``(n, len(banks_))``; the score is their minimum."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._bank_scores(X)

    def _bank_scores(self, X: np.ndarray) -> np.ndarray:
        raw = np.stack(
            [
                knn_mean_distance(X, self.memory_[self.memory_bank_ == b], self.n_neighbors, self.metric)
                for b in self.banks_
            ],
            axis=1,
        )
        return (raw - self.bank_loc_) / self.bank_scale_

    def _anomaly_scores(self, X: np.ndarray) -> np.ndarray:
        return self._bank_scores(X).min(axis=1)
