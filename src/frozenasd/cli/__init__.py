"""The ``frozenasd`` command: each subcommand composes library functions.

The library never imports this package; the seed's ``main.py`` reuses its shared options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from frozenasd import __version__
from frozenasd.cli import embedding, monitor, resources, scoring, serve
from frozenasd.cli.options import add_run_options, print_summary, settings_from
from frozenasd.cli.vocabulary import HelpFormatter, add_aliases, examples
from frozenasd.errors import FrozenASDError

__all__ = [
    "HelpFormatter",
    "add_aliases",
    "add_run_options",
    "build_parser",
    "examples",
    "main",
    "print_summary",
    "settings_from",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frozenasd",
        description="Anomalous-sound detection with a frozen pre-trained audio encoder. "
        "`frozenasd COMMAND --help` describes a command and ends with an example.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "frozenasd demo --quick",
            "frozenasd run --data dataset --out results",
            "frozenasd fit --data dataset --machine fan --out fan.npz",
            "frozenasd score new_recordings/ --fitted fan.npz",
            "frozenasd watch /data/recorder --fitted fan.npz --history history.sqlite",
        ),
    )
    parser.add_argument("--version", action="version", version=f"frozenasd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    scoring.add_commands(sub)
    monitor.add_commands(sub)
    embedding.add_commands(sub)
    resources.add_commands(sub)
    serve.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FrozenASDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
