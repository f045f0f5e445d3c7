"""What the benchmark scripts share: the machine they ran on and the BENCHMARKS.md section they own."""

from __future__ import annotations

import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> dict[str, str]:
    """CPU model, core counts and Python version of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical ({usable} usable)",
        "python": platform.python_version(),
    }


def write_section(text: str, heading: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the section that starts with the line ``heading`` (up to the next ``## ``), or append it."""
    body = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    lines = body.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    text = text.rstrip("\n") + "\n"
    if start is None:
        new = body.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        rest = "".join(lines[end:])
        new = "".join(lines[:start]) + text + ("\n" + rest if rest else "")
    path.write_text(new, encoding="utf-8")


def publish(text: str, heading: str, path: Path | None) -> None:
    """Print the section ``text``, and write it to ``path`` (a BENCHMARKS.md) when given."""
    print(text.rstrip("\n"))
    if path:
        write_section(text, heading, path)


def measured_now() -> str:
    """``Measured <UTC time> on <CPU>, <cores> cores, Python <version>``: how a section starts."""
    facts = machine()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Measured {when} on {facts['cpu']}, {facts['cores']} cores, Python {facts['python']}"


def score_times(model: Any, clips: list[Path]) -> dict[str, float]:
    """Seconds per clip scoring with ``model`` (a ScoringModel): ``one`` ``score`` call per clip, and
    ``all`` clips in one call."""
    start = time.perf_counter()
    for clip in clips:
        model.score(clip)
    one = (time.perf_counter() - start) / len(clips)
    start = time.perf_counter()
    model.score(clips)
    return {"one": one, "all": (time.perf_counter() - start) / len(clips)}
