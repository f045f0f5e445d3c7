"""What ``frozenasd score`` found, as one JSON document (``score --json``).

``{"fitted", "threshold", "n_scored", "n_anomalous", "n_skipped", "clips": [{"path", "score",
"anomalous"}], "skipped": [{"path", "reason"}]}``: ``anomalous`` is true when the clip's score is above
the threshold; a score that is not a finite number is ``null``. Paths are written as in the CSV
outputs (undecodable bytes as ``\\xNN``, see :func:`frozenasd.outputs.files.printable`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frozenasd.errors import FrozenASDError
from frozenasd.text import printable

if TYPE_CHECKING:
    from frozenasd.scoring.model import Scored

STDOUT = "-"


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def score_record(result: Scored, fitted: str | os.PathLike) -> dict[str, Any]:
    """The JSON-ready record of one scoring: every clip's score and decision, and the skipped clips."""
    clips = [
        {"path": printable(str(path)), "score": _number(score), "anomalous": bool(decision)}
        for path, score, decision in zip(result.paths, result.scores, result.decisions, strict=True)
    ]
    return {
        "fitted": printable(str(fitted)),
        "threshold": float(result.threshold),
        "n_scored": len(clips),
        "n_anomalous": sum(c["anomalous"] for c in clips),
        "n_skipped": len(result.skipped),
        "clips": clips,
        "skipped": [{"path": printable(str(p)), "reason": printable(r)} for p, r in result.skipped],
    }


def write_score_json(record: dict[str, Any], target: str | os.PathLike) -> None:
    """Write ``record`` as indented UTF-8 JSON to the file ``target``, or to stdout when it is ``-``."""
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    if str(target) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(target).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise FrozenASDError(f"{target}: cannot write the JSON scores: {exc.strerror or exc}") from exc
