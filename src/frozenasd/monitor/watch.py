"""Watch a folder: score each new recording once it is completely written, exactly once, into a history.

The folder and its subfolders are polled every ``interval`` seconds for audio files
(:func:`frozenasd.data.dcase.is_audio_file`: an audio extension, not hidden). A file is *settled* once
its size and modification time have stayed the same for ``settle`` seconds of watching; it is then
hashed (SHA-256, its identity) and scored, a batch at a time, with a model loaded once.

Exactly once: the history is the ledger. A recording's row is written in the transaction that records
its score, and a recording already in the history for this machine (same identity) is not scored
again, whether it is met again after a restart, a crash at any point, or under another name. A file
whose size and modification time are those recorded for it is not even read again. A file that
changes after it was recorded is new content: it is scored again as a new recording.

A settled file that cannot be decoded is recorded once as skipped, with the reason (a row without a
score), and the watcher goes on; it is tried again only if its content changes. A file that
disappears before it is scored is forgotten.

The time recorded is read from the file name when it carries one (:func:`name_time`), else it is the
file's modification time.

``FROZENASD_WATCH_TEST_DELAY`` (seconds; for tests only) makes the watcher wait that long between
scoring a batch and recording it, so that a test can kill it in between.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from frozenasd.data.dcase import Clip, is_audio_file
from frozenasd.errors import LayoutError
from frozenasd.hashing import file_sha256
from frozenasd.monitor.history import History, HistoryRow, iso_utc
from frozenasd.scoring.model import ScoringModel
from frozenasd.text import printable

__all__ = ["TEST_DELAY_ENV", "WatchSummary", "Watcher", "name_time"]

TEST_DELAY_ENV = "FROZENASD_WATCH_TEST_DELAY"
SOURCE = "watch"

# A date and a time of day in a file name: 20261201T101500, 20261201_101500, 2026-12-01_10-15-00,
# 2026-12-01T10:15:00, 2026-12-01 10.15.00 …, optionally with fractions of a second and a UTC
# offset (Z, +01:00, -0500). The separators within the date, and within the time, are the same.
_NAME_TIME = re.compile(
    r"(?<!\d)(?P<year>\d{4})(?P<dsep>-?)(?P<month>\d{2})(?P=dsep)(?P<day>\d{2})"
    r"[T_ -](?P<hour>\d{2})(?P<tsep>[-:.]?)(?P<minute>\d{2})(?P=tsep)(?P<second>\d{2})"
    r"(?:[.,](?P<fraction>\d{1,6}))?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?(?!\d)",
    re.ASCII,
)


def name_time(name: str) -> datetime | None:
    """The time a file name carries (see :data:`_NAME_TIME`), as an aware UTC datetime; None if none.

    A time without an offset is taken as UTC; a ``Z`` or an offset (``+01:00``, ``-0500``, whole
    quarters of an hour up to 14 h) is honoured. The first valid date and time in the name counts;
    a match that is no date (month 13) is ignored, as are years outside 1970-2199.
    """
    for m in _NAME_TIME.finditer(name):
        if not 1970 <= int(m["year"]) <= 2199:
            continue
        try:
            when = datetime(
                int(m["year"]),
                int(m["month"]),
                int(m["day"]),
                int(m["hour"]),
                int(m["minute"]),
                int(m["second"]),
                int((m["fraction"] or "0").ljust(6, "0")),
                tzinfo=timezone.utc,
            )
        except ValueError:
            continue
        zone = m["zone"]
        if zone and zone != "Z":
            hours, minutes = int(zone[1:3]), int(zone[-2:])
            if hours <= 14 and minutes % 15 == 0:  # else a counter after the time, not an offset
                offset = timedelta(hours=hours, minutes=minutes)
                when = when - offset if zone[0] == "+" else when + offset
        return when
    return None


def path_text(path: Path) -> str:
    """The absolute path as the history writes it (bytes that are not UTF-8 as ``\\xNN``)."""
    return printable(os.path.abspath(path))


@dataclass
class WatchSummary:
    """What a watcher did since it started."""

    scored: int = 0
    anomalous: int = 0
    skipped: int = 0
    known: int = 0  # settled files already in the history (met again, or the same content)


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time the file was first seen with this size and mtime


class Watcher:
    """Scores the settled new recordings under ``folder`` with ``model`` into ``history``.

    ``machine``: the name rows are recorded under (default: the model's). ``model_file``: the fitted
    file, named (with its SHA-256) in every row. ``out``: where each recording's line goes.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        model: ScoringModel,
        history: History,
        *,
        machine: str | None = None,
        model_file: str | os.PathLike | None = None,
        settle: float = 5.0,
        interval: float = 2.0,
        batch_size: int = 8,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise LayoutError(f"{self.folder}: no such folder to watch")
        self.model, self.history = model, history
        self.machine = machine or model.machine or "recordings"
        self.model_name = Path(model_file).name if model_file else None
        self.model_sha256 = file_sha256(model_file) if model_file else None
        self.settle, self.interval, self.batch_size = float(settle), float(interval), int(batch_size)
        self.out = out or (lambda line: print(line, flush=True))
        self.summary = WatchSummary()
        self._stop = threading.Event()
        self._delay = float(os.environ.get(TEST_DELAY_ENV) or 0)
        # the files present that are handled: their size and mtime when recorded (read from the
        # history at first sight, so a restart reads none of them again)
        self._done: dict[str, tuple[int | None, int | None]] = {}
        self._pending: dict[str, _Seen] = {}
        self._only: set[str] | None = None  # with `once`: the files of the first scan

    # ------------------------------------------------------------------------------------ control
    def stop(self) -> None:
        """Stop after the batch in progress (safe to call from a signal handler or another thread)."""
        self._stop.set()

    def run(self, *, once: bool = False) -> WatchSummary:
        """Poll until :meth:`stop`; ``once``: until every file found by the first scan is handled."""
        while not self._stop.is_set():
            self.poll(first=once and self._only is None)
            if once and not self._pending:
                break
            self._stop.wait(self.interval)
        return self.summary

    # ------------------------------------------------------------------------------------ polling
    def scan(self) -> list[Path]:
        """The audio files under the folder, sorted (a subfolder that cannot be read is passed over)."""
        found = []
        for root, dirs, files in os.walk(self.folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [p for p in (Path(root) / f for f in files) if is_audio_file(p)]
        return sorted(found)

    def poll(self, *, first: bool = False) -> int:
        """One scan: note new and changed files, score those settled; returns how many were recorded.

        ``first``: keep to the files this scan finds from now on (``run(once=True)``).
        """
        now = time.monotonic()
        ready: list[tuple[Path, str, int, int]] = []
        present = set()
        for path in self.scan():
            key = path_text(path)
            if self._only is not None and key not in self._only:
                continue
            try:
                st = path.stat()
            except OSError:  # gone since the scan, or a link that leads nowhere: met at the next one
                continue
            present.add(key)
            if key not in self._done and key not in self._pending:
                recorded = self.history.file_state(self.machine, key)
                if recorded is not None:
                    self._done[key] = recorded
            if self._done.get(key) == (st.st_size, st.st_mtime_ns):
                continue
            seen = self._pending.get(key)
            if seen is None or (seen.size, seen.mtime_ns) != (st.st_size, st.st_mtime_ns):
                seen = self._pending[key] = _Seen(st.st_size, st.st_mtime_ns, now)
            if now - seen.since >= self.settle or self.settle <= 0:
                ready.append((path, key, st.st_size, st.st_mtime_ns))
        if first:
            self._only = present
        for gone in (self._pending, self._done):  # files moved away or deleted are forgotten
            for key in set(gone) - present:
                del gone[key]
        recorded = 0
        for start in range(0, len(ready), self.batch_size):
            if self._stop.is_set():
                break
            recorded += self._handle(ready[start : start + self.batch_size])
        return recorded

    def _handle(self, batch: list[tuple[Path, str, int, int]]) -> int:
        """Hash, score and record one batch of settled files (one transaction)."""
        new: list[tuple[Path, str, int, int, str]] = []
        identities = set()
        for path, key, size, mtime in batch:
            try:
                identity = file_sha256(path)
                st = path.stat()
            except OSError:
                self._pending.pop(key, None)
                continue
            if (st.st_size, st.st_mtime_ns) != (size, mtime):  # written to again: not settled after all
                self._pending[key] = _Seen(st.st_size, st.st_mtime_ns, time.monotonic())
                continue
            if identity in identities or self.history.seen(identity, self.machine):
                self._finish(key, size, mtime)
                self.summary.known += 1
                continue
            identities.add(identity)
            new.append((path, key, size, mtime, identity))
        if not new:
            return 0
        clips = [Clip.from_path(path, self.machine, "score") for path, *_ in new]
        scored = self.model.score_clips(clips)
        scores = {
            str(p): (float(s), bool(d))
            for p, s, d in zip(scored.paths, scored.scores, scored.decisions, strict=True)
        }
        reasons = {str(p): reason for p, reason in scored.skipped}
        if self._delay:
            time.sleep(self._delay)
        now = iso_utc(datetime.now(timezone.utc))
        rows: list[HistoryRow] = []
        for path, key, size, mtime, identity in new:
            if str(path) not in scores and not path.exists():  # gone while being scored
                self._pending.pop(key, None)
                continue
            score, anomalous = scores.get(str(path), (None, None))
            rows.append(
                HistoryRow(
                    recorded_at=iso_utc(name_time(path.name) or mtime / 1e9),
                    machine=self.machine,
                    file=key,
                    score=score,
                    threshold=scored.threshold,
                    anomalous=anomalous,
                    scored_at=now,
                    identity=identity,
                    size=size,
                    mtime_ns=mtime,
                    reason=None if score is not None else reasons.get(str(path), "not scored"),
                    model=self.model_name,
                    model_sha256=self.model_sha256,
                    source=SOURCE,
                )
            )
        written = self.history.append(rows)
        for row in rows:
            self._finish(row.file, row.size, row.mtime_ns)
            if row in written:
                self._report(row)
            else:  # another process recorded it meanwhile
                self.summary.known += 1
        return len(written)

    def _finish(self, key: str, size: int | None, mtime: int | None) -> None:
        self._done[key] = (size, mtime)
        self._pending.pop(key, None)

    def _report(self, row: HistoryRow) -> None:
        if row.score is None:
            self.summary.skipped += 1
            line = f"skipped            {row.recorded_at}  {row.file}: {row.reason}"
        else:
            self.summary.scored += 1
            self.summary.anomalous += bool(row.anomalous)
            decision = "ANOMALY" if row.anomalous else "normal "
            line = f"{row.score:.6f}  {decision}  {row.recorded_at}  {row.file}"
        self.out(line)


def describe(watcher: Watcher) -> str:
    """The line a watcher starts with."""
    return (
        f"watching {watcher.folder} for {watcher.machine} recordings (every {watcher.interval:g} s; each "
        f"scored once unchanged for {watcher.settle:g} s); threshold {watcher.model.threshold:.6f}; "
        f"history {watcher.history.path}"
    )
