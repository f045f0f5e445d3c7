"""DCASE Task 2 metrics, computed exactly as the official evaluator does, and the decision threshold.

Per machine type (and section):

- ``auc``: ROC-AUC over all test clips.
- ``pauc``: ``roc_auc_score(..., max_fpr=0.1)`` over all test clips of both domains (McClish-standardised:
  0.5 is chance, 1.0 perfect).
- ``auc_source`` / ``auc_target``: ROC-AUC over that domain's normal clips plus *all* anomalous clips of
  both domains.
- ``hmean``: harmonic mean of ``[auc_source, auc_target, pauc]``, each clipped below at machine epsilon.

The official score is the harmonic mean of the 3·M values ``{auc_source, auc_target, pauc}`` of all M
machines (equal to the harmonic mean of the per-machine ``hmean``). Precision, recall and F1 from the 0/1
decisions are computed per domain over that domain's clips only.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.stats
from sklearn.metrics import confusion_matrix, roc_auc_score

from frozenasd.data.dcase import DOMAINS

MAX_FPR = 0.1
EPS = sys.float_info.epsilon


def _as_binary(y_true: Any, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        bad = sorted({repr(v) for v in y[~np.isin(y, (0, 1))].tolist()})[:5]
        raise ValueError(f"{name} must hold only 0 (normal) and 1 (anomaly); found {', '.join(bad)}")
    return y.astype(np.int64)


def _check_inputs(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _as_binary(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"y_score must be 1-D, got shape {s.shape}")
    if len(y) != len(s):
        raise ValueError(f"y_true has {len(y)} entries but y_score has {len(s)}")
    if not np.isfinite(s).all():
        raise ValueError(f"y_score holds {int((~np.isfinite(s)).sum())} non-finite value(s) (nan or inf)")
    return y, s


def _check_two_classes(y: np.ndarray) -> None:
    n_anomaly = int(y.sum())
    n_normal = len(y) - n_anomaly
    if n_normal == 0 or n_anomaly == 0:
        raise ValueError(
            f"AUC needs both normal and anomalous clips; got {n_normal} normal and {n_anomaly} anomalous"
        )


def auc(y_true: Any, y_score: Any) -> float:
    """ROC-AUC; ``y_true`` holds 0 (normal) / 1 (anomaly), higher ``y_score`` means more anomalous."""
    y, s = _check_inputs(y_true, y_score)
    _check_two_classes(y)
    return float(roc_auc_score(y, s))


def pauc(y_true: Any, y_score: Any, max_fpr: float = MAX_FPR) -> float:
    """McClish-standardised partial AUC up to ``max_fpr`` (scikit-learn's ``roc_auc_score(max_fpr=...)``)."""
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    y, s = _check_inputs(y_true, y_score)
    _check_two_classes(y)
    return float(roc_auc_score(y, s, max_fpr=max_fpr))


def _as_domains(domains: Any, n: int) -> np.ndarray:
    d = np.array([None if v is None else str(v) for v in domains], dtype=object)
    if len(d) != n:
        raise ValueError(f"domains has {len(d)} entries but y_true has {n}")
    bad = sorted({v for v in d.tolist() if v is not None and v not in DOMAINS})
    if bad:
        raise ValueError(f"domains must be 'source', 'target' or None; found {bad[:5]}")
    return d


def domain_aucs(y_true: Any, y_score: Any, domains: Sequence[str | None]) -> dict[str, float | None]:
    """``{'auc_source', 'auc_target'}``: AUC over one domain's normals plus all anomalies of both domains.

    A value is ``None`` when that domain has no normal clip or when there is no anomalous clip.
    """
    y, s = _check_inputs(y_true, y_score)
    d = _as_domains(domains, len(y))
    out: dict[str, float | None] = {}
    for dom in DOMAINS:
        keep = (d == dom) | (y == 1)
        yk = y[keep]
        out[f"auc_{dom}"] = float(roc_auc_score(yk, s[keep])) if 0 < yk.sum() < len(yk) else None
    return out


def clipped_hmean(values: Sequence[float]) -> float:
    """Harmonic mean with each value first clipped at machine epsilon, as the DCASE evaluator does."""
    return float(scipy.stats.hmean(np.maximum(np.asarray(values, dtype=np.float64), EPS)))


def machine_metrics(y_true: Any, y_score: Any, domains: Sequence[str | None] | None = None) -> dict[str, Any]:
    """All metrics of one machine type (one section).

    Keys: ``auc``, ``pauc``, ``auc_source``, ``auc_target``, ``pauc_source``, ``pauc_target`` (pAUC within
    one domain only, printed but not ranked), ``hmean``, ``n_normal``, ``n_anomaly``, ``n_source``,
    ``n_target``. Domain values are ``None`` when ``domains`` is ``None`` or a domain cannot be scored.
    ``hmean`` is the clipped harmonic mean of ``[auc_source, auc_target, pauc]``; of the domain AUCs that
    exist when one is missing, and of ``[auc, pauc]`` when no domain AUC exists.
    Raises ``ValueError`` when the clips do not hold both classes.
    """
    y, s = _check_inputs(y_true, y_score)
    _check_two_classes(y)
    result: dict[str, Any] = {
        "auc": float(roc_auc_score(y, s)),
        "pauc": float(roc_auc_score(y, s, max_fpr=MAX_FPR)),
        "auc_source": None,
        "auc_target": None,
        "pauc_source": None,
        "pauc_target": None,
    }
    if domains is not None:
        d = _as_domains(domains, len(y))
        result.update(domain_aucs(y, s, d))
        for dom in DOMAINS:
            yk = y[d == dom]
            if 0 < yk.sum() < len(yk):
                result[f"pauc_{dom}"] = float(roc_auc_score(yk, s[d == dom], max_fpr=MAX_FPR))
        result["n_source"] = int((d == "source").sum())
        result["n_target"] = int((d == "target").sum())
    else:
        result["n_source"] = None
        result["n_target"] = None
    dom_aucs = [result[k] for k in ("auc_source", "auc_target") if result[k] is not None]
    result["hmean"] = clipped_hmean((dom_aucs or [result["auc"]]) + [result["pauc"]])
    result["n_normal"] = int(len(y) - y.sum())
    result["n_anomaly"] = int(y.sum())
    return result


def decision_metrics(y_true: Any, decisions: Any) -> dict[str, float]:
    """Precision, recall and F1 of 0/1 ``decisions``, denominators clipped at machine epsilon."""
    y = _as_binary(y_true)
    p = _as_binary(decisions, "decisions")
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} entries but decisions has {len(p)}")
    # labels=[0, 1] keeps the 2x2 shape when a subset holds a single class.
    tn, fp, fn, tp = confusion_matrix(y, p, labels=[0, 1]).ravel()
    precision = tp / np.maximum(tp + fp, EPS)
    recall = tp / np.maximum(tp + fn, EPS)
    f1 = 2.0 * precision * recall / np.maximum(precision + recall, EPS)
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def domain_decision_metrics(y_true: Any, decisions: Any, domains: Sequence[str | None]) -> dict[str, float]:
    """``precision_<d>``, ``recall_<d>``, ``f1_<d>`` for d in source/target, each over that domain's clips.

    A domain without clips is left out of the result.
    """
    y = _as_binary(y_true)
    p = _as_binary(decisions, "decisions")
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} entries but decisions has {len(p)}")
    d = _as_domains(domains, len(y))
    out: dict[str, float] = {}
    for dom in DOMAINS:
        keep = d == dom
        if keep.any():
            for key, value in decision_metrics(y[keep], p[keep]).items():
                out[f"{key}_{dom}"] = value
    return out


def official_score(per_machine: Mapping[str, Mapping[str, Any]]) -> float:
    """Harmonic mean of the 3·M values ``{auc_source, auc_target, pauc}``, each clipped at machine epsilon."""
    if not per_machine:
        raise ValueError("official score needs at least one machine")
    values: list[float] = []
    for machine, m in per_machine.items():
        for key in ("auc_source", "auc_target", "pauc"):
            v = m.get(key)
            if v is None:
                raise ValueError(f"machine {machine!r} has no {key}; the official score needs all three")
            values.append(float(v))
    return clipped_hmean(values)
