"""The DCASE submission files: ``anomaly_score_<machine>_section_<SS>_test.csv`` and ``decision_result_…``.

Both are headerless ``<wav name>,<value>`` CSVs, one pair per machine and section, as the DCASE
evaluator (and ``frozenasd evaluate``) reads them.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frozenasd.data.dcase import Clip
from frozenasd.outputs.files import PathLike, write_csv_rows
from frozenasd.outputs.names import ANOMALY_SCORE, DECISION_RESULT, section_file_glob, section_file_name

MAX_SECTION_DIGITS = 16


def section_id(section: int | str) -> str:
    """The section as submission file names write it: at least two digits (``0``, ``'000'`` -> ``'00'``).

    Raises ValueError for anything but a non-negative number of at most ``MAX_SECTION_DIGITS`` digits.
    """
    text = str(section).removeprefix("section_")
    if not re.fullmatch(r"[0-9]+", text) or len(text.lstrip("0")) > MAX_SECTION_DIGITS:
        raise ValueError(
            f"section must be a number of at most {MAX_SECTION_DIGITS} digits "
            f"(e.g. 0, '00', 'section_00', 123), got {section!r}"
        )
    return f"{int(text):02d}"


def remove_submission_files(out_dir: PathLike, machine: str) -> list[Path]:
    """Delete ``machine``'s submission files of every section in ``out_dir``; returns those deleted.

    A run writes a machine's files afresh, and a machine that fails must not leave an earlier run's
    files behind for the evaluator to read.
    """
    folder = Path(out_dir)
    pattern = glob.escape(machine)
    found = [
        *folder.glob(section_file_glob(ANOMALY_SCORE, pattern)),
        *folder.glob(section_file_glob(DECISION_RESULT, pattern)),
    ]
    for path in found:
        path.unlink(missing_ok=True)
    return sorted(found)


def submission_file_names(machine: str, section: int | str) -> tuple[str, str]:
    """The anomaly-score and decision-result file names for ``machine`` and ``section``."""
    if not machine or "_" in machine or "/" in machine or os.sep in machine:
        raise ValueError(f"machine name must be non-empty without '_' or path separators, got {machine!r}")
    ss = section_id(section)
    return section_file_name(ANOMALY_SCORE, machine, ss), section_file_name(DECISION_RESULT, machine, ss)


def write_submission(
    out_dir: PathLike,
    machine: str,
    section: int | str,
    file_names: Sequence[PathLike],
    scores: Any,
    decisions: Any | None,
) -> tuple[Path, Path | None]:
    """Write the headerless DCASE CSVs ``<wav name>,<score>`` and ``<wav name>,<0|1>``, sorted by name.

    ``file_names`` may be paths; only their base names are written. Returns the two paths written (the
    second ``None`` when ``decisions`` is ``None``).
    """
    score_name, decision_name = submission_file_names(machine, section)
    names = [Path(n).name for n in file_names]
    values = np.asarray(scores, dtype=np.float64).ravel()
    if len(values) != len(names):
        raise ValueError(f"{len(names)} file names but {len(values)} scores")
    if not np.isfinite(values).all():
        raise ValueError(f"{machine}: {int((~np.isfinite(values)).sum())} score(s) are nan or inf")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{machine}: file name(s) listed more than once: {dup[:5]}")
    order = sorted(range(len(names)), key=names.__getitem__)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    score_path = out / score_name
    write_csv_rows(score_path, ([names[i], repr(float(values[i]))] for i in order))
    if decisions is None:
        return score_path, None
    dec = np.asarray(decisions).ravel()
    if len(dec) != len(names):
        raise ValueError(f"{len(names)} file names but {len(dec)} decisions")
    if not np.isin(dec, (0, 1)).all():
        raise ValueError(f"{machine}: decisions must be 0 or 1")
    decision_path = out / decision_name
    write_csv_rows(decision_path, ([names[i], int(dec[i])] for i in order))
    return score_path, decision_path


def write_submission_files(
    out_dir: Path, machine: str, clips: Sequence[Clip], scores: np.ndarray, threshold: float
) -> tuple[list[Path], list[tuple[Clip, str]]]:
    """One ``anomaly_score``/``decision_result`` pair per section of ``clips`` (earlier ones removed).

    A clip is anomalous when its score is above ``threshold``. Clips without a section go to section
    00; sections that are the same number (``0``, ``00``, ``000``) share their files. Returns the
    files written and the clips left out with the reason (a section number too long to name a file).
    """
    remove_submission_files(out_dir, machine)
    by_section: dict[str, list[int]] = {}
    left_out: list[tuple[Clip, str]] = []
    for i, clip in enumerate(clips):
        try:
            by_section.setdefault(section_id(clip.section or "00"), []).append(i)
        except ValueError as exc:
            left_out.append((clip, str(exc)))
    written: list[Path] = []
    for section, rows in sorted(by_section.items()):
        written += write_submission(
            out_dir,
            machine,
            section,
            [clips[i].name for i in rows],
            scores[rows],
            (scores[rows] > threshold).astype(int),
        )
    return written, left_out
