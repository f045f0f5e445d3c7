"""Condition monitoring: a score history in SQLite, a watched folder scored as recordings arrive, and
the history's trend per machine.

``history`` is the ledger (one row per recording, written in the transaction that records its score);
``watch`` scans a folder and scores each new recording once it is completely written; ``trend`` draws
and summarises the history. ``history`` depends on nothing else of the package, so any program that
scores (the watcher, a service) can append to the same file.
"""

from __future__ import annotations

from frozenasd.monitor.history import History, HistoryRow

__all__ = ["History", "HistoryRow"]
