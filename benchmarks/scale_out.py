"""Clips per second of the embedding stage: the local executor against Ray with 1 and 2 workers.

    python benchmarks/scale_out.py [--clips 96] [--rounds 3] [--model aisfx] [--benchmarks-md BENCHMARKS.md]

Writes ``--clips`` synthetic 10-second fan clips (16 kHz WAV), starts a local Ray cluster with every
core of this machine, and in each round embeds all the clips (no cache) with, in turn: the local
executor (ONNX Runtime with every core), Ray with one worker holding every core, and Ray with one worker
per core. Equal CPUs throughout. Reported, as medians over rounds: clips/s over the whole job; Ray's
steady rate, the clips of every block after the first over the time from the first block's arrival to
the last's, which leaves out the fixed cost of a job (planning it, starting the actors, each importing
frozenasd and opening the model); that fixed cost; and Ray's cost per clip beyond the local executor's.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import machine, publish

from frozenasd.embed.executor import CHUNK, LocalExecutor

SECTION = "## Scaling out on Ray (benchmarks/scale_out.py)"


def embed_seconds(executor, extractor, clips) -> float:
    start = time.perf_counter()
    embedded = executor.embed(extractor, clips, progress=False, warn=lambda _: None)
    seconds = time.perf_counter() - start
    if len(embedded.clips) != len(clips):
        raise RuntimeError(f"{type(executor).__name__} embedded {len(embedded.clips)} of {len(clips)} clips")
    return seconds


def measure(model: str, clips: list, rounds: int, cores: int) -> tuple[dict, float]:
    """Per configuration and round: (seconds for all the clips, Ray's steady clips/s, first block's s)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local Ray on 127.0.0.1 only
    import ray

    from frozenasd.backbones import prepare
    from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
    from frozenasd.embed.ray_executor import RayExecutor

    start = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    started = time.perf_counter() - start
    extractor = ONNXFeatureExtractor(prepare(model), num_threads=cores).fit()
    configurations = {
        f"local, {cores} threads": LocalExecutor(),
        f"Ray, 1 worker × {cores} threads": RayExecutor(workers=1, threads_per_worker=cores),
        f"Ray, {cores} workers × 1 thread": RayExecutor(workers=cores, threads_per_worker=1),
    }
    embed_seconds(LocalExecutor(), extractor, clips[:4])  # warm-up: page cache, model, not timed
    times: dict[str, list[tuple[float, float | None, float | None]]] = {k: [] for k in configurations}
    try:
        for number in range(rounds):
            for name, executor in configurations.items():
                seconds = embed_seconds(executor, extractor, clips)
                run = getattr(executor, "last_run", None)
                steady = run.steady_rate() if run else None
                first = run.arrivals[0][0] if run and run.arrivals else None
                times[name].append((seconds, steady, first))
                print(f"round {number + 1}: {name}: {seconds:.1f} s, steady {steady}", file=sys.stderr)
    finally:
        ray.shutdown()
    return times, started


def report(
    times: dict, started: float, n: int, rounds: int, model: str, cores: int, load: tuple[float, float]
) -> str:
    host = machine()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    local_name = next(iter(times))
    local_seconds = statistics.median(t for t, _, _ in times[local_name])
    local_rate = n / local_seconds
    lines = [
        SECTION,
        "",
        f"Measured {stamp} on {host['cpu']}, {host['cores']} cores, Python {host['python']}: "
        f"`python benchmarks/scale_out.py --clips {n} --rounds {rounds} --model {model}`. {n} synthetic "
        f"10-second fan clips (16 kHz WAV) embedded with {model} (mean pooling), no cache; a local Ray "
        f"cluster of {cores} CPUs on this machine (started in {started:.1f} s, not counted). Each round "
        f"runs every configuration in turn, all with {cores} CPUs; medians over {rounds} rounds. The "
        f"machine was shared with other work meanwhile (load average {load[0]:.1f} before, {load[1]:.1f} "
        "after, on these cores): compare the rows, measured side by side, rather than the absolute times; "
        "under such load a configuration with more runnable threads also gets a larger share of the CPUs.",
        "",
        f"| executor | s for {n} clips | clips/s | of local | steady clips/s | of local "
        "| fixed cost per job, s | cost per clip beyond local, ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in times.items():
        seconds = statistics.median(t for t, _, _ in rows)
        rate = n / seconds
        if name == local_name:
            lines.append(f"| {name} | {seconds:.1f} | {rate:.2f} | 100% | {rate:.2f} | 100% | – | – |")
            continue
        steady = statistics.median(s for _, s, _ in rows if s is not None)
        first = statistics.median(f for _, _, f in rows if f is not None)
        # the first block's time beyond what the local executor takes for as many clips
        fixed = first - CHUNK / local_rate
        per_clip = 1000 * (1 / steady - 1 / local_rate)
        lines.append(
            f"| {name} | {seconds:.1f} | {rate:.2f} | {rate / local_rate:.0%} | {steady:.2f} "
            f"| {steady / local_rate:.0%} | {fixed:.1f} | {per_clip:+.1f} |"
        )
    ranges = "; ".join(f"{name} {min(r)[0]:.1f}–{max(r)[0]:.1f} s" for name, r in times.items())
    lines += [
        "",
        f"Range over rounds for all {n} clips: {ranges}.",
        "Steady: the clips of every result block after the first over the time from the first block's "
        "arrival to the last's, the rate of a long job. Fixed cost: the first block's arrival beyond the "
        f"local executor's time for {CHUNK} clips (planning the job, starting the actors, each importing "
        "frozenasd and opening the model). Cost per clip: 1 / steady rate − 1 / local rate (moving "
        "features and embeddings through Ray's object store, scheduling; negative when Ray is faster, "
        "the frontend running in tasks beside the encoder rather than before it). docs/scaling.md turns "
        "these into cluster sizes.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=96, help="clips to embed (default: 96)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default: 3)")
    parser.add_argument(
        "--model", default="aisfx", help="packaged backbone: aisfx or yamnet (default: aisfx)"
    )
    parser.add_argument("--benchmarks-md", type=Path, default=None, help="also write the section here")
    args = parser.parse_args(argv)
    if args.clips < 3 * CHUNK:
        parser.error(f"--clips must be at least {3 * CHUNK} (three result blocks)")
    from frozenasd.data.dcase import list_clips
    from frozenasd.data.synth import synthesize

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="frozenasd-scale-out-") as tmp:
        synthesize(tmp, ["fan"], n_train_source=args.clips, n_train_target=0, n_test_per_cell=0)
        clips = list_clips(tmp, "fan", "train")[: args.clips]
        before = os.getloadavg()[0]
        times, started = measure(args.model, clips, args.rounds, cores)
        load = (before, os.getloadavg()[0])
    text = report(times, started, len(clips), args.rounds, args.model, cores, load)
    publish(text, SECTION, args.benchmarks_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
