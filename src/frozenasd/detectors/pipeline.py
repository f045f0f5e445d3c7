"""Scoring pipelines (embeddings → scaler → detector → MinMaxScaler); the seed's Pipeline over waveforms."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from sklearn import get_config
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.metadata_routing import process_routing

from frozenasd.detectors import FlooredStandardScaler
from frozenasd.detectors.registry import DETECTORS, DetectorSpec, make_detector
from frozenasd.detectors.scaling import NoScaler
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor

# The detector registry lives in frozenasd.detectors.registry; its names are importable from here too.
__all__ = [
    "DETECTORS",
    "DetectorSpec",
    "ScoringPipeline",
    "get_deep_feat_cls_eat_all_model",
    "make_detector",
    "scoring_pipeline",
]


class ScoringPipeline(Pipeline):
    """``scale`` → ``detector`` → ``minmax`` whose training scores are cross-fitted, scaler included.

    ``fit`` fits the scaler and the detector on all training rows as ``Pipeline`` does, then has the
    detector replace its ``train_scores_`` (and whatever it derives from them: ``offset_``, a domain
    bank's normalisation) by scores for which the scaler, too, was fitted without the clip scored
    (``detector.crossfit``), and fits ``minmax`` on those. So a normal clip never seen in training
    gets a score distributed like the training scores, and the threshold fitted on them means what
    it says. ``fit_transform`` returns the scaled cross-fitted training scores. Transforming is
    ``Pipeline``'s; a saved and reloaded pipeline scores identically.
    """

    def fit(self, X: Any, y: Any = None, **params: Any) -> ScoringPipeline:
        self.fit_transform(X, y, **params)
        return self

    def fit_transform(self, X: Any, y: Any = None, **params: Any) -> np.ndarray:
        names = [name for name, _ in self.steps]
        if names != ["scale", "detector", "minmax"]:
            raise ValueError(f"a scoring pipeline has the steps scale, detector, minmax; got {names}")
        scale_params, detector_params = self._step_fit_params(params)
        scaler, detector, minmax = (step for _, step in self.steps)
        scales_itself = bool(getattr(detector, "_scales_itself", False))
        if isinstance(scaler, NoScaler) != scales_itself:
            wanted = "a NoScaler (it standardises its own inputs)" if scales_itself else "a scaler"
            raise ValueError(
                f"{type(detector).__name__} needs {wanted} before it, got {type(scaler).__name__} "
                "(build the pipeline with scoring_pipeline)"
            )
        X = np.asarray(X, dtype=np.float64)
        detector.fit(scaler.fit_transform(X, **scale_params), **detector_params)
        detector.crossfit(X, scaler, **detector_params)
        return minmax.fit_transform(detector.train_scores_[:, None])

    def _step_fit_params(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The fit parameters of the scaler and of the detector (``detector__domains`` or routed)."""
        if get_config().get("enable_metadata_routing", False):
            routed = process_routing(self, "fit", **params)
            return tuple(  # a Pipeline routes a transformer's fit parameters to its fit_transform
                dict(routed[name].get("fit_transform", routed[name].get("fit", {})))
                for name in ("scale", "detector")
            )
        per_step: dict[str, dict[str, Any]] = {"scale": {}, "detector": {}, "minmax": {}}
        for key, value in params.items():
            step, sep, param = key.partition("__")
            if not sep or step not in per_step:
                raise ValueError(f"fit parameter {key!r}: name a step, as in detector__domains")
            per_step[step][param] = value
        if per_step["minmax"]:
            raise ValueError(f"the minmax step takes no fit parameters, got {sorted(per_step['minmax'])}")
        return per_step["scale"], per_step["detector"]


def scoring_pipeline(detector: Any) -> ScoringPipeline:
    """Embeddings → FlooredStandardScaler → detector → MinMaxScaler (training range mapped to [0, 1]).

    Every detector sees embeddings standardised per dimension: dimensions that never vary in training
    are dropped (set to 0) and the divisor of the others is floored so that dimensions with little
    training spread are not blown up (see ``frozenasd.detectors.scaling``). The
    training scores are cross-fitted with the scaler inside the folds (see ``ScoringPipeline``). A
    detector that standardises its own inputs (``_scales_itself``: fusion of views, frame banks)
    gets a ``NoScaler`` before it instead.
    """
    scaler = NoScaler() if getattr(detector, "_scales_itself", False) else FlooredStandardScaler()
    return ScoringPipeline([("scale", scaler), ("detector", detector), ("minmax", MinMaxScaler())])


def get_deep_feat_cls_eat_all_model(
    feat_model_type: str = "EAT",
    feat_model_depth: int = 12,
    n_components: int = 2,
    model_type: str = "kmeansNN",
    *,
    model_path: str | os.PathLike = "eat_base_export.onnx",
    batch_size: int = 8,
    num_threads: int | None = None,
    target_frames: int | None = None,
    random_state: int = 0,
) -> tuple[Pipeline, dict[str, Any]]:
    """The seed's full Pipeline over waveforms, and the settings it was built with.

    Encoder → StandardScaler → detector → MinMaxScaler, as the seed built it.
    ``pipe.fit(train_waveforms)`` fits the scalers and detector on normal clips;
    ``pipe.transform(test_waveforms)[:, 0]`` gives anomaly scores (training range → [0, 1]; test clips
    may exceed 1). ``feat_model_type`` and ``feat_model_depth`` name the exported encoder and are
    returned with the other settings.
    """
    if feat_model_type != "EAT":
        raise ValueError(f"unknown feat_model_type {feat_model_type!r}; the exported encoder is 'EAT'")
    extractor = ONNXFeatureExtractor(
        model_path, batch_size=batch_size, num_threads=num_threads, target_frames=target_frames
    )
    detector = make_detector(model_type, n_components, random_state)
    # The seed's chain exactly: scikit-learn's StandardScaler (`run` and `fit` floor its divisor).
    steps = [
        ("features", extractor),
        ("scale", StandardScaler()),
        ("detector", detector),
        ("minmax", MinMaxScaler()),
    ]
    settings = {
        "feat_model_type": feat_model_type,
        "feat_model_depth": feat_model_depth,
        "n_components": n_components,
        "model_type": model_type,
        "model_path": str(model_path),
        "target_frames": target_frames,
    }
    return Pipeline(steps), settings
