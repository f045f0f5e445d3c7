"""Fitting on normal clips: the scoring pipeline and its decision threshold, from the training clips only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from frozenasd.detectors import FusionDetector
from frozenasd.detectors.frames import detector_params
from frozenasd.detectors.pipeline import DETECTORS, make_detector, scoring_pipeline
from frozenasd.detectors.threshold import decision_threshold
from frozenasd.embed import Embedded
from frozenasd.errors import FrozenASDError, LayoutError
from frozenasd.settings import RunSettings

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

__all__ = ["fit_on_normals"]


def fit_on_normals(
    train: Embedded,
    settings: RunSettings,
    where: object,
    domains: Sequence[str | None],
    bounds: Sequence[int] | None = None,
) -> tuple[Pipeline, float]:
    """The scoring pipeline fitted on the usable training clips, and its decision threshold.

    The threshold is the settings' fixed one, or the gamma threshold (``threshold_percentile``, default
    90) of the training scores, each cross-fitted (the scaler and the detector fitted without the clip;
    see ``ScoringPipeline``), so it comes from training clips only and a normal unseen clip exceeds it
    about as often as the percentile says. The detectors' own ``offset_`` is not used: the threshold
    applies to the pipeline's output (after its MinMaxScaler), which is what is saved and compared.
    With fusion ``branches``, ``bounds`` gives each branch's columns (see ``Views.embed``). Too few
    clips, or a detector that cannot be fitted to them, raise FrozenASDError naming ``where``.
    """
    needed = fewest_training_clips(settings)
    if len(train.clips) < needed:
        raise LayoutError(
            f"{where}: {len(train.clips)} usable training clips; the detector needs at least {needed}"
        )
    if settings.branches:
        detector = FusionDetector(
            tuple(bounds or ()),
            tuple(b.detector for b in settings.branches),
            rule=settings.fusion_rule,
            n_components=settings.n_components,
            random_state=settings.random_state,
        )
    else:
        params = detector_params(settings.detector, train.frame_dim)
        detector = make_detector(settings.detector, settings.n_components, settings.random_state, **params)
    pipe = scoring_pipeline(detector)
    try:
        train_scores = pipe.fit_transform(train.embeddings, detector__domains=list(domains))[:, 0]
        return pipe, decision_threshold(train_scores, settings.threshold_percentile, settings.threshold)
    except ValueError as exc:  # e.g. too few target clips for a bank, identical clips
        raise FrozenASDError(f"{where}: cannot fit {settings.detector_name}: {exc}") from exc


def fewest_training_clips(settings: RunSettings) -> int:
    """Training clips the detector(s) need at the least: 2, or k-means' ``n_components`` where it is used.

    A detector with needs of its own (Mahalanobis: 3) says so when it is fitted.
    """
    names = [b.detector for b in settings.branches] or [settings.detector]
    clustered = [n for n in names if n in DETECTORS and "n_components" in DETECTORS[n].cls._get_param_names()]
    return max(2, settings.n_components) if clustered else 2
