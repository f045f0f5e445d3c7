"""Reading clips ahead of the encoder: embedding time with 0, 1 and 2 reader threads, side by side.

    python benchmarks/read_ahead.py [--clips 32] [--rounds 5] [--benchmarks-md BENCHMARKS.md]

Writes ``--clips`` synthetic 10-second fan clips (16 kHz WAV, as DCASE data) and embeds them all with
the local executor (no cache) for aiSFX, YAMNet and the no-model log-mel view, with 0 reader threads
(each clip read and featurised in turn with the encoder calls), 1 and 2 (the default on 2 cores:
:func:`frozenasd.embed.executor.default_read_threads`). Each round times every setting once, in
turn; the table gives the medians over rounds and the speed-up against 0 readers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import measured_now, publish

from frozenasd.backbones import resolve_model
from frozenasd.data.dcase import list_clips
from frozenasd.data.synth import synthesize
from frozenasd.embed import LocalExecutor, Views
from frozenasd.embed.executor import default_read_threads
from frozenasd.settings import RunSettings

SECTION = "## Reading clips ahead of the encoder (benchmarks/read_ahead.py)"
VIEWS = ("aisfx", "yamnet", "logmel")
READERS = (0, 1, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=32, help="clips embedded per run (default: 32)")
    parser.add_argument("--rounds", type=int, default=5, help="measurement rounds (default: 5)")
    parser.add_argument("--benchmarks-md", type=Path, default=None, help="write the section to this file")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="frozenasd-read-ahead-"))
    synthesize(
        work, ["fan"], seed=0, n_train_source=args.clips, n_train_target=0, n_test_per_cell=1,
        duration_s=10.0, progress=False,
    )  # fmt: skip
    clips = list_clips(work, "fan", "train")[: args.clips]
    extractors = {}
    for view in VIEWS:
        settings = RunSettings(model_path=resolve_model(view), progress=False)
        extractors[view] = Views.open(settings).extractors[0]
        LocalExecutor(read_threads=0).embed(extractors[view], clips[:4], progress=False)  # warm-up
    times: dict[tuple[str, int], list[float]] = {(v, n): [] for v in VIEWS for n in READERS}
    for _ in range(args.rounds):
        for view in VIEWS:
            for readers in READERS:
                start = time.perf_counter()
                LocalExecutor(read_threads=readers).embed(extractors[view], clips, progress=False)
                times[(view, readers)].append((time.perf_counter() - start) / len(clips))

    rows = []
    for view in VIEWS:
        alone = statistics.median(times[(view, 0)])
        cells = []
        for readers in READERS:
            ms = 1000 * statistics.median(times[(view, readers)])
            cells.append(f"{ms:.1f}" + ("" if readers == 0 else f" ({1000 * alone / ms:.2f}×)"))
        rows.append(f"| {view} | " + " | ".join(cells) + " |")
    setup = (
        f"{measured_now()}: "
        f"`python benchmarks/read_ahead.py --clips {args.clips} --rounds {args.rounds}`. "
        f"{args.clips} synthetic 10-second 16 kHz fan clips embedded with the local executor (no cache, "
        "ONNX Runtime on every core, BLAS on one thread), with 0, 1 or 2 threads reading and "
        "featurising the next clips while the encoder runs (the default here: "
        f"{default_read_threads()}). Milliseconds per clip, medians over {args.rounds} rounds that "
        "take the settings in turn; in brackets the speed-up against 0 readers."
    )
    header = "| view | 0 readers ms/clip | 1 reader | 2 readers |\n|---|---:|---:|---:|"
    text = "\n\n".join([SECTION, setup, header + "\n" + "\n".join(rows)]) + "\n"
    publish(text, SECTION, args.benchmarks_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
