"""What the benchmark scripts share: the machine they ran on and the BENCHMARKS.md section they own."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
sys.path.append(str(BENCHMARKS_MD.parent / "tests"))  # cpu_kinds, shared with the tests

import cpu_kinds  # noqa: E402

CPU_KIND_HELP = (
    "run as another kind of x86 CPU, some of this one's features hidden from the process "
    f"(tests/cpu_kinds.py): {', '.join(cpu_kinds.KINDS)}; the section is written under that kind"
)


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


def cpu_kind() -> str:
    """What the encoders' kernels depend on, as this process sees the CPU: ``AVX-512 with VNNI and
    AMX``, ``AVX2 without VNNI``..."""
    flags = cpu_kinds.visible_flags()
    width = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    amx = " and AMX" if "amx_int8" in flags else ""
    return f"{width} {'with' if vnni else 'without'} VNNI{amx}"


def hidden_features() -> str:
    """How the CPU was shown to this process: empty, or a clause naming the kind it ran as."""
    kind = cpu_kinds.active()
    if kind is None:
        return ""
    return (
        f" run as {cpu_kinds.KINDS[kind][0]} by `--cpu-kind {kind}` (the other features hidden from the "
        "process: ONNX Runtime, OpenBLAS and PyTorch ran the kernels of such a CPU, at this CPU's clock "
        "and caches)"
    )


def rerun_as(kind: str, script: str, argv: list[str] | None) -> int:
    """Run ``script`` again, with the same arguments, in a process of CPU kind ``kind``; its exit code."""
    with tempfile.TemporaryDirectory(prefix="frozenasd-cpu-kind-") as tmp:
        library = cpu_kinds.build(Path(tmp))
        args = sys.argv[1:] if argv is None else argv
        env = cpu_kinds.environment(library, kind)
        return subprocess.run([sys.executable, script, *args], env=env).returncode


def check_cpu_kind() -> None:
    """In a process started by :func:`rerun_as`: fail unless numpy, too, sees the kind's features."""
    from numpy._core._multiarray_umath import __cpu_features__ as seen

    kind = cpu_kinds.active()
    if kind and bool(seen.get("AVX512F")) != ("avx512f" in cpu_kinds.visible_flags()):
        raise SystemExit(
            f"numpy does not see the {kind} kind's features: the preload library did not take effect"
        )


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
    return (
        f"Measured {when} on {facts['cpu']}{hidden_features()}, {facts['cores']} cores, "
        f"Python {facts['python']}"
    )


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
