"""Watching a folder: real files, a real SQLite history, the log-mel view fitted on tiny synthetic data.

Each recording is scored once it is completely written, exactly once across restarts, with the scores
`ScoringModel.score` gives; undecodable files are recorded once as skipped; times come from file names.
The subprocess tests (SIGKILL, SIGTERM, two watchers at once) are in test_watch_processes.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import _machine_sound

from frozenasd import ScoringModel
from frozenasd.cli import main
from frozenasd.errors import LayoutError
from frozenasd.monitor import History
from frozenasd.monitor.history import parse_iso
from frozenasd.monitor.watch import Watcher, name_time, path_text


@pytest.fixture(scope="module")
def fitted(logmel_fan_fitted) -> Path:
    return logmel_fan_fitted


@pytest.fixture(scope="module")
def model(fitted) -> ScoringModel:
    return ScoringModel.load(fitted)


def write_clip(path: Path, seed: int, anomalous: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _machine_sound(np.random.default_rng(seed), anomalous), 16000)
    return path


def recordings(folder: Path, n: int, start: int = 0, anomalous: tuple[int, ...] = ()) -> list[Path]:
    return [write_clip(folder / f"clip_{i:03d}.wav", i, i in anomalous) for i in range(start, start + n)]


def watcher(folder: Path, model: ScoringModel, history: History, fitted: Path, **kw) -> Watcher:
    kw = {"settle": 0.0, "interval": 0.05, "out": lambda line: None} | kw
    return Watcher(folder, model, history, model_file=fitted, **kw)


def by_file(history: History) -> dict[str, list]:
    rows: dict[str, list] = {}
    for r in history.rows():
        rows.setdefault(r.file, []).append(r)
    return rows


@pytest.mark.parametrize(
    "name, expected",
    [
        ("fan_20261201T101500.wav", "2026-12-01T10:15:00"),
        ("2026-12-01_10-15-00.flac", "2026-12-01T10:15:00"),
        ("rec_20261201_101500_mic2.wav", "2026-12-01T10:15:00"),
        ("2026-12-01T10:15:00Z.wav", "2026-12-01T10:15:00"),
        ("2026-12-01 10.15.00.wav", "2026-12-01T10:15:00"),
        ("20261201-101500.250.wav", "2026-12-01T10:15:00.250000"),
        ("20261201T111500+0100.wav", "2026-12-01T10:15:00"),
        ("2026-12-01T05:15:00-05:00.wav", "2026-12-01T10:15:00"),
        ("20261201_101500-0001.wav", "2026-12-01T10:15:00"),  # a counter, not an offset
        ("20261301_101500_20261201_101500.wav", "2026-12-01T10:15:00"),  # month 13: the next one
    ],
)
def test_the_time_recorded_is_read_from_the_name(name, expected):
    assert name_time(name) == datetime.fromisoformat(expected).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "name",
    ["section_00_source_test_normal_0001.wav", "20261201.wav", "2026-12-01_10-15.wav", "120261201T101500.wav",
     "2026-12-01_10:15-00.wav", "18001201T101500.wav", "20261201T256000.wav"],
)  # fmt: skip
def test_names_without_a_time_give_none(name):
    assert name_time(name) is None


def test_each_recording_is_scored_as_the_model_scores_it_with_its_time_and_identity(model, fitted, tmp_path):
    folder = tmp_path / "inbox"
    files = recordings(folder, 5, anomalous=(1,))
    files.append(write_clip(folder / "line2" / "fan_20261201T101500.wav", 40, anomalous=True))
    files.append(write_clip(folder / "line2" / "deeper" / "2026-12-02_08-00-00.flac", 41))
    (folder / "notes.txt").write_text("not audio")
    (folder / ".hidden.wav").write_bytes(b"never looked at")
    os.utime(files[0], ns=(1_700_000_000_123_000_000,) * 2)
    lines: list[str] = []
    with History(tmp_path / "h.sqlite") as h:
        w = watcher(folder, model, h, fitted, batch_size=3, out=lines.append)
        summary = w.run(once=True)
        rows = {Path(r.file): r for r in h.rows()}
    assert summary.scored == 7 and summary.anomalous == 2 and summary.skipped == 0
    assert set(rows) == {f.absolute() for f in files}
    reference = model.score(files)
    for path, score, decision in zip(reference.paths, reference.scores, reference.decisions, strict=True):
        r = rows[path.absolute()]
        assert r.score == pytest.approx(float(score), rel=1e-9, abs=1e-12)
        assert r.anomalous == bool(decision) and r.threshold == model.threshold and r.machine == "fan"
        assert r.identity == hashlib.sha256(path.read_bytes()).hexdigest() and r.size == path.stat().st_size
        assert r.model == "fan.npz" and r.model_sha256 == hashlib.sha256(fitted.read_bytes()).hexdigest()
        assert r.source == "watch" and r.reason is None
    assert rows[files[0].absolute()].recorded_at == "2023-11-14T22:13:20.123Z"  # the mtime
    assert rows[files[5].absolute()].recorded_at == "2026-12-01T10:15:00.000Z"  # the names
    assert rows[files[6].absolute()].recorded_at == "2026-12-02T08:00:00.000Z"
    assert len(lines) == 7 and {line.split()[1] for line in lines} == {"normal", "ANOMALY"}


def test_exactly_once_across_restarts_copies_and_touches(model, fitted, tmp_path):
    folder, history = tmp_path / "inbox", tmp_path / "h.sqlite"
    first = recordings(folder, 4)
    with History(history) as h:
        assert watcher(folder, model, h, fitted).run(once=True).scored == 4
    later = recordings(folder, 3, start=4)
    with History(history) as h:  # a restart: only the new files are scored
        summary = watcher(folder, model, h, fitted).run(once=True)
        assert summary.scored == 3 and summary.known == 0
    with History(history) as h:  # nothing new
        assert watcher(folder, model, h, fitted).run(once=True).scored == 0

    shutil.copyfile(first[0], folder / "copy_of_0.wav")  # the same recording under another name
    os.utime(first[1], ns=(time.time_ns(),) * 2)  # touched: same content
    with History(history) as h:
        summary = watcher(folder, model, h, fitted).run(once=True)
        assert summary.scored == 0 and summary.known == 2
        rows = by_file(h)
    assert sorted(rows) == sorted(path_text(f) for f in first + later)
    assert all(len(r) == 1 for r in rows.values())

    write_clip(first[2], 99, anomalous=True)  # rewritten: new content is a new recording
    with History(history) as h:
        summary = watcher(folder, model, h, fitted).run(once=True)
        assert summary.scored == 1 and summary.anomalous == 1
        assert [r.anomalous for r in by_file(h)[path_text(first[2])]] == [False, True]


def test_a_growing_file_is_not_scored_until_it_has_settled(model, fitted, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    whole = tmp_path / "whole.wav"
    write_clip(whole, 7)
    data = whole.read_bytes()
    growing = folder / "growing.wav"
    with History(tmp_path / "h.sqlite") as h:
        w = watcher(folder, model, h, fitted, settle=0.5)
        for end in range(0, len(data), len(data) // 6):
            with open(growing, "ab") as f:  # a recorder writes the next part
                f.write(data[end : end + len(data) // 6])
            w.poll()
            time.sleep(0.3)  # less than the settling time
            w.poll()
            assert h.rows() == [], f"scored while being written ({growing.stat().st_size} bytes)"
        assert growing.read_bytes() == data
        deadline = time.monotonic() + 10
        while not h.rows() and time.monotonic() < deadline:
            w.poll()
            time.sleep(0.1)
        (r,) = h.rows()
    assert r.size == len(data) and r.score == pytest.approx(float(model.score(whole).scores[0]), rel=1e-9)


def test_an_undecodable_file_is_recorded_once_as_skipped_and_the_watcher_goes_on(model, fitted, tmp_path):
    folder = tmp_path / "inbox"
    good = recordings(folder, 3)
    (folder / "broken.wav").write_bytes(b"RIFF" + os.urandom(300))
    (folder / "empty.flac").write_bytes(b"")
    cut = folder / "cut.wav"
    cut.write_bytes(good[0].read_bytes()[:5000])  # truncated: its header promises more
    with History(tmp_path / "h.sqlite") as h:
        w = watcher(folder, model, h, fitted, batch_size=2)
        summary = w.run(once=True)
        assert summary.scored == 3 and summary.skipped == 3
        for _ in range(3):  # polled again: not tried again
            assert w.poll() == 0
        assert watcher(folder, model, h, fitted).run(once=True).skipped == 0  # nor after a restart
        rows = by_file(h)
    assert all(len(r) == 1 for r in rows.values()) and len(rows) == 6
    skipped = {Path(f).name: r[0] for f, r in rows.items() if r[0].skipped}
    assert sorted(skipped) == ["broken.wav", "cut.wav", "empty.flac"]
    assert "empty file" in skipped["empty.flac"].reason and "truncated" in skipped["cut.wav"].reason
    assert all(r.score is None and r.anomalous is None and r.reason for r in skipped.values())


def test_watch_once_from_the_command_line(fitted, tmp_path, capsys):
    folder = tmp_path / "inbox"
    recordings(folder, 3)
    history = tmp_path / "h.sqlite"
    common = ["--fitted", str(fitted), "--history", str(history), "--settle", "0", "--interval", "0.05"]
    assert main(["watch", str(folder), *common, "--once"]) == 0
    out, err = capsys.readouterr()
    assert out.count("normal") == 3 and "3 scored (0 anomalous), 0 skipped" in err
    write_clip(folder / "bad_20261201T101500.wav", 3, anomalous=True)
    assert main(["watch", str(folder), *common, "--once", "--machine", "fan-line-2"]) == 1  # anomalous
    assert "ANOMALY  2026-12-01T10:15:00.000Z" in capsys.readouterr().out
    with History(history) as h:
        assert h.machines() == ["fan", "fan-line-2"] and len(h.rows(machine="fan-line-2")) == 4
        assert parse_iso(h.rows(machine="fan")[0].scored_at) <= datetime.now(timezone.utc)
    assert main(["watch", str(tmp_path / "nowhere"), *common, "--once"]) == 2
    assert "nowhere: no such folder to watch" in capsys.readouterr().err
    with pytest.raises(LayoutError), History(history) as h:
        Watcher(tmp_path / "nowhere", ScoringModel.load(fitted), h)


def test_a_recording_another_watcher_wrote_meanwhile_is_not_written_or_reported_again(
    model, fitted, tmp_path, monkeypatch
):
    folder = tmp_path / "inbox"
    recordings(folder, 3)
    lines: list[str] = []
    with History(tmp_path / "h.sqlite") as one, History(tmp_path / "h.sqlite") as other:
        late = watcher(folder, model, other, fitted, out=lines.append)
        assert watcher(folder, model, one, fitted).run(once=True).scored == 3
        # the other looked before the first wrote: it scores them too, and its rows are left out
        monkeypatch.setattr(other, "seen", lambda identity, machine=None: False)
        monkeypatch.setattr(other, "file_state", lambda machine, file: None)
        summary = late.run(once=True)
        assert summary.scored == 0 and summary.known == 3 and lines == []
        assert len(one.rows()) == 3
