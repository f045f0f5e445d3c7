"""Where the clips are embedded: ``--executor local|ray`` and the Ray options, for every command that embeds.

``run``, ``fit``, ``score`` and ``embed`` take the same options; :func:`opened_executor` turns them into
the executor the embedding stage uses (``None``: the local one) and, for Ray, stops the local cluster
it started once the command is done.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from frozenasd.embed.executor import Executor
from frozenasd.errors import FrozenASDError

__all__ = ["EXECUTORS", "add_executor_options", "opened_executor"]

EXECUTORS = ("local", "ray")
RAY_ONLY = ("--ray-address", "--workers", "--threads-per-worker")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    """``--executor``, ``--ray-address``, ``--workers`` and ``--threads-per-worker``."""
    group = parser.add_argument_group("scaling out (see docs/scaling.md)")
    group.add_argument(
        "--executor",
        default="local",
        choices=EXECUTORS,
        help="where clips are embedded: local (this process, default) or ray (a Ray cluster: tasks "
        "read the files and compute the frontend, actors run the encoder; the same cache and results; "
        "needs pip install 'frozenasd[ray]')",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        metavar="auto|HOST:PORT",
        help="the Ray cluster to use: auto (the one `ray start` runs on this machine) or HOST:PORT of its "
        "head; default: start a local Ray for this command. Every node must read the audio and model "
        "files at the same paths",
    )
    group.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="N",
        help="encoder actors on the cluster (default: its CPUs divided by --threads-per-worker)",
    )
    group.add_argument(
        "--threads-per-worker",
        type=_positive,
        default=None,
        metavar="T",
        help="CPUs each encoder actor holds, and its ONNX Runtime threads (default: 1)",
    )


@contextmanager
def opened_executor(args: argparse.Namespace) -> Iterator[Executor | None]:
    """The executor the options choose (``None``: the local one); a local Ray it starts is stopped after."""
    if args.executor != "ray":
        given = [
            option for option in RAY_ONLY if getattr(args, option[2:].replace("-", "_"), None) is not None
        ]
        if given:
            raise FrozenASDError(f"{', '.join(given)}: only with --executor ray")
        yield None
        return
    from frozenasd.embed.ray_executor import RayExecutor

    executor = RayExecutor(args.ray_address, args.workers, args.threads_per_worker or 1)
    try:
        yield executor
    finally:
        executor.close()
