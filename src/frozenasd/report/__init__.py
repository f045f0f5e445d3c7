"""A self-contained HTML report of one run: DCASE table, ROC curves, score histograms, top clips, settings.

``write_report`` writes one HTML file whose plots are inline SVG and whose only outside references are
the audio players of the highest-scoring clips. Those clips are copied into ``<report stem>_audio/``
beside the report and linked with relative URLs, so the report folder can be moved or zipped whole.
Every piece of text that comes from the caller (machine names, file names, reasons, settings) is
HTML-escaped.

The package is split by concern: ``model`` (:class:`MachineReport` and its validation), ``plots`` (the
matplotlib figures as inline SVG), ``sections`` (tables and per-machine sections, copying the top clips)
and ``page`` (style sheet, escaping and the document template); this module assembles the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from frozenasd import __version__
from frozenasd.evaluation.metrics import clipped_hmean
from frozenasd.report.model import TABLE_HEADERS, TABLE_KEYS, MachineReport, _check
from frozenasd.report.page import _document, _esc
from frozenasd.report.plots import MAX_BINS
from frozenasd.report.sections import (
    _config_section,
    _dcase_table,
    _machine_section,
    _safe_component,
    _unique,
)

__all__ = ["MAX_BINS", "TABLE_HEADERS", "TABLE_KEYS", "MachineReport", "write_report"]


def write_report(
    path: Path,
    machines: list[MachineReport],
    config: dict,
    *,
    official_score: float | None = None,
    top_k: int = 5,
    title: str = "frozenasd run",
    extra_sections: Sequence[tuple[str, str, str]] = (),
) -> Path:
    """Write the HTML report to ``path`` and the top-k clips of each machine to ``<stem>_audio/``.

    ``official_score`` is shown as given; when ``None`` it is computed (harmonic mean of AUC source, AUC
    target and pAUC over all machines, each clipped at machine epsilon) if every machine has the three
    values. ``extra_sections`` are ``(anchor, title, html)`` placed before the configuration, each
    linked from the table of contents. Audio files already in ``<stem>_audio/`` are overwritten, others
    left alone. Raises
    ``ValueError`` on inconsistent input (lengths, labels, domains, non-finite scores, repeated machines).
    """
    path = Path(path)
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be a non-negative integer, got {top_k!r}")
    names = [m.machine for m in machines]
    if len(set(names)) != len(names):
        raise ValueError(f"machine names must be unique, got {names}")
    checked = [_check(m) for m in machines]
    if official_score is None and checked:
        values = [c.report.metrics.get(k) for c in checked for k in TABLE_KEYS[:3]]
        if all(v is not None for v in values):
            official_score = clipped_hmean(values)

    path.parent.mkdir(parents=True, exist_ok=True)
    audio_root = path.parent / f"{path.stem}_audio"
    url_root = audio_root.name
    used: set[str] = set()
    folders = [_unique(_safe_component(n, "machine"), used) for n in names]
    ids = [f"machine-{i + 1}" for i in range(len(machines))]

    toc = "".join(f'<a href="#{a}">{_esc(n)}</a>' for a, n in zip(ids, names, strict=True))
    toc += "".join(f'<a href="#{_esc(anchor)}">{_esc(name)}</a>' for anchor, name, _ in extra_sections)
    body = [
        f'<header class="top"><div><h1>{_esc(title)}</h1><p>generated '
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} · frozenasd {_esc(__version__)} · "
        f"{len(machines)} machine type(s)</p></div></header><main>",
        f'<nav class="toc"><a href="#results">Results</a>{toc}<a href="#config">Configuration</a></nav>',
        _dcase_table(checked, ids, official_score),
    ]
    if not machines:
        body.append('<p class="warn">No machine type was scored.</p>')
    for c, anchor, folder in zip(checked, ids, folders, strict=True):
        body.append(_machine_section(c, anchor, top_k, audio_root, url_root, folder))
    body.extend(html for _, _, html in extra_sections)
    body.append(_config_section(config))
    body.append(
        "<footer>Scores: higher means more anomalous. Plots are inline SVG; audio files are in "
        f"<code>{_esc(url_root)}/</code> beside this report.</footer></main>"
    )
    path.write_text(_document(title, body), encoding="utf-8")
    return path
