"""A run's records: ``run.json`` per machine, ``summary.md`` and ``report.html`` for the run, the versions.

Nothing here computes a score: these functions write down what the workflow gives them (each
machine's :class:`~frozenasd.report.MachineReport`, the settings and the opened views).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frozenasd.evaluation.metrics import official_score
from frozenasd.monitor.trend import report_section
from frozenasd.outputs.names import METRICS_TXT, REPORT_HTML, RUN_JSON, SCORES_CSV, SUMMARY_MD
from frozenasd.report import MachineReport, write_report
from frozenasd.text import printable, printable_data
from frozenasd.versions import versions
from frozenasd.workflows.evaluate import format_table

if TYPE_CHECKING:
    from frozenasd.embed import Views
    from frozenasd.settings import RunSettings

__all__ = ["summary_text", "versions", "write_run_json", "write_run_summary"]


def _embedding(settings: RunSettings, views: Views) -> dict[str, Any]:
    """The settings, the detector and the encoder(s) as a run's records give them."""
    return {
        "settings": settings.as_dict(),
        "detector": settings.detector_name,
        "encoder": views.extractors[0].metadata_.get("model", {}),
        "frontend": views.extractors[0].frontend_,
        "views": views.records(),
    }


def write_run_json(
    out_dir: Path,
    report: MachineReport,
    *,
    data: Path,
    settings: RunSettings,
    views: Views,
    n_train: int,
    cut: Sequence[str],
) -> Path:
    """Write a machine's ``run.json``: versions, data, settings, encoder(s), clip counts and metrics.

    ``cut``: the clips embedded only up to the encoder's longest input (see the frontend's
    ``longest_samples``). The record's ``metrics`` add the threshold and the clips left out to the
    machine's metrics.
    """
    described = _embedding(settings, views)
    record = {
        "versions": versions(),
        "machine_type": report.machine,
        "data": str(data),
        **described,
        "n_train": n_train,
        "n_test": len(report.paths),
        "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
        "cut": list(cut),
        "metrics": {
            **report.metrics,
            "threshold": report.threshold,
            "unscored_test_clips": report.unscored,
            "not_in_submission": report.not_in_submission,
        },
    }
    path = out_dir / RUN_JSON
    path.write_text(json.dumps(printable_data(record), indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _names(paths: Sequence[str]) -> str:
    """The first five file names, then an ellipsis if there are more."""
    return ", ".join(Path(p).name for p in paths[:5]) + (" …" if len(paths) > 5 else "")


def summary_text(reports: Sequence[MachineReport], failed: dict[str, str] | None = None) -> str:
    """``summary.md``: the DCASE table of the machines scored and notes on what is missing."""
    failures = [f"- {m}: not scored: {error}" for m, error in (failed or {}).items()]
    if not reports:
        return printable("No machine was scored.\n\n" + "\n".join(failures) + "\n")
    per_machine = {r.machine: r.metrics for r in reports}
    notes = failures + [f"- {r.machine}: {r.metrics['note']}" for r in reports if r.metrics.get("note")]
    for r in reports:
        if r.unscored:
            notes.append(
                f"- {r.machine}: {len(r.unscored)} test clip(s) could not be scored and are missing from the "
                f"submission files: {_names(r.unscored)}"
                f" (reasons in {r.machine}'s {METRICS_TXT} and {RUN_JSON})"
            )
        if r.not_in_submission:
            notes.append(
                f"- {r.machine}: {len(r.not_in_submission)} test clip(s) are scored ({SCORES_CSV}) but left "
                "out of the submission files, their section number being too long: "
                + _names(r.not_in_submission)
            )
    table = format_table({"machines": per_machine, "official_score": _official(reports)})
    return printable(table + ("\n" + "\n".join(notes) + "\n" if notes else ""))


def _official(reports: Sequence[MachineReport]) -> float | None:
    """The official score over the machines, when every one has its three values."""
    per_machine = {r.machine: r.metrics for r in reports}
    complete = all(
        m.get(k) is not None for m in per_machine.values() for k in ("auc_source", "auc_target", "pauc")
    )
    return official_score(per_machine) if complete else None


def write_run_summary(
    out_root: Path,
    reports: list[MachineReport],
    settings: RunSettings,
    views: Views,
    failed: dict[str, str] | None = None,
    history: str | os.PathLike | None = None,
) -> str:
    """The report, then ``summary.md`` (see :func:`summary_text`); returns the summary's text.

    With ``history`` (a score history file of ``frozenasd watch``), the report shows its trends too.

    Without any machine scored, ``summary.md`` holds the errors only and no report is written.
    ``summary.md`` is written last, so that a run stopped before it leaves none.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    text = summary_text(reports, failed)
    if not reports:
        (out_root / SUMMARY_MD).write_text(text, encoding="utf-8")
        (out_root / REPORT_HTML).unlink(missing_ok=True)
        return text
    config = {**_embedding(settings, views), "versions": versions()}
    extra = [] if history is None else [("history", "Score history", report_section(history))]
    write_report(
        out_root / REPORT_HTML, reports, config, official_score=_official(reports), extra_sections=extra
    )
    (out_root / SUMMARY_MD).write_text(text, encoding="utf-8")  # last: the run is complete
    return text
