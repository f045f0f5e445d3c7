"""EAT-base encoder time per clip by how many 10-second clips one ONNX Runtime call holds.

    python benchmarks/batch_size.py [--clips 8] [--rounds 5] [--cpu-kind K] [--benchmarks-md BENCHMARKS.md]

Exports EAT-base with random weights (the real layout, full depth) and its int8 form as
``frozenasd export --int8`` makes it, then embeds ``--clips`` 10-second inputs in calls of 1, 2, 4 and
8 clips, each model on its own session with the extractor's options. Each round times every call size
once, the order alternating; the table gives the medians over rounds, per clip, the float32 ones also
as a fraction of the measured float32 matrix-product peak (``encoder.py``), and, last, the extractor
itself (``ONNXFeatureExtractor``, default ``batch_size``) on the same inputs, which on the CPU puts
at most ``CPU_CALL_VALUES`` input values (two 10-second clips) in a call. One section per CPU kind
(AVX-512 or AVX2, with or without VNNI, AMX); ``--cpu-kind K`` measures kind K on a CPU that has more
(``tests/cpu_kinds.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
from _common import (
    CPU_KIND_HELP,
    check_cpu_kind,
    cpu_kind,
    cpu_kinds,
    measured_now,
    publish,
    rerun_as,
)
from encoder import encoder_flops, matmul_rate, ort_session, time_interleaved

from frozenasd.embed.encoders.onnx_runtime import BATCH_VALUES, CPU_CALL_VALUES, ONNXFeatureExtractor

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Clips per encoder call, {kind} (benchmarks/batch_size.py)"
CALLS = (1, 2, 4, 8)


def export_models(folder: Path) -> dict[str, Path]:
    """fp32 and int8 EAT-base with random weights."""
    sys.path.insert(0, str(ROOT / "tests"))
    from eat_checkpoints import write_fairseq_pretrain

    from frozenasd.backbones.eat_export.export import export_onnx
    from frozenasd.backbones.quantise import quantise_file

    checkpoint = write_fairseq_pretrain(folder / "EAT-base_random_pt.pt", size="base").path
    fp32 = export_onnx(checkpoint, folder / "eat.onnx", verify=False)
    checkpoint.unlink()
    return {"fp32": fp32, "int8": quantise_file(fp32, folder / "eat-int8.onnx")}


def in_calls(session, x: np.ndarray, n: int) -> None:
    """Embed the inputs ``x`` ``n`` at a time."""
    for i in range(0, len(x), n):
        session.run(["emb"], {"input": x[i : i + n]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=8, help="10-s clips per timing (default: 8)")
    parser.add_argument("--rounds", type=int, default=5, help="measurement rounds (default: 5)")
    parser.add_argument("--cpu-kind", choices=cpu_kinds.KINDS, help=CPU_KIND_HELP)
    parser.add_argument("--benchmarks-md", type=Path, default=None, help="write the section to this file")
    args = parser.parse_args(argv)
    if args.cpu_kind and not cpu_kinds.active():
        return rerun_as(args.cpu_kind, __file__, argv)
    check_cpu_kind()
    threads = os.cpu_count() or 1

    peak = max(matmul_rate(threads).values())
    flops = encoder_flops()["total"]
    x = np.random.default_rng(0).standard_normal((args.clips, 1, 128, 1024)).astype(np.float32)
    x = np.repeat(x, 3, axis=1)
    features = [clip[0].T for clip in x]  # (frames, mel bins), as the frontend gives them
    ms: dict[tuple[str, str], float] = {}
    default_batch = 0
    with tempfile.TemporaryDirectory(prefix="frozenasd-batch-") as tmp:
        for kind, path in export_models(Path(tmp)).items():
            session = ort_session(path, threads)
            runners = {str(n): partial(in_calls, session, x, n) for n in CALLS}
            extractor = ONNXFeatureExtractor(path, num_threads=threads).fit()
            default_batch = extractor.batch_size
            runners["extractor"] = lambda e=extractor: e.embed_features(features)
            times = time_interleaved(runners, args.rounds)
            for name, t in times.items():
                ms[(kind, name)] = statistics.median(t) / len(x) * 1000

    per_call = CPU_CALL_VALUES // BATCH_VALUES
    rows = []
    for name in [*map(str, CALLS), "extractor"]:
        label = (
            f"{name} per call"
            if name != "extractor"
            else f"extractor (batch_size {default_batch}: {per_call} per call)"
        )
        fp32, int8 = ms[("fp32", name)], ms[("int8", name)]
        share = flops / (fp32 / 1000) / 1e9 / peak
        gain = ms[("fp32", "8")] / fp32, ms[("int8", "8")] / int8
        rows.append(f"| {label} | {fp32:.0f} | {share:.1%} | {gain[0]:.2f}× | {int8:.0f} | {gain[1]:.2f}× |")
    section = SECTION.format(kind=cpu_kind())
    option = f" --cpu-kind {args.cpu_kind}" if args.cpu_kind else ""
    text = "\n\n".join(
        [
            section,
            f"{measured_now()}: `python benchmarks/batch_size.py --clips {args.clips} --rounds "
            f"{args.rounds}{option}`. EAT-base with random weights (full depth) and its int8 export, "
            f"{args.clips} 10-second inputs per timing, medians of {args.rounds} rounds, per clip; % of "
            f"the float32 matrix-product peak ({peak:.0f} GFLOP/s, best of torch, numpy, onnxruntime; "
            f"{flops / 1e9:.1f} GFLOP per clip); speed-up against 8 clips per call.",
            "| clips per call | fp32 ms/clip | % of peak | fp32 speed-up | int8 ms/clip | int8 speed-up |\n"
            "|---|---:|---:|---:|---:|---:|\n" + "\n".join(rows),
        ]
    )
    publish(text + "\n", section, args.benchmarks_md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
