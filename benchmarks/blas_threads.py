"""Scoring with numpy's BLAS on one thread (as frozenasd does) against BLAS on every core, side by side.

    python benchmarks/blas_threads.py [--clips 32] [--rounds 3] [--benchmarks-md BENCHMARKS.md]

Writes synthetic 10-second fan clips (16 kHz WAV): 40 normal ones to fit on and ``--clips`` to score.
Fits aiSFX and YAMNet (mean pooling, Mahalanobis) once, untimed. Then times ``ScoringModel.score``
one call per clip and all clips in one call, with BLAS on one thread while embedding and scoring
(:func:`frozenasd.cores.one_blas_thread`, as shipped) and with that scope made a no-op (BLAS on every
core, its library's default). Each round measures both settings in turn; the table gives medians.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

from _common import measured_now, publish, score_times

import frozenasd.embed.executor as executor_module
import frozenasd.scoring.model as model_module
from frozenasd import ScoringModel
from frozenasd.data.synth import synthesize

SECTION = "## numpy's BLAS threads while scoring (benchmarks/blas_threads.py)"
BACKBONES = ("aisfx", "yamnet")
SETTINGS = ("one BLAS thread", "BLAS on every core")


@contextlib.contextmanager
def every_core():
    """``one_blas_thread`` made a no-op in the modules that use it while clips are embedded and scored."""
    shipped = executor_module.one_blas_thread, model_module.one_blas_thread
    executor_module.one_blas_thread = model_module.one_blas_thread = contextlib.nullcontext
    try:
        yield
    finally:
        executor_module.one_blas_thread, model_module.one_blas_thread = shipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=32, help="clips scored (default: 32)")
    parser.add_argument("--rounds", type=int, default=3, help="measurement rounds (default: 3)")
    parser.add_argument("--benchmarks-md", type=Path, default=None, help="write the section to this file")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="frozenasd-blas-"))
    synthesize(
        work, ["fan"], seed=0, n_train_source=40, n_train_target=0,
        n_test_per_cell=max(1, args.clips // 4), duration_s=10.0, progress=False,
    )  # fmt: skip
    train = sorted((work / "fan" / "train").glob("*.wav"))
    clips = sorted((work / "fan" / "test").glob("*.wav"))[: args.clips]
    models = {}
    for backbone in BACKBONES:
        fitted = ScoringModel.fit(train, backbone, machine="fan", detector="mahalanobis", progress=False)
        fitted.save(work / f"{backbone}.npz")
        models[backbone] = ScoringModel.load(work / f"{backbone}.npz")
        models[backbone].score(clips[:2])  # warm-up
    times: dict[tuple[str, str], list[dict[str, float]]] = {(b, s): [] for b in BACKBONES for s in SETTINGS}
    for _ in range(args.rounds):
        for backbone in BACKBONES:
            times[(backbone, SETTINGS[0])].append(score_times(models[backbone], clips))
            with every_core():
                times[(backbone, SETTINGS[1])].append(score_times(models[backbone], clips))

    rows = []
    for backbone in BACKBONES:
        ms = {
            (s, k): 1000 * statistics.median(r[k] for r in times[(backbone, s)])
            for s in SETTINGS
            for k in ("one", "all")
        }
        rows.append(
            f"| {backbone} | {ms[(SETTINGS[0], 'one')]:.1f} | {ms[(SETTINGS[1], 'one')]:.1f} | "
            f"{ms[(SETTINGS[1], 'one')] / ms[(SETTINGS[0], 'one')]:.2f}× | {ms[(SETTINGS[0], 'all')]:.1f} | "
            f"{ms[(SETTINGS[1], 'all')]:.1f} | {ms[(SETTINGS[1], 'all')] / ms[(SETTINGS[0], 'all')]:.2f}× |"
        )
    setup = (
        f"{measured_now()}: `python benchmarks/blas_threads.py --clips {args.clips} --rounds {args.rounds}`. "
        f"{len(clips)} synthetic 10-second 16 kHz fan clips scored by an aiSFX and a YAMNet model (mean "
        "pooling, Mahalanobis), ONNX Runtime on every core; numpy's BLAS on one thread while clips are "
        "embedded and scored (as shipped) or on every core (its default). Milliseconds per clip, medians "
        f"over {args.rounds} rounds that take the two settings in turn; the slow-down is every core's time "
        "over one thread's."
    )
    header = (
        "| model | one call per clip: one BLAS thread | every core | slow-down "
        "| all clips in one call: one BLAS thread | every core | slow-down |\n"
        "|---|---:|---:|---:|---:|---:|---:|"
    )
    publish(
        "\n\n".join([SECTION, setup, header + "\n" + "\n".join(rows)]) + "\n", SECTION, args.benchmarks_md
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
