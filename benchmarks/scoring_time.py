"""Time to score a 10-second clip with a fitted model: the default fusion against single views.

    python benchmarks/scoring_time.py [--clips 32] [--runs 5] [--benchmarks-md BENCHMARKS.md]

Writes synthetic 10-second fan clips (16 kHz WAV, as DCASE data): 40 normal ones to fit on and
``--clips`` to score. Fits each configuration once (untimed), then times ``frozenasd score``'s work
(``fitted.score_files``: loading the fitted file and the encoders, reading, frontends, encoders,
scoring; no cache) over the ``--clips`` clips, the configurations taking turns in each of ``--runs``
rounds so that they share the machine's moods. Reports the median time per clip and its ratio to
the single aiSFX view (the default before views were fused).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import measured_now, publish

from frozenasd.backbones import prepare
from frozenasd.data.synth import synthesize
from frozenasd.settings import RunSettings
from frozenasd.views import PRESETS
from frozenasd.workflows.fit_score import fit_files, score_files

SECTION = "## Scoring time per clip (benchmarks/scoring_time.py)"
BASELINE = "aisfx · mean · kmeansNN"


def configurations() -> dict[str, RunSettings]:
    """The configurations timed, by name: the baseline, single views, and every preset without EAT."""
    common = {"progress": False, "cache_dir": None, "num_threads": 2}
    configs = {
        BASELINE: RunSettings(model_path=prepare("aisfx"), detector="kmeansNN", **common),
        "logmel · max · mahalanobis": RunSettings(
            model_path=prepare("logmel"), pooling="max", detector="mahalanobis", **common
        ),
    }
    for name, preset in PRESETS.items():
        if any(b.model.startswith("eat") for b in preset.branches):
            continue  # the EAT weights are not on every machine
        configs[f"preset {name}"] = RunSettings(
            branches=preset.branches, fusion_rule=preset.rule, preset=name, **common
        )
    return configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=32, help="clips scored per round (default: 32)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (default: 5)")
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the clips (default: a temporary one)"
    )
    parser.add_argument("--benchmarks-md", type=Path, default=None, help="write the section to this file")
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="frozenasd-scoring-"))
    synthesize(
        work / "data",
        ["fan"],
        seed=0,
        n_train_source=40,
        n_train_target=0,
        n_test_per_cell=max(1, args.clips // 4),
        duration_s=10.0,
        progress=False,
    )
    train = sorted((work / "data" / "fan" / "train").glob("*.wav"))
    test = sorted((work / "data" / "fan" / "test").glob("*.wav"))[: args.clips]
    configs = configurations()
    fitted = {}
    for i, (name, settings) in enumerate(configs.items()):
        fitted[name] = work / f"fitted-{i}.npz"
        fit_files(train, settings, fitted[name], machine="fan")
        print(f"fitted {name}", file=sys.stderr)

    def encoder(name: str) -> Path | None:
        return None if configs[name].branches else configs[name].model_path

    for name in configs:  # warm-up: first loads of each model's files and libraries
        score_files(fitted[name], encoder(name), test[:2], num_threads=2)
    per_clip: dict[str, list[float]] = {name: [] for name in configs}
    for run in range(args.runs):
        for name in configs:
            start = time.perf_counter()
            scored = score_files(fitted[name], encoder(name), test, num_threads=2)
            per_clip[name].append((time.perf_counter() - start) / len(test))
            assert len(scored.scores) == len(test), scored.skipped
        print(f"round {run + 1}/{args.runs} done", file=sys.stderr)

    base = statistics.median(per_clip[BASELINE])
    lines = [
        SECTION,
        "",
        f"{measured_now()}: "
        f"`python benchmarks/scoring_time.py --clips {args.clips} --runs {args.runs}`. Each round scores "
        f"the same {len(test)} synthetic 10-second fan clips with each fitted model in turn "
        "(`frozenasd score`'s work: loading the fitted file and encoders, reading, frontends, encoders, "
        "scoring; no cache; 2 threads). Median over rounds of the time per clip, and its ratio to the "
        f"single aiSFX view ({BASELINE}, the default before views were fused):",
        "",
        "| configuration | ms per clip (median) | range over rounds | ratio to aiSFX alone |",
        "|---|---:|---:|---:|",
    ]
    for name, times in per_clip.items():
        median = statistics.median(times)
        lines.append(
            f"| {name} | {1000 * median:.1f} | {1000 * min(times):.1f}–{1000 * max(times):.1f} | "
            f"{median / base:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    publish(text, SECTION, args.benchmarks_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
