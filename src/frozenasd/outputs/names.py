"""The name of every file a run writes (and of the DCASE files ``evaluate`` reads), in one place.

Per machine, in ``<out>/results_<machine>/``: ``scores.csv``, ``metrics.txt``, ``roc.png``, ``run.json``
and, for a frame detector, ``frame_scores.csv``. In ``<out>/``: the DCASE submission files (one pair a
section), ``summary.md`` and ``report.html``.
"""

from __future__ import annotations

import re

SCORES_CSV = "scores.csv"
METRICS_TXT = "metrics.txt"
ROC_PNG = "roc.png"
RUN_JSON = "run.json"
FRAME_SCORES_CSV = "frame_scores.csv"
SUMMARY_MD = "summary.md"
REPORT_HTML = "report.html"

# a machine's own outputs, in the order a run writes them
MACHINE_FILES = (SCORES_CSV, METRICS_TXT, ROC_PNG, RUN_JSON, FRAME_SCORES_CSV)

ANOMALY_SCORE = "anomaly_score"  # DCASE submission: <wav name>,<score>
DECISION_RESULT = "decision_result"  # DCASE submission: <wav name>,<0|1>
GROUND_TRUTH = "ground_truth"  # DCASE ground truth, read by evaluate


def machine_dir_name(machine: str) -> str:
    """The folder of a machine's outputs under a run's output folder."""
    return f"results_{machine}"


def section_file_name(kind: str, machine: str, section: str) -> str:
    """``<kind>_<machine>_section_<section>_test.csv``; ``kind``: one of the three above."""
    return f"{kind}_{machine}_section_{section}_test.csv"


def section_file_glob(kind: str, machine: str = "*") -> str:
    """A glob for ``kind``'s files of ``machine`` (already glob-escaped) in every section."""
    return section_file_name(kind, machine, "*")


def section_file_pattern(kind: str) -> re.Pattern[str]:
    """A regex matching ``kind``'s file names, capturing ``machine`` and ``section`` (two digits or more)."""
    return re.compile(rf"^{kind}_(?P<machine>[^_]+)_section_(?P<section>[0-9]{{2,}})_test\.csv$")
