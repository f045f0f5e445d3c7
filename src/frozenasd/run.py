"""The names ``frozenasd.run`` held before it was split, re-exported from their homes.

New code imports from the homes: :mod:`frozenasd.embed` (the embedding stage), :mod:`frozenasd.settings`,
:mod:`frozenasd.scoring.fitting`, :mod:`frozenasd.workflows.run` (the run),
:mod:`frozenasd.workflows.records` (run.json, summary.md, report.html) and
:mod:`frozenasd.outputs.submission`.
"""

from __future__ import annotations

from frozenasd.embed import Embedded, Executor, LocalExecutor, Views, embed_clips, open_cache
from frozenasd.embed.executor import CHUNK
from frozenasd.outputs.submission import write_submission_files
from frozenasd.scoring.fitting import fit_on_normals
from frozenasd.settings import RunSettings
from frozenasd.versions import versions
from frozenasd.workflows.records import write_run_summary
from frozenasd.workflows.run import RunResult, run, run_machine

__all__ = [
    "CHUNK",
    "Embedded",
    "Executor",
    "LocalExecutor",
    "RunResult",
    "RunSettings",
    "Views",
    "embed_clips",
    "fit_on_normals",
    "open_cache",
    "run",
    "run_machine",
    "versions",
    "write_run_summary",
    "write_submission_files",
]
