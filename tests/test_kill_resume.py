"""A `frozenasd run` killed with SIGKILL, then run again, or two at once on one cache: the outputs are
those of a single run never stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from frozenasd.embed.executor import CHUNK

# Runs `frozenasd` with a SIGKILL at a chosen point: while the cache writes the chunk after the first
# N ("chunk:N"), leaving part of its temporary file, or when the report is about to be written.
KILLED_RUN = r"""
import os, signal, sys
import numpy as np
import frozenasd.workflows.records
from frozenasd.cli import main

where = sys.argv[1]
savez, stored = np.savez, []

def kill(message):
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

def dying_savez(f, **arrays):
    if where.startswith("chunk:") and len(stored) == int(where[6:]):
        f.write(b"PK\x03\x04")
        f.flush()
        kill(f"killed while writing {len(arrays['ids'])} rows")
    stored.append(len(arrays["ids"]))
    savez(f, **arrays)

np.savez = dying_savez
if where == "report":
    frozenasd.workflows.records.write_report = lambda *a, **k: kill("killed before the report")
sys.exit(main(sys.argv[2:]))
"""


def run_command(data: Path, model: Path, out: Path, cache: Path, kill_at: str | None = None) -> list[str]:
    args = ["run", "--data", str(data), "--model", str(model), "--out", str(out), "--cache-dir", str(cache)]
    head = (
        [sys.executable, "-m", "frozenasd"]
        if kill_at is None
        else [sys.executable, "-c", KILLED_RUN, kill_at]
    )
    return [*head, *args, "--no-progress"]


def frozenasd_run(data: Path, model: Path, out: Path, cache: Path, kill_at: str | None = None):
    command = run_command(data, model, out, cache, kill_at)
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def rows_in(cache: Path) -> list[str]:
    """Every row key of every chunk of the cache."""
    keys: list[str] = []
    for chunk in sorted(cache.rglob("chunk_*.npz")):
        with np.load(chunk) as data:
            keys += data["ids"].tolist()
    return keys


def outputs(folder: Path, cache: Path) -> dict[str, bytes]:
    """Every file under ``folder``; the report's time of writing and the cache folder's name left out."""
    found = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    for name in ("report.html", "results_fan/run.json"):
        found[name] = re.sub(rb"generated [^<]*? UTC", b"", found[name]).replace(os.fsencode(cache), b"CACHE")
    return found


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_dataset, patch_encoder):
    """The outputs of a run never stopped, and the number of clips it embedded."""
    work = tmp_path_factory.mktemp("uninterrupted")
    result = frozenasd_run(tiny_dataset, patch_encoder, work / "out", work / "cache")
    assert result.returncode == 0, result.stderr
    return outputs(work / "out", work / "cache"), len(rows_in(work / "cache"))


@pytest.mark.parametrize("kill_at", ["chunk:3", "report"])
def test_a_run_killed_with_sigkill_resumes_to_the_same_outputs(
    kill_at, uninterrupted, tiny_dataset, patch_encoder, tmp_path
):
    reference, n_embedded = uninterrupted
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()
    for name in ("report.html", "summary.md"):  # an earlier run's, which must not pass for this one's
        (out / name).write_bytes(reference[name])

    killed = frozenasd_run(tiny_dataset, patch_encoder, out, cache, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / "report.html").exists() and not (out / "summary.md").exists()
    at_kill = rows_in(cache)
    lost = re.search(r"killed while writing (\d+) rows", killed.stderr)
    assert (lost is None) == (kill_at == "report")
    temporary = list(cache.rglob(".chunk_*.tmp"))
    assert len(temporary) == (0 if lost is None else 1)
    for tmp in temporary:  # the run is resumed a while after the kill
        os.utime(tmp, (time.time() - 120, time.time() - 120))

    resumed = frozenasd_run(tiny_dataset, patch_encoder, out, cache)
    assert resumed.returncode == 0, resumed.stderr
    assert outputs(out, cache) == reference
    after = rows_in(cache)
    assert len(after) == len(set(after)) == n_embedded  # no clip already in the cache was embedded again
    recomputed = 0 if lost is None else int(lost[1])  # embedded before the kill, lost with it
    assert recomputed <= CHUNK and len(after) - len(at_kill) <= n_embedded
    assert not list(cache.rglob(".chunk_*.tmp"))


def test_two_runs_at_once_on_one_cache_give_the_outputs_of_one(
    uninterrupted, tiny_dataset, patch_encoder, tmp_path
):
    reference, n_embedded = uninterrupted
    cache = tmp_path / "cache"
    runs = [
        subprocess.Popen(
            run_command(tiny_dataset, patch_encoder, tmp_path / f"out{i}", cache),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for process in runs:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    for i in range(2):
        assert outputs(tmp_path / f"out{i}", cache) == reference
    rows = rows_in(cache)  # every chunk whole (np.load reads each); a clip may be embedded by both
    assert len(set(rows)) == n_embedded
    assert not list(cache.rglob(".chunk_*.tmp"))

    again = frozenasd_run(tiny_dataset, patch_encoder, tmp_path / "out2", cache)
    assert again.returncode == 0, again.stderr
    assert rows_in(cache) == rows  # the third run found every clip in the cache
    assert outputs(tmp_path / "out2", cache) == reference
