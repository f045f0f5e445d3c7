"""The score history: a real SQLite file in WAL mode, appends all-or-nothing, one row per recording and
machine, two processes writing at once; the trend drawn from it (PNG, HTML page, text summary)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from frozenasd.cli import main
from frozenasd.errors import FrozenASDError
from frozenasd.monitor import History, HistoryRow
from frozenasd.monitor.history import SCHEMA_VERSION, iso_utc, parse_iso
from frozenasd.monitor.trend import load_series, rolling_median, summary_text, write_trend

START = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def row(i: int, machine: str = "fan", score: float | None = 0.5, **kw) -> HistoryRow:
    values = {
        "recorded_at": iso_utc(START + timedelta(minutes=i)),
        "machine": machine,
        "file": f"/rec/{machine}_{i:04d}.wav",
        "score": score,
        "threshold": 1.0,
        "anomalous": None if score is None else score > 1.0,
        "scored_at": iso_utc(datetime.now(timezone.utc)),
        "identity": f"{machine}-{i}",
        "source": "test",
    }
    return HistoryRow(**(values | kw))


def test_a_new_history_is_a_wal_sqlite_file_with_a_schema_version(tmp_path):
    path = tmp_path / "h.sqlite"
    with History(path) as h:
        assert h.machines() == [] and h.rows() == []
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    db.close()
    History(path).close()  # opening again adds no second version row
    assert sqlite3.connect(path).execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_rows_come_back_as_written_in_time_order_and_narrowed(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        written = [row(3), row(1, score=2.5), row(2, machine="pump"), row(4, score=None, reason="truncated")]
        assert h.append(written) == written
        assert h.machines() == ["fan", "pump"]
        fan = h.rows(machine="fan")
        assert [r.file for r in fan] == ["/rec/fan_0001.wav", "/rec/fan_0003.wav", "/rec/fan_0004.wav"]
        assert fan[0] == written[1] and fan[0].anomalous is True and fan[1].anomalous is False
        assert fan[2].skipped and fan[2].score is None and fan[2].anomalous is None
        assert fan[2].reason == "truncated"
        assert [r.file for r in h.rows(since=START + timedelta(minutes=3))] == [
            "/rec/fan_0003.wav",
            "/rec/fan_0004.wav",
        ]
        assert len(h.rows(since="2026-12-01T10:02:00Z")) == 3
        assert h.seen("fan-3") and h.seen("fan-3", "fan") and not h.seen("fan-3", "pump")
        assert not h.seen("fan-9")
        assert h.file_state("fan", "/rec/fan_0001.wav") == (None, None)
        assert h.file_state("pump", "/rec/fan_0001.wav") is None
        h.append([row(7, file="/rec/fan_0001.wav", size=10, mtime_ns=20)])
        assert h.file_state("fan", "/rec/fan_0001.wav") == (10, 20)  # the last row's


def test_a_recording_is_held_once_per_machine_and_unidentified_rows_are_never_merged(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        assert len(h.append([row(1), row(2)])) == 2
        third = row(3)
        assert h.append([row(1, score=9.0), third]) == [third]  # fan-1 is there already: left as it was
        assert len(h.append([row(1, machine="pump", identity="fan-1")])) == 1  # another machine's
        assert [r.score for r in h.rows(machine="fan")] == [0.5, 0.5, 0.5]
        assert len(h.append([row(5, identity=None), row(5, identity=None)])) == 2


def test_an_append_is_all_or_nothing(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        h.append([row(1)])
        bad = row(2, recorded_at=None)  # NOT NULL fails on the second row
        with pytest.raises(FrozenASDError, match="cannot write to the score history"):
            h.append([row(3), bad])
        assert [r.identity for r in h.rows()] == ["fan-1"]
        h.append([row(4)])  # and the history is usable afterwards
        assert len(h.rows()) == 2


def test_times_are_utc_text_of_one_width_that_sorts():
    assert iso_utc(datetime(2026, 12, 1, 11, 15, tzinfo=timezone(timedelta(hours=1)))) == (
        "2026-12-01T10:15:00.000Z"
    )
    assert iso_utc(datetime(2026, 12, 1, 10, 15)) == "2026-12-01T10:15:00.000Z"  # naive: UTC
    assert iso_utc(0.0015) == "1970-01-01T00:00:00.001Z"
    assert parse_iso("2026-12-01T10:15:00.000Z") == datetime(2026, 12, 1, 10, 15, tzinfo=timezone.utc)


def test_bad_files_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(FrozenASDError, match="junk.sqlite: not a usable score history"):
        History(junk)
    with pytest.raises(FrozenASDError, match="missing.sqlite: no such score history"):
        History(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()
    with pytest.raises(FrozenASDError, match="its folder does not exist"):
        History(tmp_path / "nowhere" / "h.sqlite")
    newer = tmp_path / "newer.sqlite"
    History(newer).close()
    db = sqlite3.connect(newer)
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(FrozenASDError, match="written by a newer frozenasd"):
        History(newer)


WRITER = """
import sys
from datetime import datetime, timezone
from frozenasd.monitor import History, HistoryRow
path, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with History(path) as h:
    for i in range(n):
        now = datetime.now(timezone.utc).isoformat()
        rows = [HistoryRow(now, "fan", f"{name}-{i}-{k}", 0.1, 1.0, False, now, identity=f"{name}-{i}-{k}")
                for k in range(3)]
        assert len(h.append(rows)) == 3
"""


def test_two_processes_append_at_once_and_every_row_is_kept(tmp_path):
    path = tmp_path / "h.sqlite"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, "60"], stderr=subprocess.PIPE, text=True
        )
        for name in ("a", "b")
    ]
    with History(path) as reader:  # a reader meanwhile is never refused
        while any(w.poll() is None for w in writers):
            reader.rows()
    for w in writers:
        assert w.wait(timeout=60) == 0, w.stderr.read()
    with History(path) as h:
        identities = [r.identity for r in h.rows()]
    assert len(identities) == len(set(identities)) == 2 * 60 * 3


OPENER = """
import sys, time
from frozenasd.monitor import History
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))  # every process opens the new file at the same moment
History(sys.argv[1]).close()
"""


def test_processes_creating_one_new_history_at_once_all_open_it(tmp_path):
    """Switching a new file to write-ahead logging can find it locked by another process doing the same."""
    for trial in range(8):
        path = tmp_path / f"h{trial}.sqlite"
        start = f"{time.time() + 1.0:.3f}"
        openers = [
            subprocess.Popen(
                [sys.executable, "-c", OPENER, str(path), start], stderr=subprocess.PIPE, text=True
            )
            for _ in range(4)
        ]
        for opener in openers:
            assert opener.wait(timeout=60) == 0, opener.stderr.read()
        with History(path) as h:
            assert h.rows() == []


def test_the_rolling_median_is_trailing():
    np.testing.assert_array_equal(rolling_median(np.array([1.0, 5, 3, 9, 0]), 3), [1, 3, 3, 5, 3])
    with pytest.raises(ValueError, match="window"):
        rolling_median(np.ones(3), 0)


@pytest.fixture
def history(tmp_path) -> Path:
    """Two machines: a steady fan with two anomalies, a pump drifting upwards, one skipped file."""
    rng = np.random.default_rng(0)
    rows = [row(i, score=float(0.4 + 0.01 * rng.standard_normal())) for i in range(60)]
    rows[30] = row(30, score=3.0)
    rows[50] = row(50, score=80.0)  # far above: the plot turns logarithmic above the threshold
    rows.append(row(61, score=None, reason="cannot be read as audio"))
    rows += [row(i, machine="pump", score=0.2 + 0.01 * i) for i in range(50)]
    path = tmp_path / "h.sqlite"
    with History(path) as h:
        h.append(rows)
    return path


def test_the_text_summary_counts_and_names_the_trend(history):
    with History(history) as h:
        series = load_series(h)
    text = summary_text(series, window=10)
    assert "fan: 60 scored, 2 anomalous (3.3%), 1 skipped" in text
    assert "pump: 50 scored, 0 anomalous (0.0%), 0 skipped" in text
    assert "from 2026-12-01 10:00:00 UTC to 2026-12-01 10:59:00 UTC" in text
    fan, pump = text.split("pump:")
    assert "trend: steady" in fan and "trend: rising" in pump
    assert "last: 0.690000 (normal; threshold 1.000000) pump_0049.wav" in pump
    assert "needs 200 scored recordings" in summary_text(series, window=100)
    assert summary_text({}) == "no recording in the history\n"


def test_the_trend_is_written_as_png_and_as_a_page_with_every_machine(history, tmp_path, capsys):
    assert main(["history", str(history), "--out", str(tmp_path / "t.png"), "--window", "5"]) == 0
    png = (tmp_path / "t.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    out = capsys.readouterr().out
    assert "fan: 60 scored" in out and "pump: 50 scored" in out and "written" in out

    assert main(["history", str(history), "-o", str(tmp_path / "t.html")]) == 0
    page = (tmp_path / "t.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count('src="data:image/png;base64,') == 2
    assert "<h2>fan</h2>" in page and "<h2>pump</h2>" in page and "--line:" in page  # the report's style
    assert "Most recent anomalous recordings (2 of 2)" in page and "/rec/fan_0050.wav" in page
    assert "Skipped recordings (1)" in page and "cannot be read as audio" in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained

    assert main(["history", str(history), "--machine", "pump", "-o", str(tmp_path / "p.html")]) == 0
    page = (tmp_path / "p.html").read_text()
    assert "<h2>pump</h2>" in page and "<h2>fan</h2>" not in page


def test_history_errors_name_the_problem(history, tmp_path, capsys):
    assert main(["history", str(history), "--machine", "valve"]) == 2
    assert "no recording of machine 'valve' (machines: fan, pump)" in capsys.readouterr().err
    assert main(["history", str(history), "-o", str(tmp_path / "t.svg")]) == 2
    assert "write the trend as .png or .html" in capsys.readouterr().err
    assert main(["history", str(tmp_path / "none.sqlite")]) == 2
    assert "no such score history" in capsys.readouterr().err
    with pytest.raises(FrozenASDError, match="window"):
        write_trend(history, window=0)


def test_an_empty_history_is_summarised_and_drawn(tmp_path, capsys):
    History(tmp_path / "h.sqlite").close()
    assert main(["history", str(tmp_path / "h.sqlite"), "-o", str(tmp_path / "e.html")]) == 0
    assert "no recording in the history" in capsys.readouterr().out
    assert "No recording in the history." in (tmp_path / "e.html").read_text()


def test_a_run_given_a_history_shows_its_trends_in_the_report(tiny_dataset, tmp_path, capsys):
    with History(tmp_path / "h.sqlite") as h:
        h.append([row(i, "pump", score=0.1 * i) for i in range(8)])
    common = ["run", "--data", str(tiny_dataset), "--machine", "fan", "--model", "logmel", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "with"), "--history", str(tmp_path / "h.sqlite")]) == 0
    page = (tmp_path / "with" / "report.html").read_text(encoding="utf-8")
    section = page[page.index('<section id="history">') :]
    assert '<a href="#history">Score history</a>' in page and ">pump</h2>" in section
    assert section.count("data:image/png;base64,") == 1 and "<dt>scored</dt><dd>8</dd>" in section
    assert main([*common, "--out", str(tmp_path / "without")]) == 0
    assert 'id="history"' not in (tmp_path / "without" / "report.html").read_text(encoding="utf-8")
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "bad"), "--history", str(tmp_path / "none.sqlite")]) == 2
    assert "none.sqlite: no such score history" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before anything was embedded or written
