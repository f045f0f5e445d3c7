"""Anomaly detectors on embeddings, following scikit-learn's estimator contract.

``transform`` returns the anomaly score as a column (higher = more anomalous) so a detector can sit
inside a Pipeline before a scaler; ``score_samples`` is its negative (lower = more abnormal) and
``decision_function`` is ``score_samples - offset_`` (negative = outlier), as scikit-learn defines them.
``train_scores_`` holds the training clips' leave-one-out anomaly scores (for the decision threshold);
``crossfit`` replaces them by scores for which the scaler before the detector was fitted without the
clip too, as a scoring pipeline does (``frozenasd.detectors.crossfit``).
"""

from __future__ import annotations

from frozenasd.detectors.domain_banks import DomainBanks
from frozenasd.detectors.frame_bank import FrameBank
from frozenasd.detectors.fusion import FusionDetector
from frozenasd.detectors.kmeans import KMeansNN
from frozenasd.detectors.knn import KNNDetector
from frozenasd.detectors.mahalanobis import MahalanobisDetector
from frozenasd.detectors.scaling import FlooredStandardScaler

__all__ = [
    "DomainBanks",
    "FlooredStandardScaler",
    "FrameBank",
    "FusionDetector",
    "KMeansNN",
    "KNNDetector",
    "MahalanobisDetector",
]
