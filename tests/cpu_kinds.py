"""Run a Python process as if on another kind of x86 CPU: some of this CPU's features hidden from it.

ONNX Runtime, OpenBLAS, numpy and PyTorch pick their kernels from what the CPUID instruction reports;
``hide_cpu_features.c``, preloaded into a child process, makes CPUID report fewer features. So the
int8 and fp32 code paths of CPUs without AVX-512, VNNI or AMX run (and are tested and timed) on a
machine that has them, at its clock and caches. Needs Linux on x86-64 with CPUID faulting
(``cpuid_fault`` in /proc/cpuinfo), a C compiler, and the features the kind keeps.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("hide_cpu_features.c")
HIDE = "FROZENASD_HIDE_CPU"  # the groups the library hides (its source names them)
KIND = "FROZENASD_CPU_KIND"  # the kind, for this module's readers

# kind: (what it stands for, groups hidden, /proc/cpuinfo flags the CPU must have to show it)
KINDS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "avx2": (
        "AVX2 without VNNI (AMD Zen 1-3, Intel Core before Ice Lake)",
        ("avx512", "vnni", "amx", "avx-ext"),
        ("avx2", "fma"),
    ),
    "avx2-vnni": (
        "AVX2 with AVX-VNNI (Intel Core from Alder Lake)",
        ("avx512", "amx", "avx-ext"),
        ("avx2", "avx_vnni"),
    ),
    "avx512": (
        "AVX-512 without VNNI (Intel Skylake-SP)",
        ("avx512-ext", "vnni", "amx", "avx-ext"),
        ("avx512f", "avx512bw", "avx512dq", "avx512vl"),
    ),
    "avx512-vnni": (
        "AVX-512 with VNNI, no AMX (Intel Cascade Lake, Ice Lake)",
        ("amx",),
        ("avx512f", "avx512bw", "avx512_vnni"),
    ),
}

_SKYLAKE_AVX512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}


def _hidden(flag: str, groups: set[str]) -> bool:
    """Whether the /proc/cpuinfo flag ``flag`` is one the library hides for ``groups``."""
    return (
        ("avx512" in groups and flag.startswith("avx512"))
        or ("avx512-ext" in groups and flag.startswith("avx512") and flag not in _SKYLAKE_AVX512)
        or ("vnni" in groups and "vnni" in flag)
        or ("amx" in groups and flag.startswith("amx"))
        or ("avx-ext" in groups and flag in ("avx_ifma", "avx_ne_convert"))
    )


def _cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def compiler() -> str | None:
    return next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)


def unavailable(kind: str) -> str | None:
    """Why this machine cannot run a process of CPU kind ``kind``, or None when it can."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"needs Linux on x86-64 (this is {platform.system()} on {platform.machine()})"
    flags = _cpuinfo_flags()
    missing = [f for f in KINDS[kind][2] if f not in flags]
    if missing:
        return f"the CPU lacks {', '.join(missing)}, which the {kind} kind has"
    if "cpuid_fault" not in flags:
        return "the kernel offers no CPUID faulting (no cpuid_fault in /proc/cpuinfo)"
    if compiler() is None:
        return "no C compiler (cc, gcc or clang) to build hide_cpu_features.c"
    return None


def build(folder: Path) -> Path:
    """Compile the preload library into ``folder``; returns its path."""
    if platform.system() != "Linux" or compiler() is None:
        raise RuntimeError("hiding CPU features needs Linux and a C compiler")
    out = folder / "hide_cpu_features.so"
    subprocess.run(
        [compiler(), "-O2", "-shared", "-fPIC", "-o", str(out), str(SOURCE)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out


def environment(library: Path, kind: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) for a child of CPU kind ``kind``."""
    reason = unavailable(kind)
    if reason:
        raise RuntimeError(f"cannot run as the {kind} kind here: {reason}")
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONFAULTHANDLER", None)  # its SIGSEGV handler would replace the CPUID one
    env["LD_PRELOAD"] = " ".join(x for x in (str(library), env.get("LD_PRELOAD", "")) if x)
    env[HIDE] = ",".join(KINDS[kind][1])
    env[KIND] = kind
    return env


def active() -> str | None:
    """The kind this process runs as, or None when it sees the CPU as it is."""
    kind = os.environ.get(KIND)
    return kind if kind in KINDS and os.environ.get(HIDE) else None


def visible_flags() -> set[str]:
    """The CPU flags of /proc/cpuinfo as this process's libraries see them."""
    flags = _cpuinfo_flags()
    kind = active()
    return {f for f in flags if not _hidden(f, set(KINDS[kind][1]))} if kind else flags
