"""The detectors by name: what ``--detector NAME`` and a fusion branch's detector mean.

A name is a detector class with some parameters fixed (``knn`` and ``knn-euclidean`` are one class);
:func:`make_detector` builds one. Adding a detector is one class in this package and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from frozenasd.detectors.domain_banks import DomainBanks
from frozenasd.detectors.frame_bank import FrameBank
from frozenasd.detectors.kmeans import KMeansNN
from frozenasd.detectors.knn import KNNDetector
from frozenasd.detectors.mahalanobis import MahalanobisDetector


@dataclass(frozen=True)
class DetectorSpec:
    """A named detector: its class, the parameters the name fixes, and a one-line description."""

    cls: type
    preset: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


DETECTORS: dict[str, DetectorSpec] = {
    "kmeansNN": DetectorSpec(
        KMeansNN, {}, "the seed: Euclidean distance to the nearest of n_components k-means centroids"
    ),
    "knn": DetectorSpec(KNNDetector, {"metric": "cosine"}, "cosine distance to the nearest training clip"),
    "knn-euclidean": DetectorSpec(
        KNNDetector, {"metric": "euclidean"}, "Euclidean distance to the nearest training clip"
    ),
    "domain-banks": DetectorSpec(
        DomainBanks,
        {},
        "cosine 1-NN to a source and a target bank, each z-scored by its leave-one-out distances; "
        "score = min over banks (fit with detector__domains)",
    ),
    "domain-banks-smote": DetectorSpec(
        DomainBanks,
        {"oversample": "smote"},
        "domain-banks with the target bank enlarged by SMOTE interpolation among target clips",
    ),
    "domain-banks-mixup": DetectorSpec(
        DomainBanks,
        {"oversample": "mixup"},
        "domain-banks with the target bank enlarged by mixup of target clips with their nearest sources",
    ),
    "mahalanobis": DetectorSpec(
        MahalanobisDetector, {}, "Mahalanobis distance under a Ledoit-Wolf shrunk covariance"
    ),
    "framebank": DetectorSpec(
        FrameBank,
        {"aggregate": "max"},
        "frame-level memory bank (greedy coreset of standardised training frames; implies --pooling "
        "frames): a clip's highest frame distance to the bank, with per-frame scores",
    ),
    "framebank-topk": DetectorSpec(
        FrameBank,
        {"aggregate": "topk"},
        "framebank scoring a clip by the mean of its top_k (10) highest frame distances",
    ),
}


def make_detector(
    model_type: str = "kmeansNN", n_components: int = 2, random_state: int = 0, **kw: Any
) -> Any:
    """A detector by name (see ``DETECTORS``); the seed's ``kmeansNN`` is the default.

    ``n_components`` and ``random_state`` go to the detectors that take them (``kmeansNN``;
    ``random_state`` also seeds the oversampling of ``domain-banks-*``) and are ignored by the
    others. Other keywords set detector parameters and override the name's preset; an unknown
    one is an error.
    """
    if model_type not in DETECTORS:
        raise ValueError(f"unknown detector {model_type!r}; choose one of {sorted(DETECTORS)}")
    spec = DETECTORS[model_type]
    accepted = set(spec.cls._get_param_names())
    unknown = sorted(set(kw) - accepted)
    if unknown:
        raise ValueError(f"detector {model_type!r} has no parameter {unknown}; it takes {sorted(accepted)}")
    params = {
        k: v for k, v in (("n_components", n_components), ("random_state", random_state)) if k in accepted
    }
    return spec.cls(**{**params, **spec.preset, **kw})
