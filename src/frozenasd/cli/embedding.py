"""``frozenasd embed``: fill the embedding cache for a data set, so that runs and fits read it later."""

from __future__ import annotations

import argparse
from pathlib import Path

from frozenasd.cli.executors import add_executor_options, opened_executor
from frozenasd.cli.options import (
    MODEL_HELP,
    add_data_root_options,
    add_fusion_options,
    add_run_options,
    settings_from,
)
from frozenasd.cli.vocabulary import HelpFormatter, add_aliases, examples
from frozenasd.errors import FrozenASDError

SPLITS = ("train", "test")


def cmd_embed(args: argparse.Namespace) -> int:
    from frozenasd.data.dcase import discover_machines, list_clips
    from frozenasd.embed import Views

    settings = settings_from(args)
    if settings.cache_dir is None:
        raise FrozenASDError("embed only fills the embedding cache: drop --no-cache")
    data = Path(args.data)
    machines = args.machine or discover_machines(data)
    with opened_executor(args) as executor:
        views = Views.open(settings, executor)
        for machine in machines:
            for split in SPLITS:
                if not (data / machine / split).is_dir() and (data / machine).is_dir():
                    continue  # a machine with only one split: the other has nothing to embed
                clips = list_clips(data, machine, split)
                embedded, _ = views.embed(clips, progress=settings.progress, desc=f"{machine} {split}")
                print(
                    f"{machine:>12} {split:<5}  {len(embedded.clips)} of {len(clips)} clips embedded"
                    + (f", {len(embedded.skipped)} skipped" if embedded.skipped else "")
                )
    where = ", ".join(str(c.folder) for c in views.caches if c is not None)
    print(f"cache: {where}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="embed every clip of a data set into the cache only (for later runs and fits)",
        description="Embed the training and test clips of each machine with the views a run with the "
        "same options would use, and store them in the embedding cache; clips already there are not "
        "embedded again. Fits nothing and writes no outputs.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "frozenasd embed --data dataset --model aisfx",
            "frozenasd embed --data dataset --executor ray --ray-address auto --workers 8",
        ),
    )
    add_data_root_options(p, "embed")
    p.add_argument("--model", default=None, help=MODEL_HELP + "; without it, the views of --preset/--fuse")
    add_run_options(p)
    add_fusion_options(p)
    add_executor_options(p)
    add_aliases(p)
    p.set_defaults(func=cmd_embed)
