"""The names ``frozenasd.run`` held before it was split, re-exported from their homes.

New code imports from the homes: :mod:`frozenasd.embed` (the embedding stage), :mod:`frozenasd.settings`,
:mod:`frozenasd.fitting`, :mod:`frozenasd.workflows.run` (the run), :mod:`frozenasd.records` (run.json,
summary.md, report.html) and :mod:`frozenasd.submission`.
"""

from __future__ import annotations

from frozenasd.embed import Embedded, Executor, LocalExecutor, Views, embed_clips, open_cache
from frozenasd.embed.executor import CHUNK
from frozenasd.fitting import fit_on_normals
from frozenasd.records import versions, write_run_summary
from frozenasd.settings import RunSettings
from frozenasd.submission import write_submission_files
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
