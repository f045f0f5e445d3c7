"""What the report is given for one machine type, and its validation into plot- and table-ready form."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from frozenasd.data.dcase import DOMAINS

TABLE_KEYS = ("auc_source", "auc_target", "pauc", "hmean")
TABLE_HEADERS = ("AUC (source) %", "AUC (target) %", "pAUC %", "hmean %")

_LABEL_NAMES = {0: "normal", 1: "anomaly", None: "unknown"}


@dataclass
class FrameTrace:
    """The per-frame scores of one clip, on the clip scores' scale, with each frame's start time."""

    path: str
    scores: np.ndarray  # one per frame; NaN for a padding frame
    starts: np.ndarray | None  # seconds from the clip's start; None when the frame hop is unknown
    label: int | None = None  # 1 anomaly, 0 normal, None unknown


@dataclass
class MachineReport:
    """The test scores of one machine type and what is known about each clip: a run's result for it.

    ``metrics`` holds what ``compute_and_save_metrics`` computed, nothing else; the threshold and the
    clips left out are fields of their own.
    """

    machine: str
    paths: list[str]  # test clip paths (absolute or relative to the working directory)
    scores: np.ndarray  # anomaly scores, higher = more anomalous
    labels: list[int | None]  # 1 anomaly, 0 normal, None unknown (evaluation sets)
    domains: list[str | None]  # 'source' / 'target' / None
    metrics: dict  # auc, pauc, auc_source, auc_target, hmean (values may be None)
    threshold: float | None = None  # decision threshold on the same score scale
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    frames: list[FrameTrace] = field(default_factory=list)  # per-frame scores of the top clips
    unscored: list[str] = field(default_factory=list)  # test clips that could not be scored
    not_in_submission: list[str] = field(default_factory=list)  # scored, but left out of the submission files


@dataclass
class _Checked:
    """A validated machine: numpy scores, labels as 0/1/None and domains as source/target/unknown."""

    report: MachineReport
    scores: np.ndarray
    labels: list[int | None]
    domains: list[str]


def _check(m: MachineReport) -> _Checked:
    name = f"machine {m.machine!r}"
    scores = np.asarray(m.scores, dtype=np.float64).ravel()
    n = len(m.paths)
    for what, seq in (("scores", scores), ("labels", m.labels), ("domains", m.domains)):
        if len(seq) != n:
            raise ValueError(f"{name}: {n} paths but {len(seq)} {what}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name}: {int((~np.isfinite(scores)).sum())} score(s) are nan or inf")
    labels: list[int | None] = []
    for path, lab in zip(m.paths, m.labels, strict=True):
        if lab is not None and lab not in (0, 1):
            raise ValueError(f"{name}: label of {path} must be 0, 1 or None, got {lab!r}")
        labels.append(None if lab is None else int(lab))
    domains: list[str] = []
    for path, dom in zip(m.paths, m.domains, strict=True):
        if dom is not None and dom not in DOMAINS:
            allowed = ", ".join(repr(d) for d in DOMAINS)
            raise ValueError(f"{name}: domain of {path} must be {allowed} or None, got {dom!r}")
        domains.append(dom or "unknown")
    if m.threshold is not None and not math.isfinite(float(m.threshold)):
        raise ValueError(f"{name}: threshold must be finite, got {m.threshold!r}")
    for trace in m.frames:
        values = np.asarray(trace.scores, dtype=np.float64)
        if values.ndim != 1 or np.isinf(values).any():
            raise ValueError(
                f"{name}: frame scores of {trace.path} must be one finite (or NaN) value a frame"
            )
        if trace.starts is not None and np.shape(trace.starts) != values.shape:
            raise ValueError(
                f"{name}: {trace.path} has {values.size} frame scores but {np.size(trace.starts)} starts"
            )
    return _Checked(m, scores, labels, domains)


def _no_labels(c: _Checked) -> bool:
    return all(lab is None for lab in c.labels)
