"""Accuracy harness: every encoder × embedding × detector on a DCASE-layout folder → the DCASE table.

    python benchmarks/accuracy.py --data DIR --encoder aisfx --encoder yamnet \
        --detector kmeansNN --detector knn --out accuracy.md [--benchmarks-md BENCHMARKS.md]

``--encoder`` takes an ONNX file or the name of a packaged backbone (``frozenasd backbones``).
Embeddings are computed once per encoder and embedding choice (they are cached), so adding a
detector costs seconds. Writes a markdown file with one official-score table, and one DCASE table
(AUC source/target, pAUC, hmean per machine) per combination; with ``--benchmarks-md`` the same
section replaces the "Accuracy" section of that file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import machine, write_section

from frozenasd.backbones import resolve_model
from frozenasd.dcase import discover_machines, list_clips
from frozenasd.evaluate import format_table
from frozenasd.metrics import official_score
from frozenasd.run import RunSettings, run

SECTION = "## Accuracy (benchmarks/accuracy.py)"
EMBEDDINGS = {
    "mean": {"output": None, "pooling": "mean"},
    "cls": {"output": "cls", "pooling": "none"},
    "bands": {"output": None, "pooling": "bands"},
}


def embedding_settings(name: str) -> dict:
    """The run settings of an embedding choice: a named one, or ``layer_<i>[-bands]``."""
    if name in EMBEDDINGS:
        return EMBEDDINGS[name]
    layer, _, pooling = name.partition("-")
    return {"output": layer, "pooling": pooling or "mean"}


def embedding_choice(text: str) -> str:
    if text in EMBEDDINGS or re.fullmatch(r"layer_\d+(-bands)?", text):
        return text
    raise argparse.ArgumentTypeError(
        f"unknown embedding {text!r}: choose {', '.join(EMBEDDINGS)}, layer_<i> or layer_<i>-bands"
    )


def describe_data(root: Path, machines: list[str]) -> str:
    """What each machine holds, e.g. ``per machine 290 source + 10 target training clips, 200 test``."""
    import soundfile as sf

    counts = set()
    seconds = set()
    for name in machines:
        train, test = list_clips(root, name, "train"), list_clips(root, name, "test")
        source = sum(c.domain == "source" for c in train)
        counts.add((source, len(train) - source, len(test)))
        for clip in (train + test)[:3]:
            try:
                seconds.add(round(sf.info(str(clip.path)).duration, 1))
            except RuntimeError:  # an unreadable clip: the runs skip it, the description does too
                pass
    length = f" of {seconds.pop():g} s" if len(seconds) == 1 else ""
    if len(counts) == 1:
        source, target, test = counts.pop()
        return (
            f"{', '.join(machines)}: per machine {source} source + {target} target training clips and "
            f"{test} test clips{length}"
        )
    return f"{', '.join(machines)}{length}"


def is_eat(encoder: Path) -> bool:
    from frozenasd.encoders.onnx_runtime import ONNXFeatureExtractor

    return ONNXFeatureExtractor(encoder).fit().frontend_.get("name") == "eat_fbank"


def machine_line(name: str, value: float | None) -> str:
    return f"{name}={100 * value:.2f}" if value is not None else f"{name}=n/a"


def evaluate_combination(
    data: Path, encoder: Path, embedding: str, detector: str, out: Path, cache: Path, threads: int | None
) -> dict:
    settings = RunSettings(
        model_path=encoder,
        detector=detector,
        progress=False,
        cache_dir=cache,
        num_threads=threads,
        **embedding_settings(embedding),
    )
    with contextlib.redirect_stderr(io.StringIO()):
        results = run(data, None, out, settings)
    failed = {m: r for m, r in results.items() if isinstance(r, str)}
    if failed:
        raise SystemExit(f"{encoder.name}/{embedding}/{detector}: machines failed: {failed}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, type=Path, help="DCASE-layout dataset root")
    parser.add_argument("--encoder", action="append", required=True, help="ONNX file or backbone name")
    parser.add_argument(
        "--embedding",
        action="append",
        type=embedding_choice,
        default=None,
        help=f"embedding choice(s): {', '.join(EMBEDDINGS)}, or layer_<i> / layer_<i>-bands for an "
        "export with `--layers` (default: mean)",
    )
    parser.add_argument(
        "--detector", action="append", default=None, help="detector name(s) (default: kmeansNN)"
    )
    parser.add_argument("--out", type=Path, default=Path("accuracy.md"), help="markdown file to write")
    parser.add_argument("--work", type=Path, default=None, help="folder for run outputs (default: temporary)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    parser.add_argument(
        "--note", action="append", default=None, help="a sentence to add to the section's notes"
    )
    parser.add_argument(
        "--benchmarks-md",
        type=Path,
        default=None,
        help="also put the tables into this file's 'Accuracy' section",
    )
    args = parser.parse_args(argv)
    embeddings = args.embedding or ["mean"]
    detectors = args.detector or ["kmeansNN"]
    work = args.work or Path(tempfile.mkdtemp(prefix="frozenasd-accuracy-"))
    cache = work / "cache"
    machines = discover_machines(args.data)
    data_description = describe_data(args.data, machines)  # before the runs: a problem shows at once
    with_eat = any(is_eat(resolve_model(spec)) for spec in args.encoder)

    summary = [
        "| encoder | embedding | detector | official score % | " + " | ".join(machines) + " |",
        "|---|---|---|---:|" + "---:|" * len(machines),
    ]
    details: list[str] = []
    for spec in args.encoder:
        encoder = resolve_model(spec)
        for embedding in embeddings:
            for detector in detectors:
                start = time.perf_counter()
                out = work / f"{encoder.stem}-{embedding}-{detector}"
                results = evaluate_combination(
                    args.data, encoder, embedding, detector, out, cache, args.threads
                )
                seconds = time.perf_counter() - start
                score = official_score(results)
                summary.append(
                    f"| {spec} | {embedding} | {detector} | {100 * score:.2f} | "
                    + " | ".join(f"{100 * results[m]['hmean']:.2f}" for m in machines)
                    + " |"
                )
                details += [
                    f"#### {spec} · {embedding} · {detector} ({seconds:.1f} s)",
                    "",
                    format_table({"machines": results, "official_score": score}),
                ]
                print(
                    f"{spec} {embedding} {detector}: official score {100 * score:.2f} % ({seconds:.1f} s)",
                    flush=True,
                )

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    host = machine()
    command = "python benchmarks/accuracy.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    notes = [
        f"Data: `{args.data}`, {data_description}. Measured {stamp} on {host['cpu']}, "
        f"{host['cores']} cores. Command: `{command}`.",
        "Seconds in brackets: the first detector of each encoder and embedding includes embedding every "
        "clip; the others re-score from the embedding cache.",
    ]
    if not with_eat:
        notes.append(
            "The embedding choices `cls`, `bands` and block outputs (`layer_<i>`) are EAT's; no EAT encoder "
            "is in this run, so it has no EAT rows: `--encoder eat-base.onnx --embedding mean --embedding "
            "cls --embedding bands` adds them, and `--embedding layer_5` a block's output with an export "
            "made with `--layers 5`."
        )
    notes += args.note or []
    body = "\n".join(
        [
            SECTION,
            "",
            *notes,
            "Per machine: hmean of AUC (source), AUC (target) and pAUC, in %.",
            "",
            *summary,
            "",
            *details,
        ]
    )
    args.out.write_text(body + "\n")
    print(f"written {args.out}")
    if args.benchmarks_md:
        write_section(body, SECTION, args.benchmarks_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
