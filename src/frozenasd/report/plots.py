"""The report's figures, drawn with matplotlib and returned as inline SVG: ROC curves, score histograms and,
for frame detectors, the score over time of the highest-scoring clips."""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np

from frozenasd.evaluation.metrics import MAX_FPR
from frozenasd.report.model import _LABEL_NAMES, FrameTrace, _Checked
from frozenasd.report.page import _esc

MAX_BINS = 50

# One colour per (label, domain) group of the histogram; normal in blues, anomaly in reds.
_GROUP_STYLE = {
    ("normal", "source"): "#1f77b4",
    ("normal", "target"): "#17becf",
    ("normal", "unknown"): "#4c72b0",
    ("anomaly", "source"): "#d62728",
    ("anomaly", "target"): "#ff7f0e",
    ("anomaly", "unknown"): "#c44e52",
    ("unknown", "source"): "#7f7f7f",
    ("unknown", "target"): "#bcbd22",
    ("unknown", "unknown"): "#555555",
}


def _svg(fig: Any, label: str) -> str:
    """The figure as an inline ``<svg>`` element with real text (not glyph outlines).

    Element ids are hashes of their content with a fixed salt (matplotlib's default salt is random), so
    the same run writes the same report, and equal ids in one page stand for equal definitions.
    """
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "frozenasd"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, count=1, flags=re.DOTALL)
    return text.replace("<svg ", f'<svg role="img" aria-label="{_esc(label)}" ', 1)


def _new_figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.4, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _roc_svg(c: _Checked) -> str:
    """ROC over all labelled clips and over each domain's normals plus all anomalies (the DCASE AUCs)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    known = np.array([lab is not None for lab in c.labels])
    y = np.array([lab if lab is not None else -1 for lab in c.labels])
    dom = np.array(c.domains)
    fig, ax = _new_figure()
    curves = [("all clips", known, "#1d3557", "-")]
    for d, colour in (("source", "#1f77b4"), ("target", "#ff7f0e")):
        keep = known & ((dom == d) | (y == 1))
        if (y[keep] == 0).any() and (y[keep] == 1).any():
            curves.append((f"{d} normals + all anomalies", keep, colour, "--"))
    for name, keep, colour, style in curves:
        fpr, tpr, _ = roc_curve(y[keep], c.scores[keep])
        auc_value = roc_auc_score(y[keep], c.scores[keep])
        ax.plot(
            fpr, tpr, color=colour, lw=2 if style == "-" else 1.5, ls=style, label=f"{name} ({auc_value:.3f})"
        )
    ax.plot([0, 1], [0, 1], color="#999999", lw=1, ls=":", label="chance")
    ax.axvline(MAX_FPR, color="#d62728", lw=1, ls=":", label=f"FPR = {MAX_FPR:g} (pAUC limit)")
    threshold = c.report.threshold
    if threshold is not None:
        over = c.scores > float(threshold)
        fpr_t = over[known & (y == 0)].mean()
        tpr_t = over[known & (y == 1)].mean()
        ax.plot([fpr_t], [tpr_t], "o", color="#2ca02c", ms=7, label="decision threshold")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve (AUC in brackets)", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig, "ROC curve")


def _group_name(label: str, domain: str) -> str:
    parts = [label if label != "unknown" else "unlabelled"] + ([domain] if domain != "unknown" else [])
    return " · ".join(parts)


def _histogram_svg(c: _Checked) -> str:
    """Score histograms per (label, domain) group on shared bins, with the decision threshold."""
    fig, ax = _new_figure()
    if np.ptp(c.scores) > 0:
        edges = np.histogram_bin_edges(c.scores, bins="auto")
        if len(edges) - 1 > MAX_BINS:
            edges = np.linspace(c.scores.min(), c.scores.max(), MAX_BINS + 1)
    else:
        edges = np.array([c.scores[0] - 0.5, c.scores[0] + 0.5])
    labels = np.array([_LABEL_NAMES[lab] for lab in c.labels])
    dom = np.array(c.domains)
    for (label, d), colour in _GROUP_STYLE.items():
        values = c.scores[(labels == label) & (dom == d)]
        if values.size == 0:
            continue
        ax.hist(values, bins=edges, histtype="stepfilled", color=colour, alpha=0.22)
        ax.hist(
            values,
            bins=edges,
            histtype="step",
            color=colour,
            lw=1.8,
            label=f"{_group_name(label, d)} ({values.size})",
        )
    if c.report.threshold is not None:
        ax.axvline(float(c.report.threshold), color="#2ca02c", lw=1.5, ls="--", label="decision threshold")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("clips")
    ax.set_title("Score histogram (label · domain)", fontsize=11)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return _svg(fig, "score histogram")


def _frames_svg(traces: list[FrameTrace], threshold: float | None) -> str:
    """Per-frame scores over time of a few clips (one line each), with the clip-level threshold."""
    from pathlib import PurePath

    fig, ax = _new_figure()
    timed = all(t.starts is not None for t in traces)
    for rank, trace in enumerate(traces, start=1):
        x = trace.starts if timed else np.arange(len(trace.scores))
        label = _LABEL_NAMES[trace.label]
        name = PurePath(trace.path).name
        short = name if len(name) <= 44 else "…" + name[-43:]  # the end tells clips apart
        ax.plot(x, trace.scores, lw=1.2, label=f"{rank}. {short} ({label})")
    if threshold is not None:
        ax.axhline(float(threshold), color="#2ca02c", lw=1.5, ls="--", label="decision threshold")
    ax.set_xlabel("time in the clip (s)" if timed else "frame")
    ax.set_ylabel("frame score")
    ax.set_title("Frame scores of the highest-scoring clips", fontsize=11)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=1, fontsize=7.5, frameon=False)
    return _svg(fig, "frame scores over time")
