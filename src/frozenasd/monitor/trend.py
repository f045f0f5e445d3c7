"""The history's trend per machine: scores over time with the threshold, a rolling median and the
anomalous recordings marked; as a PNG, a self-contained HTML page (the run report's style, the PNG
inline) or a short text summary.

The rolling median is trailing: at each recording, the median of it and the ``window - 1`` scored
before it (fewer at the start), so it says what a monitor knew at that time. The summary's trend
compares the median of the last ``window`` scores with that of the ``window`` before them.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from frozenasd.errors import FrozenASDError
from frozenasd.monitor.history import History, HistoryRow, parse_iso
from frozenasd.report.page import _document, _esc, _num

__all__ = ["Series", "load_series", "rolling_median", "summary_text", "trend_png", "write_trend"]

DEFAULT_WINDOW = 20
STEADY = 0.05  # a change of the median under this share of the threshold is "steady"
RECENT_ANOMALIES = 20  # the page lists this many most recent anomalous recordings per machine
SYMLOG_ABOVE = 20  # scores this many times the threshold turn the plot's upper part logarithmic


@dataclass
class Series:
    """One machine's scored recordings in time order, and its skipped ones."""

    machine: str
    times: list[datetime]
    scores: np.ndarray
    thresholds: np.ndarray
    anomalous: np.ndarray
    files: list[str]
    skipped: list[HistoryRow]


def load_series(history: History, machine: str | None = None) -> dict[str, Series]:
    """Per machine (only ``machine`` when given) its series; FrozenASDError when ``machine`` has no row."""
    names = [machine] if machine is not None else history.machines()
    found: dict[str, Series] = {}
    for name in names:
        rows = history.rows(machine=name)
        if not rows and machine is not None:
            known = ", ".join(history.machines()) or "none"
            raise FrozenASDError(f"{history.path}: no recording of machine {name!r} (machines: {known})")
        scored = [r for r in rows if not r.skipped]
        found[name] = Series(
            machine=name,
            times=[parse_iso(r.recorded_at) for r in scored],
            scores=np.array([r.score for r in scored], dtype=float),
            thresholds=np.array(
                [np.nan if r.threshold is None else r.threshold for r in scored], dtype=float
            ),
            anomalous=np.array([bool(r.anomalous) for r in scored], dtype=bool),
            files=[r.file for r in scored],
            skipped=[r for r in rows if r.skipped],
        )
    return found


def rolling_median(scores: np.ndarray, window: int) -> np.ndarray:
    """The trailing median of ``window`` scores at each position (fewer at the start)."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    return np.array([np.median(scores[max(0, i + 1 - window) : i + 1]) for i in range(len(scores))])


def _trend(s: Series, window: int) -> str:
    """The last window's median against the window before it: steady when they differ by less than
    :data:`STEADY` times the threshold."""
    if len(s.scores) < 2 * window:
        return f"trend: needs {2 * window} scored recordings (window {window})"
    last, before = np.median(s.scores[-window:]), np.median(s.scores[-2 * window : -window])
    scale = abs(s.thresholds[-1]) if np.isfinite(s.thresholds[-1]) and s.thresholds[-1] != 0 else 1.0
    change = (last - before) / scale
    word = "steady" if abs(change) < STEADY else ("rising" if change > 0 else "falling")
    return (
        f"trend: {word}; median of the last {window} scores {last:.6g}, of the {window} before {before:.6g}"
    )


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def summary_text(series: dict[str, Series], window: int = DEFAULT_WINDOW) -> str:
    """A few lines per machine: counts, period, last score and trend."""
    if not series:
        return "no recording in the history\n"
    lines = []
    for s in series.values():
        n, k = len(s.scores), int(s.anomalous.sum())
        head = f"{s.machine}: {n} scored, {k} anomalous"
        head += f" ({k / n:.1%})" if n else ""
        head += f", {len(s.skipped)} skipped"
        lines.append(head)
        if n:
            lines.append(f"  from {_when(s.times[0])} to {_when(s.times[-1])}")
            decision = "ANOMALY" if s.anomalous[-1] else "normal"
            lines.append(
                f"  last: {s.scores[-1]:.6f} ({decision}; threshold {s.thresholds[-1]:.6f}) "
                f"{os.path.basename(s.files[-1])}"
            )
            lines.append(f"  {_trend(s, window)}")
    return "\n".join(lines) + "\n"


def _draw(ax: Any, s: Series, window: int) -> None:
    if not len(s.scores):
        ax.text(0.5, 0.5, "no scored recording", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(s.machine, fontsize=11)
        return
    # naive UTC for numpy (it has no time zones); the axis says UTC
    times = np.array(
        [t.astimezone(timezone.utc).replace(tzinfo=None) for t in s.times], dtype="datetime64[ms]"
    )
    normal = ~s.anomalous
    ax.plot(times[normal], s.scores[normal], "o", ms=3.5, color="#4c72b0", alpha=0.7, label="normal")
    if s.anomalous.any():
        ax.plot(
            times[s.anomalous], s.scores[s.anomalous], "X", ms=7, color="#d62728",
            label=f"anomalous ({int(s.anomalous.sum())})",
        )  # fmt: skip
    ax.plot(
        times, rolling_median(s.scores, window), color="#1d3557", lw=1.8, label=f"rolling median ({window})"
    )
    ax.step(times, s.thresholds, where="post", color="#2ca02c", lw=1.5, ls="--", label="threshold")
    ax.set_title(f"{s.machine}: {len(s.scores)} recordings", fontsize=11)
    scale = np.nanmax(np.abs(s.thresholds)) if np.isfinite(s.thresholds).any() else 0.0
    if scale > 0 and np.abs(s.scores).max() > SYMLOG_ABOVE * scale:
        # far outliers would flatten the scores near the threshold: linear up to it, logarithmic beyond
        ax.set_yscale("symlog", linthresh=scale)
        ax.set_ylabel("score (log above threshold)")
    else:
        ax.set_ylabel("anomaly score")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)


def _figure(series: list[Series], window: int) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.2 * max(1, len(series))), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(series)), 1, squeeze=False)[:, 0]
    for ax, s in zip(axes, series, strict=False):
        _draw(ax, s, window)
        ax.set_xlabel("time recorded (UTC)")
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    return fig


def trend_png(series: list[Series], window: int = DEFAULT_WINDOW) -> bytes:
    """The machines' plots, one below the other, as PNG bytes."""
    buf = io.BytesIO()
    _figure(series, window).savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _stats(s: Series) -> str:
    items = [("scored", str(len(s.scores))), ("anomalous", str(int(s.anomalous.sum())))]
    items.append(("skipped", str(len(s.skipped))))
    if len(s.scores):
        items += [("last score", _num(float(s.scores[-1]))), ("threshold", _num(float(s.thresholds[-1])))]
    return '<dl class="stats">' + "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in items) + "</dl>"


def _anomalies(s: Series) -> str:
    idx = np.flatnonzero(s.anomalous)[::-1][:RECENT_ANOMALIES]
    if not len(idx):
        return ""
    rows = "".join(
        f'<tr><td class="nowrap">{_esc(_when(s.times[i]))}</td><td class="clip">{_esc(s.files[i])}</td>'
        f'<td class="num">{_num(float(s.scores[i]))}</td></tr>'
        for i in idx
    )
    return (
        f"<h3>Most recent anomalous recordings ({len(idx)} of {int(s.anomalous.sum())})</h3>"
        '<table><thead><tr><th>recorded</th><th>file</th><th class="num">score</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _skipped(s: Series) -> str:
    if not s.skipped:
        return ""
    rows = "".join(
        f'<tr><td class="clip">{_esc(r.file)}</td><td>{_esc(r.reason or "")}</td></tr>' for r in s.skipped
    )
    return (
        f"<h3>Skipped recordings ({len(s.skipped)})</h3>"
        f"<table><thead><tr><th>file</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def history_section(series: dict[str, Series], window: int = DEFAULT_WINDOW) -> str:
    """A ``<section>`` per machine: counts, the trend plot (PNG inline), recent anomalies, skipped files."""
    parts = []
    for i, s in enumerate(series.values(), start=1):
        png = base64.b64encode(trend_png([s], window)).decode("ascii")
        parts.append(
            f'<section class="machine" id="history-{i}"><h2>{_esc(s.machine)}</h2>{_stats(s)}'
            f'<figure><img src="data:image/png;base64,{png}" alt="{_esc(s.machine)} scores over time" '
            f'style="width:100%;height:auto"><figcaption>{_esc(_trend(s, window))}. Scores over the time '
            f"recorded; the dashed line is the decision threshold, the solid line the median of the last "
            f"{window} scores.</figcaption></figure>{_anomalies(s)}{_skipped(s)}</section>"
        )
    return "".join(parts)


def report_section(history: str | os.PathLike, window: int = DEFAULT_WINDOW) -> str:
    """The score history of the file ``history`` as a section of the run report (``run --history``)."""
    with History(history, create=False) as h:
        series = load_series(h)
    body = history_section(series, window) or '<p class="warn">No recording in the history.</p>'
    return (
        f'<section id="history"><h2>Score history</h2><p>{_esc(Path(history).name)}: '
        f"{len(series)} machine(s), each recording's score over the time it was recorded.</p>{body}</section>"
    )


def write_trend(
    history: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    machine: str | None = None,
    window: int = DEFAULT_WINDOW,
) -> str:
    """Write the trend to ``out`` (``.png`` or ``.html``) when given; returns the text summary."""
    if window < 1:
        raise FrozenASDError(f"--window must be at least 1, got {window}")
    with History(history, create=False) as h:
        series = load_series(h, machine)
    text = summary_text(series, window)
    if out is None:
        return text
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise FrozenASDError(f"{out}: write the trend as .png or .html")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        out.write_bytes(trend_png(list(series.values()), window))
        return text
    title = f"frozenasd history: {', '.join(series) or 'empty'}"
    toc = "".join(f'<a href="#history-{i}">{_esc(m)}</a>' for i, m in enumerate(series, start=1))
    body = [
        f'<header class="top"><div><h1>{_esc(title)}</h1><p>{_esc(Path(history).name)} · '
        f"{len(series)} machine(s) · window {window}</p></div></header><main>",
        f'<nav class="toc">{toc}</nav>',
        history_section(series, window) or '<p class="warn">No recording in the history.</p>',
        "<footer>Scores: higher means more anomalous. The plots are PNG images inside this page.</footer>"
        "</main>",
    ]
    out.write_text(_document(title, body), encoding="utf-8")
    return text
