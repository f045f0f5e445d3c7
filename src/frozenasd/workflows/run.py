"""One run: embed a machine's clips, fit the detector on normal training clips, score and save.

A clip that cannot be used (unreadable, truncated, too short) is reported, skipped and listed in the
outputs; the rest of the run goes on. A machine that cannot be scored at all is reported and the
other machines still run. This module only orders the steps: the embedding is :mod:`frozenasd.embed`'s,
the fitting :mod:`frozenasd.scoring.fitting`'s, the files :mod:`frozenasd.outputs`' and the records
:mod:`frozenasd.workflows.records`'.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frozenasd.data.dcase import Clip, discover_machines, list_clips
from frozenasd.detectors.frames import frame_detector, frame_starts, pipeline_frame_scores
from frozenasd.embed import Executor, Views
from frozenasd.errors import FrozenASDError
from frozenasd.monitor.history import History
from frozenasd.outputs.files import compute_and_save_metrics
from frozenasd.outputs.frame_scores import write_frame_scores
from frozenasd.outputs.names import FRAME_SCORES_CSV, MACHINE_FILES, REPORT_HTML, SUMMARY_MD, machine_dir_name
from frozenasd.outputs.submission import remove_submission_files, write_submission_files
from frozenasd.report import MachineReport
from frozenasd.report.model import FrameTrace
from frozenasd.scoring.fitting import fit_on_normals
from frozenasd.settings import RunSettings
from frozenasd.text import printable
from frozenasd.workflows.records import write_run_json, write_run_summary

__all__ = ["RunResult", "run", "run_machine"]

TOP_CLIPS = 5  # clips whose frame scores a run keeps per machine (the highest-scoring test clips)


@dataclass
class RunResult:
    """What a run did: per machine (in the order run) its report, or the error that stopped it.

    ``summary`` is the text of ``summary.md`` (the DCASE table and notes on what is missing).
    """

    machines: dict[str, MachineReport | str]
    summary: str

    @property
    def reports(self) -> list[MachineReport]:
        """The machines scored."""
        return [r for r in self.machines.values() if isinstance(r, MachineReport)]

    @property
    def failed(self) -> dict[str, str]:
        """The machines not scored, with the error."""
        return {m: r for m, r in self.machines.items() if isinstance(r, str)}

    @property
    def metrics(self) -> dict[str, dict[str, Any] | str]:
        """Per machine its metrics (``auc``, ``pauc``, …), or the error that stopped it."""
        return {m: r if isinstance(r, str) else r.metrics for m, r in self.machines.items()}


def run_machine(
    data_root: Path,
    machine: str,
    out_dir: Path,
    settings: RunSettings,
    views: Views | None = None,
    submission_dir: Path | None = None,
) -> MachineReport:
    """Score one machine's test clips and write scores.csv, metrics.txt, roc.png and run.json.

    With ``submission_dir``, also the DCASE ``anomaly_score_*`` and ``decision_result_*`` files there;
    the decision threshold is the settings' (default: the 90th percentile of a gamma distribution
    fitted to the training scores).
    """
    views = views or Views.open(settings)
    (train, bounds), (test, _) = (
        views.embed(
            list_clips(data_root, machine, split), progress=settings.progress, desc=f"{machine} {split}"
        )
        for split in ("train", "test")
    )
    pipe, threshold = fit_on_normals(
        train, settings, data_root / machine / "train", [c.domain for c in train.clips], bounds
    )
    if not test.clips:
        raise FrozenASDError(f"{data_root / machine / 'test'}: no usable test clip")
    scores = pipe.transform(test.embeddings)[:, 0]
    report = MachineReport(
        machine=machine,
        paths=[str(c.path) for c in test.clips],
        scores=scores,
        labels=[None if c.label is None else int(c.label == "anomaly") for c in test.clips],
        domains=[c.domain for c in test.clips],
        metrics={},
        threshold=threshold,
        skipped=[(str(c.path), reason) for c, reason in train.skipped + test.skipped],
        unscored=[str(c.path) for c, _ in test.skipped],
    )
    report.metrics = compute_and_save_metrics(
        paths=report.paths,
        scores=scores,
        out_dir=out_dir,
        labels=report.labels,
        domains=report.domains,
        skipped=report.skipped,
        title=machine,
    )
    hop = getattr(views.extractors[0], "frame_hop_", None)
    report.frames = record_top_frames(
        out_dir, pipe, test.embeddings, report.paths, scores, report.labels, hop
    )
    if submission_dir is not None:
        report.not_in_submission = _write_submission(submission_dir, machine, test.clips, scores, threshold)
    cut = [str(c.path) for c in train.cut + test.cut]
    write_run_json(
        out_dir,
        report,
        data=data_root / machine,
        settings=settings,
        views=views,
        n_train=len(train.clips),
        cut=cut,
    )
    return report


def _write_submission(
    folder: Path, machine: str, clips: Sequence[Clip], scores: Any, threshold: float
) -> list[str]:
    """The machine's submission files; returns the clips left out of them, each reported."""
    _, left_out = write_submission_files(folder, machine, clips, scores, threshold)
    for clip, reason in left_out:
        print(printable(f"warning: {clip.path}: left out of the submission files: {reason}"), file=sys.stderr)
    return [str(c.path) for c, _ in left_out]


def run(
    data_root: Path,
    machines: Sequence[str] | None,
    out_root: Path,
    settings: RunSettings,
    out_dir_for: Callable[[Path, str], Path] | None = None,
    executor: Executor | None = None,
    history: str | os.PathLike | None = None,
) -> RunResult:
    """Run every machine; returns per machine its report or the error that stopped it, and the summary.

    Besides each machine's outputs, ``out_root`` receives the DCASE submission files,
    ``summary.md`` (the DCASE table) and ``report.html``. ``executor`` embeds the clips (default: in
    this process). ``history``: a score history (``frozenasd watch``) whose trends the report shows.
    """
    if history is not None:
        History(history, create=False).close()  # a wrong file stops the run before any audio is read
    data_root, out_root = Path(data_root), Path(out_root)
    names = list(machines) if machines else discover_machines(data_root)
    out_dir_for = out_dir_for or (lambda root, m: root / machine_dir_name(m))
    views = Views.open(settings, executor)  # a model that does not load stops the run before any audio
    results: dict[str, MachineReport | str] = {}
    # Nothing of an earlier run may pass for this one's, even if this one is killed halfway: the
    # summary and the report appear only once every machine is done.
    for name in (SUMMARY_MD, REPORT_HTML):
        (out_root / name).unlink(missing_ok=True)
    for machine in names:
        _remove_outputs(out_root, out_dir_for(out_root, machine), machine)
    for machine in names:
        out_dir = out_dir_for(out_root, machine)
        try:
            results[machine] = run_machine(
                data_root, machine, out_dir, settings, views, submission_dir=out_root
            )
        except (FrozenASDError, ValueError, OSError) as exc:  # e.g. too few usable training clips
            print(printable(f"error: {machine}: {exc}"), file=sys.stderr)
            results[machine] = str(exc)
            _remove_outputs(out_root, out_dir, machine)
    result = RunResult(results, "")
    result.summary = write_run_summary(out_root, result.reports, settings, views, result.failed, history)
    return result


def _remove_outputs(out_root: Path, out_dir: Path, machine: str) -> None:
    """An earlier run's outputs of a machine that failed now: they must not pass for this run's."""
    remove_submission_files(out_root, machine)
    for name in MACHINE_FILES:
        (out_dir / name).unlink(missing_ok=True)


def record_top_frames(
    out_dir: Path,
    pipe: Any,
    X: np.ndarray,
    paths: Sequence[str],
    scores: np.ndarray,
    labels: Sequence[int | None],
    hop: float | None,
    top: int = TOP_CLIPS,
) -> list[FrameTrace]:
    """The frame scores of the ``top`` highest-scoring clips, written to ``out_dir/frame_scores.csv``.

    Nothing (and no file) for a detector without frame scores. Clips are ranked as the report ranks
    them: by score, then path.
    """
    (Path(out_dir) / FRAME_SCORES_CSV).unlink(missing_ok=True)
    if frame_detector(pipe) is None or len(paths) == 0:
        return []
    order = sorted(range(len(paths)), key=lambda i: (-scores[i], paths[i]))[:top]
    per_frame = pipeline_frame_scores(pipe, X[order])
    write_frame_scores(Path(out_dir) / FRAME_SCORES_CSV, [paths[i] for i in order], per_frame, hop)
    return [
        FrameTrace(paths[i], s, frame_starts(len(s), hop), labels[i])
        for i, s in zip(order, per_frame, strict=True)
    ]
