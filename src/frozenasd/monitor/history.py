"""The score history: one row per recording scored (or skipped), in a SQLite file.

The file is opened in WAL mode with a busy timeout, so several processes (a watcher, a service, a
reader drawing the trend) can use it at once: readers never wait, writers take turns. Every
:meth:`History.append` is one transaction (all its rows or none), which is what lets the watcher use
the history as its ledger: a recording's row is written in the same transaction as its score, so a
process killed at any point has recorded a recording completely or not at all.

A recording's ``identity`` is the SHA-256 of its bytes. A machine holds each identity once (a unique
index); appending a row whose (machine, identity) is already there leaves the old row and counts as
not inserted. Rows without an identity (a caller that has none) are never deduplicated.

Times are ISO 8601 in UTC with milliseconds (``2026-12-01T10:15:00.000Z``), one width, so that they
sort and compare as text. The file has a ``schema_version`` table; a file written by a newer version
is refused rather than misread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from frozenasd.errors import FrozenASDError

__all__ = ["SCHEMA_VERSION", "History", "HistoryRow", "iso_utc", "parse_iso"]

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    id INTEGER PRIMARY KEY,
    recorded_at TEXT NOT NULL,      -- when the recording was made (ISO 8601, UTC)
    machine TEXT NOT NULL,
    file TEXT NOT NULL,             -- the recording's path (or an upload's name)
    size INTEGER,                   -- bytes
    mtime_ns INTEGER,               -- the file's modification time when scored
    identity TEXT,                  -- SHA-256 of the recording's bytes
    score REAL,                     -- NULL: skipped, see reason
    threshold REAL,
    anomalous INTEGER,              -- 1 above the threshold, 0 not, NULL skipped
    reason TEXT,                    -- why a skipped recording could not be scored
    scored_at TEXT NOT NULL,        -- when the row was written (ISO 8601, UTC)
    model TEXT,                     -- the fitted model's file name
    model_sha256 TEXT,              -- and its SHA-256
    source TEXT                     -- what wrote the row: watch, serve, ...
);
CREATE UNIQUE INDEX IF NOT EXISTS scores_identity ON scores (machine, identity);
CREATE INDEX IF NOT EXISTS scores_time ON scores (machine, recorded_at);
CREATE INDEX IF NOT EXISTS scores_file ON scores (machine, file);
"""


def iso_utc(when: datetime | float) -> str:
    """``when`` (a datetime, naive ones taken as UTC, or POSIX seconds) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(float(when), timezone.utc)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> datetime:
    """A time written by :func:`iso_utc` (or any ISO 8601 time; naive ones are UTC) as an aware datetime."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class HistoryRow:
    """One recording: scored (``score``, ``anomalous``) or skipped (``score`` None, ``reason``)."""

    recorded_at: str
    machine: str
    file: str
    score: float | None
    threshold: float | None
    anomalous: bool | None
    scored_at: str
    identity: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    reason: str | None = None
    model: str | None = None
    model_sha256: str | None = None
    source: str | None = None

    @property
    def skipped(self) -> bool:
        return self.score is None


_COLUMNS = tuple(f.name for f in fields(HistoryRow))


class History:
    """A score history file, created with its schema when missing (``create=False``: an error instead).

    One connection, guarded by a lock, so threads of one process may share the object.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise FrozenASDError(f"{self.path}: no such score history (written by `frozenasd watch`)")
        if self.path.parent and not self.path.parent.is_dir():
            raise FrozenASDError(f"{self.path}: its folder does not exist")
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = self._journal_mode_wal()
            self._db.execute("PRAGMA synchronous = FULL")
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                versions = [v for (v,) in self._db.execute("SELECT version FROM schema_version")]
                if not versions:
                    self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                elif max(versions) > SCHEMA_VERSION:
                    raise FrozenASDError(
                        f"{self.path}: a score history of schema version {max(versions)}, written by a "
                        f"newer frozenasd (this one reads version {SCHEMA_VERSION})"
                    )
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise FrozenASDError(f"{self.path}: not a usable score history ({exc})") from exc
        if mode.lower() != "wal":
            self.close()
            raise FrozenASDError(f"{self.path}: cannot use write-ahead logging here (journal mode {mode})")

    def _journal_mode_wal(self) -> str:
        """Switch to write-ahead logging; the mode now in force.

        Two processes creating the same new file at once can find it locked while the other switches,
        without SQLite waiting the busy timeout: such a refusal is retried until the timeout.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return str(self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # -------------------------------------------------------------------------------------- write
    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` (the write lock up front, so two writers never deadlock) … ``COMMIT``."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def append(self, rows: Iterable[HistoryRow]) -> list[HistoryRow]:
        """Write ``rows`` in one transaction; returns those written (a recording a machine already
        holds, by identity, is left as it was and not returned)."""
        marks = ", ".join("?" for _ in _COLUMNS)
        sql = f"INSERT INTO scores ({', '.join(_COLUMNS)}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        written = []
        with self._lock, self._guard("write to"), self._transaction():
            for row in rows:
                values = list(astuple(row))
                values[_COLUMNS.index("anomalous")] = None if row.anomalous is None else int(row.anomalous)
                if self._db.execute(sql, values).rowcount:
                    written.append(row)
        return written

    # --------------------------------------------------------------------------------------- read
    def seen(self, identity: str, machine: str | None = None) -> bool:
        """Whether a recording with this identity is in the history (``machine``: for that machine)."""
        sql, args = "SELECT 1 FROM scores WHERE identity = ?", [identity]
        if machine is not None:
            sql, args = sql + " AND machine = ?", [*args, machine]
        with self._lock, self._guard("read"):
            return self._db.execute(sql + " LIMIT 1", args).fetchone() is not None

    def rows(self, machine: str | None = None, since: datetime | str | None = None) -> list[HistoryRow]:
        """The rows, in the order recorded (time recorded, then written); ``machine`` and ``since`` (a
        time recorded, inclusive) narrow them."""
        where, args = [], []
        if machine is not None:
            where.append("machine = ?")
            args.append(machine)
        if since is not None:
            where.append("recorded_at >= ?")
            args.append(iso_utc(since if isinstance(since, datetime) else parse_iso(since)))
        sql = f"SELECT {', '.join(_COLUMNS)} FROM scores"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY recorded_at, id"
        with self._lock, self._guard("read"):
            found = self._db.execute(sql, args).fetchall()
        anomalous = _COLUMNS.index("anomalous")
        return [
            HistoryRow(
                *r[:anomalous], None if r[anomalous] is None else bool(r[anomalous]), *r[anomalous + 1 :]
            )
            for r in found
        ]

    def machines(self) -> list[str]:
        """The machines with rows, sorted."""
        with self._lock, self._guard("read"):
            return [m for (m,) in self._db.execute("SELECT DISTINCT machine FROM scores ORDER BY machine")]

    def file_state(self, machine: str, file: str) -> tuple[int | None, int | None] | None:
        """The size and modification time ``file`` had when last recorded for ``machine``; None if never."""
        with self._lock, self._guard("read"):
            found = self._db.execute(
                "SELECT size, mtime_ns FROM scores WHERE machine = ? AND file = ? ORDER BY id DESC LIMIT 1",
                (machine, file),
            ).fetchone()
        return None if found is None else (found[0], found[1])

    # ---------------------------------------------------------------------------------- plumbing
    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise FrozenASDError(f"{self.path}: cannot {what} the score history ({exc})") from exc

    def _close_quietly(self) -> None:
        try:
            self._db.close()
        except (AttributeError, sqlite3.Error):
            pass

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by the last one to close)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"History({str(self.path)!r})"
