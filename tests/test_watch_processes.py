"""`frozenasd watch` as a process: killed with SIGKILL mid-run and restarted, stopped with SIGTERM, or run
twice at once on one folder and history: every recording is scored exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import _machine_sound

from frozenasd.monitor.watch import TEST_DELAY_ENV

N_FILES = 12


@pytest.fixture(scope="module")
def fitted(logmel_fan_fitted) -> Path:
    return logmel_fan_fitted


@pytest.fixture
def inbox(tmp_path) -> Path:
    folder = tmp_path / "inbox"
    for i in range(N_FILES):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        sf.write(sub / f"rec_{i:03d}.wav", _machine_sound(np.random.default_rng(i), i == 5), 16000)
    return folder


def watch(folder: Path, fitted: Path, history: Path, *extra: str, delay: float = 0.0) -> subprocess.Popen:
    env = os.environ | {TEST_DELAY_ENV: str(delay)}
    command = [sys.executable, "-m", "frozenasd", "watch", str(folder), "--fitted", str(fitted)]
    command += ["--history", str(history), "--settle", "0", "--interval", "0.05", "--batch-size", "1", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def files_recorded(history: Path) -> Counter:
    """How many rows each file has, read with a connection of its own."""
    if not history.exists():
        return Counter()
    db = sqlite3.connect(history, timeout=30)
    try:
        return Counter(f for (f,) in db.execute("SELECT file FROM scores"))
    except sqlite3.OperationalError:  # the table is not there yet
        return Counter()
    finally:
        db.close()


def wait_for_rows(history: Path, n: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sum(files_recorded(history).values()) < n:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the watcher recorded too little in time"
        time.sleep(0.05)


def all_files(folder: Path) -> set[str]:
    return {os.path.abspath(p) for p in folder.rglob("*.wav")}


def test_killed_with_sigkill_mid_run_and_restarted_every_file_is_scored_exactly_once(fitted, inbox, tmp_path):
    history = tmp_path / "h.sqlite"
    for kill_after in (3, 7):  # killed twice, each time while scoring (each file waits before its row)
        process = watch(inbox, fitted, history, delay=0.4)
        wait_for_rows(history, kill_after, process)
        time.sleep(0.2)  # inside the next file's wait between its score and its row
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        process.communicate()
        assert kill_after <= sum(files_recorded(history).values()) < N_FILES
    before = sum(files_recorded(history).values())
    restarted = watch(inbox, fitted, history, "--once")
    out, err = restarted.communicate(timeout=120)
    assert restarted.returncode in (0, 1), err  # 1 when rec_005 (anomalous) is among the rest
    counts = files_recorded(history)
    assert set(counts) == all_files(inbox) and set(counts.values()) == {1}, counts
    assert len(out.splitlines()) == N_FILES - before and f"{N_FILES - before} scored" in err  # the rest only
    rows = sqlite3.connect(history).execute("SELECT count(*) FROM scores WHERE score IS NOT NULL").fetchone()
    assert rows == (N_FILES,)


def test_sigterm_stops_after_the_recording_in_progress(fitted, inbox, tmp_path):
    history = tmp_path / "h.sqlite"
    process = watch(inbox, fitted, history, delay=0.5)
    wait_for_rows(history, 2, process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    counts = files_recorded(history)
    assert set(counts.values()) == {1} and 2 <= len(counts) < N_FILES
    # every recording it reported is in the history, and nothing else: it stopped between two files
    printed = {line.split()[-1] for line in out.splitlines()}
    assert printed == set(counts)
    assert f"{len(counts)} scored" in err and "stopping after the recordings in progress" in err


def test_two_watchers_at_once_on_one_folder_and_history_record_each_file_once(fitted, inbox, tmp_path):
    history = tmp_path / "h.sqlite"
    processes = [watch(inbox, fitted, history, "--once", delay=0.05) for _ in range(2)]
    printed = []
    for p in processes:
        out, err = p.communicate(timeout=120)
        assert p.returncode in (0, 1), err
        printed += [line.split()[-1] for line in out.splitlines()]
    counts = files_recorded(history)
    assert set(counts) == all_files(inbox) and set(counts.values()) == {1}, counts
    assert sorted(printed) == sorted(counts)  # each reports only the recordings it wrote
