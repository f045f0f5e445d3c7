"""Files a run leaves behind: per-clip scores, a metrics summary, the ROC plot, DCASE submission CSVs.

``compute_and_save_metrics`` writes ``scores.csv``, ``metrics.txt`` and ``roc.png`` for one machine type;
:mod:`frozenasd.outputs.submission` writes the two headerless CSVs the DCASE evaluator reads. The file
names are those of :mod:`frozenasd.outputs.names`.

Text files are UTF-8. A file name that is not valid UTF-8 (its undecodable bytes arrive as lone
surrogates, see :func:`printable`) is written with those bytes as ``\\xNN`` escapes, the same way in
every output, so that ``evaluate`` matches the rows to the files on disk.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frozenasd.data.dcase import domain_from_name, label_from_name
from frozenasd.errors import FrozenASDError
from frozenasd.evaluation.metrics import MAX_FPR, machine_metrics
from frozenasd.outputs.names import METRICS_TXT, ROC_PNG, SCORES_CSV
from frozenasd.text import printable

PathLike = str | os.PathLike

SCORES_HEADER = ["path", "score", "label"]
DECISIONS_HEADER = ["path", "score", "anomalous"]  # frozenasd score --csv

# metrics.txt: one "<label>: <value>" line per entry; the labels of the usual keys are fixed here so the
# file reads well and parses back. Other keys are written under their own name.
_TXT_LABELS = {
    "auc": "AUC",
    "pauc": f"pAUC (FPR<={MAX_FPR:g})",
    "auc_source": "AUC (source)",
    "auc_target": "AUC (target)",
    "pauc_source": "pAUC (source)",
    "pauc_target": "pAUC (target)",
    "hmean": "hmean",
    "n_normal": "normal clips",
    "n_anomaly": "anomalous clips",
    "n_source": "source clips",
    "n_target": "target clips",
    "n_skipped": "skipped clips",
    "note": "note",
}
_TXT_KEYS = {label: key for key, label in _TXT_LABELS.items()}
_SKIPPED_LABEL = "skipped"
_MISSING = "n/a"
# Section numbers longer than this cannot be part of a submission file name (which must stay short).
_SURROGATE = re.compile("[\ud800-\udfff]")
_CSV_SPECIAL = re.compile('[",\r\n]')


def _csv_field(value: Any) -> str:
    """One CSV field: quoted when it holds a comma, a quote or a line break (``\\r`` included)."""
    text = printable(str(value))
    if _CSV_SPECIAL.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_csv_rows(path: PathLike, rows: Iterable[Sequence[Any]]) -> None:
    """Write ``rows`` as UTF-8 CSV lines ending in ``\\n``, each read back whole by ``csv.reader``.

    ``csv.writer`` with a ``\\n`` line terminator leaves a lone ``\\r`` unquoted, which a reader takes
    for a line break; here every field with ``\\r``, ``\\n``, ``,`` or ``"`` is quoted.
    """
    with open(path, "w", newline="", encoding="utf-8") as f:
        for row in rows:
            f.write(",".join(_csv_field(v) for v in row) + "\n")


# ---------------------------------------------------------------- scores.csv


def write_scores_csv(
    path: PathLike, paths: Sequence[PathLike], scores: Any, labels: Sequence[int | None] | None = None
) -> None:
    """Write ``path,score,label`` rows; scores at full precision, an unknown label as an empty field."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if len(scores) != len(paths):
        raise ValueError(f"{len(paths)} paths but {len(scores)} scores")
    if labels is None:
        labels = [None] * len(paths)
    if len(labels) != len(paths):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    rows = (
        [os.fspath(p), repr(float(s)), "" if lab is None else int(lab)]
        for p, s, lab in zip(paths, scores, labels, strict=True)
    )
    write_csv_rows(path, [SCORES_HEADER, *rows])


def write_decisions_csv(
    path: PathLike, paths: Sequence[PathLike], scores: Any, decisions: Sequence[int]
) -> None:
    """Write ``path,score,anomalous`` rows (`frozenasd score --csv`): scores to 6 decimals, 1 = anomalous."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not len(paths) == len(scores) == len(decisions):
        raise ValueError(f"{len(paths)} paths, {len(scores)} scores and {len(decisions)} decisions")
    rows = ([os.fspath(p), f"{s:.6f}", int(d)] for p, s, d in zip(paths, scores, decisions, strict=True))
    write_csv_rows(path, [DECISIONS_HEADER, *rows])


def read_scores_csv(path: PathLike) -> tuple[list[str], np.ndarray, list[int | None]]:
    """Read a file written by :func:`write_scores_csv`: ``(paths, scores, labels)``."""
    paths: list[str] = []
    scores: list[float] = []
    labels: list[int | None] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise FrozenASDError(f"{path}: cannot read scores file ({exc})") from exc
    if not rows or rows[0] != SCORES_HEADER:
        raise FrozenASDError(f"{path}: first line must be the header {','.join(SCORES_HEADER)}")
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != 3:
            raise FrozenASDError(f"{path}:{lineno}: expected 3 fields (path,score,label), got {len(row)}")
        try:
            score = float(row[1])
            label = None if row[2] == "" else int(row[2])
        except ValueError as exc:
            raise FrozenASDError(f"{path}:{lineno}: bad score or label ({exc})") from exc
        if label not in (None, 0, 1):
            raise FrozenASDError(f"{path}:{lineno}: label must be 0, 1 or empty, got {row[2]!r}")
        paths.append(row[0])
        scores.append(score)
        labels.append(label)
    return paths, np.asarray(scores, dtype=np.float64), labels


# ---------------------------------------------------------------- metrics.txt


def _format_value(value: Any) -> str:
    if value is None:
        return _MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.10f}" if math.isfinite(value) else str(float(value))
    return str(value)


def _parse_value(text: str) -> Any:
    if text == _MISSING:
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def write_metrics_txt(
    path: PathLike, metrics: Mapping[str, Any], skipped: Sequence[tuple[PathLike, str]] | None = None
) -> None:
    """Write ``<label>: <value>`` lines (floats with 10 decimals, ``n/a`` for a missing value).

    Each skipped clip becomes a line ``skipped: ["<path>", "<reason>"]`` (a JSON pair). Text is
    written through :func:`printable`.
    """
    lines = []
    for key, value in metrics.items():
        if key == _SKIPPED_LABEL or isinstance(value, (list, tuple, dict)):
            continue
        lines.append(f"{_TXT_LABELS.get(key, key)}: {_format_value(value)}")
    if skipped is not None:
        if "n_skipped" not in metrics:
            lines.append(f"{_TXT_LABELS['n_skipped']}: {len(skipped)}")
        for clip, reason in skipped:
            pair = [printable(os.fspath(clip)), printable(str(reason))]
            lines.append(f"{_SKIPPED_LABEL}: {json.dumps(pair)}")
    Path(path).write_text(printable("\n".join(lines) + "\n"), encoding="utf-8")


def read_metrics_txt(path: PathLike) -> dict[str, Any]:
    """Parse a file written by :func:`write_metrics_txt` into a dict (skipped clips under ``skipped``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FrozenASDError(f"{path}: cannot read metrics file ({exc})") from exc
    out: dict[str, Any] = {}
    skipped: list[tuple[str, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        label, sep, value = line.partition(": ")
        if not sep:
            raise FrozenASDError(f"{path}:{lineno}: expected '<name>: <value>', got {line!r}")
        if label == _SKIPPED_LABEL:
            try:
                clip, reason = json.loads(value)
            except (ValueError, TypeError) as exc:
                raise FrozenASDError(f"{path}:{lineno}: bad skipped-clip entry {value!r}") from exc
            skipped.append((clip, reason))
        else:
            out[_TXT_KEYS.get(label, label)] = _parse_value(value)
    if skipped:
        out[_SKIPPED_LABEL] = skipped
    return out


# ---------------------------------------------------------------- roc.png


def plot_roc(path: PathLike, y_true: Any, y_score: Any, title: str | None = None) -> None:
    """Save the ROC curve with the chance diagonal and the FPR = 0.1 limit of the pAUC as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    from frozenasd.evaluation.metrics import auc, pauc

    auc_value = auc(y_true, y_score)
    pauc_value = pauc(y_true, y_score)
    fpr, tpr, _ = roc_curve(np.asarray(y_true), np.asarray(y_score, dtype=np.float64))

    fig = Figure(figsize=(5.0, 5.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color="tab:blue", lw=2, label=f"ROC (AUC = {auc_value:.4f}, pAUC = {pauc_value:.4f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="chance")
    ax.axvline(MAX_FPR, color="tab:red", lw=1, ls=":", label=f"FPR = {MAX_FPR:g} (pAUC limit)")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")


# ---------------------------------------------------------------- the seed's entry point


def _labelled(paths: Sequence[PathLike], labels: Sequence[int | None]) -> tuple[list[int], str | None]:
    """The clips the metrics are computed on (none when undefined), and a note saying why not all."""
    unknown = [os.fspath(p) for p, lab in zip(paths, labels, strict=True) if lab is None]
    if len(unknown) == len(paths):
        return [], "labels unknown (no 'normal' or 'anomaly' in the file names): scores only"
    keep = [i for i, lab in enumerate(labels) if lab is not None]
    n_anomaly = sum(int(labels[i] == 1) for i in keep)
    if n_anomaly in (0, len(keep)):
        return [], (
            f"AUC needs both normal and anomalous clips; got {len(keep) - n_anomaly} normal and "
            f"{n_anomaly} anomalous: scores only"
        )
    if unknown:
        return keep, (
            f"{len(unknown)} of {len(paths)} clips have no known label (neither 'normal' nor 'anomaly' "
            f"in the name), e.g. {unknown[:3]}: the metrics are over the {len(keep)} labelled clips"
        )
    return keep, None


def compute_and_save_metrics(
    paths: Sequence[PathLike],
    scores: Any,
    out_dir: PathLike,
    labels: Sequence[int | None] | None = None,
    domains: Sequence[str | None] | None = None,
    skipped: Sequence[tuple[PathLike, str]] | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """Write ``scores.csv``, ``metrics.txt`` and ``roc.png`` into ``out_dir``; return the metrics dict.

    Labels and domains default to what the file names say (``anomaly``/``normal``, ``target``/``source``).
    When the metrics are not defined (no clip has a known label, as in an evaluation set, or the
    labelled clips are all of one class), the scores and the clip counts are still written, the
    metric values are ``None`` and ``note`` says why; no ROC is drawn. When only some clips have no
    label, the metrics and the ROC are over the labelled ones and ``note`` says so.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    values = np.asarray(scores, dtype=np.float64).ravel()
    if len(values) != len(paths):
        raise ValueError(f"{len(paths)} paths but {len(values)} scores")
    if labels is None:
        labels = [label_from_name(p) for p in paths]
    if domains is None:
        domains = [domain_from_name(p) for p in paths]
    if len(labels) != len(paths):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    if len(domains) != len(paths):
        raise ValueError(f"{len(paths)} paths but {len(domains)} domains")
    write_scores_csv(out / SCORES_CSV, paths, values, labels)

    extra = {"n_clips": len(paths), "n_skipped": len(skipped or [])}
    keep, note = _labelled(paths, labels)
    if not keep:
        result: dict[str, Any] = dict.fromkeys(("auc", "pauc", "auc_source", "auc_target", "hmean"))
        result.update(extra)
        result["note"] = note
        write_metrics_txt(out / METRICS_TXT, result, skipped or [])
        (out / ROC_PNG).unlink(missing_ok=True)  # an earlier run's curve would not match these scores
        return result
    y = np.asarray([labels[i] for i in keep], dtype=np.int64)
    values = values[keep]
    kept_domains = [domains[i] for i in keep]
    dom = None if all(d is None for d in kept_domains) else kept_domains
    result = machine_metrics(y, values, dom)
    result.update(extra)
    if note:
        result["note"] = note
    write_metrics_txt(out / METRICS_TXT, result, skipped or [])
    plot_roc(out / ROC_PNG, y, values, title)
    return result
