"""The HTML sections of the report: DCASE table, one section per machine (with its top clips) and settings.

The top-clips table copies each listed clip into the report's audio folder and links it by relative URL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from frozenasd.data.dcase import DOMAINS
from frozenasd.evaluation.metrics import MAX_FPR, clipped_hmean
from frozenasd.outputs.names import FRAME_SCORES_CSV
from frozenasd.report.model import (
    _LABEL_NAMES,
    TABLE_HEADERS,
    TABLE_KEYS,
    _Checked,
    _no_labels,
)
from frozenasd.report.page import _esc, _num, _pct
from frozenasd.report.plots import _frames_svg, _histogram_svg, _roc_svg


def _safe_component(name: str, fallback: str) -> str:
    """A file-system name every OS accepts (letters, digits, ``.``, ``_``, ``-``), never hidden or ``..``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")
    return safe[:120] or fallback


def _unique(name: str, used: set[str]) -> str:
    stem, suffix = os.path.splitext(name)
    candidate, i = name, 2
    while candidate.lower() in used:
        candidate, i = f"{stem}-{i}{suffix}", i + 1
    used.add(candidate.lower())
    return candidate


def _dcase_table(checked: list[_Checked], ids: list[str], official: float | None) -> str:
    rows = []
    for c, anchor in zip(checked, ids, strict=True):
        m = c.report.metrics
        note = ' <span class="muted">(labels unknown)</span>' if _no_labels(c) else ""
        cells = "".join(f'<td class="num">{_pct(m.get(k))}</td>' for k in TABLE_KEYS)
        rows.append(f'<tr><td><a href="#{anchor}">{_esc(c.report.machine)}</a>{note}</td>{cells}</tr>')
    columns = [[c.report.metrics.get(k) for c in checked] for k in TABLE_KEYS[:3]]
    if checked and all(v is not None for col in columns for v in col):
        cells = "".join(f'<td class="num">{_pct(clipped_hmean(col))}</td>' for col in columns)
        cells += f'<td class="num">{_pct(official)}</td>'
        rows.append(f'<tr class="total"><td>harmonic mean</td>{cells}</tr>')
    heads = "".join(f'<th class="num">{h}</th>' for h in TABLE_HEADERS)
    score = _pct(official) + (" %" if official is not None else "")
    why = ""
    if official is None and checked:
        why = ' <span class="muted">(needs AUC source, AUC target and pAUC of every machine type)</span>'
    return (
        f'<section id="results"><h2>DCASE results</h2>'
        f'<table class="dcase"><thead><tr><th>machine</th>{heads}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        f'<p class="official">Official score: <strong id="official-score">{score}</strong>{why}</p>'
        '<p class="note">Official score: harmonic mean of AUC (source), AUC (target) and pAUC over all '
        "machine types. AUC (domain): that domain's normal clips and all anomalous clips. "
        f"pAUC: FPR &le; {MAX_FPR:g}, both domains pooled. hmean: harmonic mean of the three values of one "
        "machine.</p></section>"
    )


def _stats(c: _Checked) -> str:
    m = c.report.metrics
    items = [("AUC (all clips)", _pct(m.get("auc")))]
    items += [(h.removesuffix(" %"), _pct(m.get(k))) for k, h in zip(TABLE_KEYS, TABLE_HEADERS, strict=True)]
    if c.report.threshold is not None:
        items.append(("decision threshold", _num(float(c.report.threshold))))
    return '<dl class="stats">' + "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in items) + "</dl>"


def _counts(c: _Checked) -> str:
    parts = [f"{len(c.labels)} test clips"]
    for label in ("normal", "anomaly", "unknown"):
        k = sum(_LABEL_NAMES[lab] == label for lab in c.labels)
        if k:
            parts.append(f"{k} {label if label != 'unknown' else 'without label'}")
    for d in DOMAINS:
        k = c.domains.count(d)
        if k:
            parts.append(f"{k} {d}")
    if c.report.skipped:
        parts.append(f"{len(c.report.skipped)} skipped")
    return '<p class="muted counts">' + " · ".join(parts) + "</p>"


# What every current browser plays in an <audio> element; other files get a WAV excerpt.
PLAYABLE = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3"})
MAX_COPY_BYTES = 20 * 2**20  # a larger recording is not copied whole into the report
EXCERPT_SECONDS = 30.0


def _listenable(src: Path, folder: Path, name: str, used: set[str]) -> tuple[str, str]:
    """Put ``src`` where the report links it: a copy, or the first seconds as 16-bit WAV.

    Returns the file name in ``folder`` and a note for the reader ("" for a copy). Raises OSError or
    RuntimeError (soundfile) when the source cannot be read.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if src.suffix.lower() in PLAYABLE and src.stat().st_size <= MAX_COPY_BYTES:
        name = _unique(name, used)
        shutil.copyfile(src, folder / name)
        return name, ""
    import soundfile as sf

    from frozenasd.data.audio import library_path

    with sf.SoundFile(library_path(src)) as f:
        rate = f.samplerate
        data = f.read(int(EXCERPT_SECONDS * rate), dtype="float32", always_2d=True)
        whole = f.frames <= data.shape[0]
    if data.shape[1] > 2:  # browsers play mono and stereo everywhere
        data = data.mean(axis=1, keepdims=True)
    name = _unique(os.path.splitext(name)[0] + ".wav", used)
    sf.write(folder / name, data, rate, subtype="PCM_16")
    return name, "converted to WAV" if whole else f"first {EXCERPT_SECONDS:g} s"


def _top_clips(c: _Checked, top_k: int, audio_root: Path, url_root: str, folder: str) -> str:
    order = sorted(range(len(c.scores)), key=lambda i: (-c.scores[i], c.report.paths[i]))[:top_k]
    if not order:
        return ""
    used: set[str] = set()
    rows = []
    for rank, i in enumerate(order, start=1):
        src = Path(c.report.paths[i])
        safe = _safe_component(src.name, f"clip_{rank}")
        try:
            name, note = _listenable(src, audio_root / folder, safe, used)
            url = quote(f"{url_root}/{folder}/{name}")
            player = f'<audio controls preload="metadata" src="{_esc(url)}"></audio>'
            if note:
                player += f' <span class="muted">{_esc(note)}</span>'
        except (OSError, RuntimeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            player = f'<span class="muted">audio not available: {_esc(reason)}</span>'
        label = _LABEL_NAMES[c.labels[i]]
        over = ""
        if c.report.threshold is not None and c.scores[i] > float(c.report.threshold):
            over = '<span class="badge over">above threshold</span>'
        rows.append(
            f'<tr><td class="num">{rank}</td><td class="clip" title="{_esc(src)}">{_esc(src.name)}</td>'
            f'<td><span class="badge {label}">{label}</span></td><td class="nowrap">{c.domains[i]}</td>'
            f'<td class="num">{_num(float(c.scores[i]))}{over}</td><td>{player}</td></tr>'
        )
    return (
        f"<h3>Highest-scoring clips (top {len(order)})</h3>"
        '<table class="top"><thead><tr><th class="num">#</th><th>clip</th><th>label</th><th>domain</th>'
        f'<th class="num">score</th><th>listen</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _skipped(c: _Checked) -> str:
    if not c.report.skipped:
        return ""
    rows = "".join(
        f'<tr><td class="clip">{_esc(p)}</td><td>{_esc(reason)}</td></tr>' for p, reason in c.report.skipped
    )
    return (
        f"<h3>Skipped clips ({len(c.report.skipped)})</h3>"
        '<table class="skipped"><thead><tr><th>clip</th><th>reason</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _machine_section(
    c: _Checked, anchor: str, top_k: int, audio_root: Path, url_root: str, folder: str
) -> str:
    parts = [f'<section class="machine" id="{anchor}"><h2>{_esc(c.report.machine)}</h2>', _counts(c)]
    if not c.labels:
        parts.append('<p class="warn">No test clip was scored for this machine.</p>')
    else:
        plots = []
        labelled = [lab for lab in c.labels if lab is not None]
        if _no_labels(c):
            parts.append(
                '<p class="warn">Labels are unknown for these clips (e.g. an evaluation set): '
                "no ROC curve and no metrics; scores and their histogram only.</p>"
            )
        elif 0 in labelled and 1 in labelled:
            parts.append(_stats(c))
            plots.append(
                f"<figure>{_roc_svg(c)}<figcaption>ROC per domain; FPR &le; {MAX_FPR:g} is the "
                "range of the pAUC.</figcaption></figure>"
            )
            if None in c.labels:
                parts.append(
                    f'<p class="note">{c.labels.count(None)} clip(s) without label are left out of '
                    "the ROC curve.</p>"
                )
        else:
            parts.append('<p class="warn">The labelled clips are all of one class: no ROC curve.</p>')
        plots.append(
            f"<figure>{_histogram_svg(c)}<figcaption>Anomaly scores of the test clips by label and "
            "domain, on shared bins.</figcaption></figure>"
        )
        if c.report.frames:
            plots.append(
                f'<figure class="frames">{_frames_svg(c.report.frames, c.report.threshold)}<figcaption>'
                "When in the clip: the score of each frame of the highest-scoring clips (a clip's score "
                "is its highest frame score, or the mean of its highest ones); every frame's score is in "
                f"{FRAME_SCORES_CSV}.</figcaption></figure>"
            )
        parts.append(f'<div class="plots">{"".join(plots)}</div>')
        parts.append(_top_clips(c, top_k, audio_root, url_root, folder))
    parts.append(_skipped(c))
    parts.append("</section>")
    return "".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _config_section(config: Mapping[str, Any]) -> str:
    text = json.dumps(_jsonable(config), indent=2, ensure_ascii=False)
    return f'<section id="config"><h2>Configuration</h2><pre class="config">{_esc(text)}</pre></section>'
