"""Subcommands that monitor: watch (score a folder's new recordings into a history) and history."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from frozenasd.cli.options import positive_int
from frozenasd.cli.vocabulary import HelpFormatter, add_aliases, examples
from frozenasd.errors import LayoutError

NAME_TIMES = """\
time recorded: read from the file name when it carries a date and time, for example
  fan_20261201T101500.wav  2026-12-01_10-15-00.flac  rec_20261201_101500.wav  2026-12-01T10:15:00Z.wav
  (the date as YYYYMMDD or YYYY-MM-DD; then T, _, - or a space; the time as HHMMSS or with - : or .
  between; optional fractions of a second and a UTC offset Z, +01:00 or -0500; without one, UTC);
  otherwise the file's modification time"""

WATCH_EXIT = """\
exit status: 0 stopped (Ctrl-C, SIGTERM) or, with --once, nothing anomalous; 1 with --once, at least
  one recording anomalous; 2 an error"""


def seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


@contextmanager
def _stop_on_signals(stop: Any) -> Iterator[None]:
    """SIGTERM and a first Ctrl-C call ``stop`` (the batch in progress finishes); a second Ctrl-C
    interrupts at once."""

    def first(signum: int, frame: object) -> None:
        print("stopping after the recordings in progress (Ctrl-C again to interrupt)", file=sys.stderr)
        stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    old = {s: signal.signal(s, first) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def cmd_watch(args: argparse.Namespace) -> int:
    from frozenasd.monitor.history import History
    from frozenasd.monitor.watch import Watcher, describe
    from frozenasd.scoring.model import ScoringModel

    if not os.path.isdir(args.folder):  # before the model is loaded
        raise LayoutError(f"{args.folder}: no such folder to watch")
    model = ScoringModel.load(args.fitted, args.model, batch_size=args.batch_size, num_threads=args.threads)
    with History(args.history) as history:
        watcher = Watcher(
            args.folder,
            model,
            history,
            machine=args.machine,
            model_file=args.fitted,
            settle=args.settle,
            interval=args.interval,
            batch_size=args.batch_size,
        )
        print(describe(watcher), file=sys.stderr, flush=True)
        with _stop_on_signals(watcher.stop):
            summary = watcher.run(once=args.once)
    print(
        f"{summary.scored} scored ({summary.anomalous} anomalous), {summary.skipped} skipped, "
        f"{summary.known} already in the history",
        file=sys.stderr,
    )
    return 1 if args.once and summary.anomalous else 0


def cmd_history(args: argparse.Namespace) -> int:
    from frozenasd.monitor.trend import write_trend

    text = write_trend(args.history, args.out, machine=args.machine, window=args.window)
    print(text, end="")
    if args.out:
        print(f"written {args.out}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="score each new recording in a folder once it is written, exactly once, into a history",
        description="Scan a folder and its subfolders for audio files and score each new one, once its "
        "size and modification time have not changed for --settle seconds, with a model saved by "
        "`frozenasd fit` (loaded once). Each recording gets one row in a SQLite history, written with its "
        "score in one transaction: after a restart or a crash nothing is scored twice or left out. A file "
        "that cannot be decoded gets one row with the reason and no score.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "frozenasd watch /data/recorder --fitted fan.npz --history history.sqlite",
            "frozenasd watch /data/recorder --fitted fan.npz --history history.sqlite --once",
            before=NAME_TIMES + "\n\n" + WATCH_EXIT,
        ),
    )
    p.add_argument("folder", help="the folder the recorder writes to (subfolders are watched too)")
    p.add_argument("--fitted", required=True, help="the file written by `frozenasd fit`")
    p.add_argument(
        "--history", default="history.sqlite", help="the SQLite score history (default: history.sqlite)"
    )
    p.add_argument(
        "--machine", default=None, help="the machine name rows are recorded under (default: the model's)"
    )
    p.add_argument(
        "--interval", type=seconds, default=2.0, help="seconds between scans of the folder (default: 2)"
    )
    p.add_argument(
        "--settle",
        type=seconds,
        default=5.0,
        help="seconds a file's size and modification time must stay the same before it is scored; longer "
        "than the recorder's longest pause in writing (default: 5)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="score the files there now (waiting for them to settle), then exit",
    )
    p.add_argument(
        "--model",
        default=None,
        help="the ONNX encoder a single-view model was fitted with, when it has moved (a file or a "
        "backbone name)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="recordings scored and recorded together (default: 8)",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="ONNX Runtime threads")
    add_aliases(p)
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser(
        "history",
        help="each machine's scores over time from a score history: summary, plot or HTML page",
        description="Without --out, a few lines per machine (counts, last score, trend); with --out, "
        "also the scores over time with the threshold, a rolling median and the anomalous recordings "
        "marked, as a PNG or a self-contained HTML page.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "frozenasd history history.sqlite",
            "frozenasd history history.sqlite --machine fan --out trend.html",
        ),
    )
    p.add_argument("history", help="the SQLite score history written by `frozenasd watch`")
    p.add_argument("--machine", default=None, help="one machine (default: every machine in the history)")
    p.add_argument("-o", "--out", default=None, help="write the plot: a .png file or a .html page")
    p.add_argument(
        "--window", type=positive_int, default=20, help="recordings in the rolling median (default: 20)"
    )
    add_aliases(p)
    p.set_defaults(func=cmd_history)
