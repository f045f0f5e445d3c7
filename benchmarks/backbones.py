"""Where the time of embedding a clip goes with the packaged backbones, and how close the encoder is to peak.

    python benchmarks/backbones.py [--clips 48] [--runs 5] [--benchmarks-md BENCHMARKS.md]

Writes ``--clips`` synthetic 10-second fan clips (16 kHz WAV, as DCASE data), then per backbone times
each stage of ``frozenasd run``'s embedding path over all clips, ``--runs`` times after a warm-up:
reading and resampling to the frontend's rate, the numpy frontend, and the ONNX encoder (batch 8,
every core).
The encoder's rate is its convolution and matrix-product FLOPs (counted from the graph's shapes)
per second, set against the best float32 matrix-product rate measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from _common import machine, publish
from encoder import matmul_rate

from frozenasd.backbones import prepare
from frozenasd.data.audio import load_audio
from frozenasd.data.synth import synthesize
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor

SECTION = "## Packaged backbones: time per clip (benchmarks/backbones.py)"
BACKBONES = ("aisfx", "yamnet")


def example_flops(model_path: Path, example_shape: tuple[int, ...]) -> float:
    """FLOPs of one example through the graph's Conv, MatMul and Gemm nodes (2 per multiply-add)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(model_path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, size in zip(dims, (1, *example_shape), strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = size
    model = shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.value_info, *model.graph.output, *model.graph.input)
    }
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    total = 0.0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if node.op_type == "Conv":
            w = weights[node.input[1]]  # (out channels, in channels / groups, kh, kw)
            total += 2.0 * float(np.prod(w)) * float(np.prod(out[2:]))
        elif node.op_type in ("MatMul", "Gemm"):
            w = weights.get(node.input[1]) or shapes[node.input[1]]
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            inner = w[-1] if trans_b else w[-2]
            total += 2.0 * float(np.prod(out)) * inner
    return total


def time_backbone(name: str, files: list[Path], runs: int, threads: int) -> dict:
    extractor = ONNXFeatureExtractor(prepare(name), num_threads=threads).fit()
    rate = extractor.frontend_["sample_rate"]
    extractor.transform([load_audio(f, extractor.sample_rate) for f in files[:2]])  # warm-up, not timed
    stages: dict[str, list[float]] = {"read": [], "frontend": [], "encoder": []}
    for _ in range(runs):
        start = time.perf_counter()
        waves = [load_audio(f, rate) for f in files]
        read = time.perf_counter()
        features = [extractor.features(w, rate) for w in waves]
        featurised = time.perf_counter()
        extractor.embed_features(features)
        done = time.perf_counter()
        stages["read"].append((read - start) / len(files))
        stages["frontend"].append((featurised - read) / len(files))
        stages["encoder"].append((done - featurised) / len(files))
    frontend = extractor._frontend()
    examples = [frontend.examples(f) for f in features]
    per_clip = sum(len(e) for e in examples) / len(files)
    one = frontend.model_input(examples[0][:1], extractor.layout_)
    flops = example_flops(extractor.model_path, one.shape[1:]) * per_clip
    return {
        "rate": rate,
        "examples": per_clip,
        "gflop": flops / 1e9,
        "median": {k: statistics.median(v) for k, v in stages.items()},
        "range": {k: (min(v), max(v)) for k, v in stages.items()},
    }


def report(results: dict, peak: dict[str, float], clips: int, runs: int, threads: int) -> str:
    host = machine()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    best = max(peak.values())
    lines = [
        SECTION,
        "",
        f"Measured {stamp} on {host['cpu']}, {host['cores']} cores, Python {host['python']}; "
        f"{clips} synthetic 10-second fan clips (16 kHz WAV), medians of {runs} passes over all of them; "
        f"ONNX Runtime with {threads} threads, batch 8. Per clip, in ms:",
        "",
        "| backbone | read + resample | frontend | encoder | total | examples per clip | encoder GFLOP "
        "per clip | encoder GFLOP/s (of peak) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        m = r["median"]
        rate = r["gflop"] / m["encoder"]
        lines.append(
            f"| {name} ({r['rate'] / 1000:g} kHz) | {1000 * m['read']:.1f} | {1000 * m['frontend']:.1f} "
            f"| {1000 * m['encoder']:.1f} | {1000 * sum(m.values()):.1f} | {r['examples']:.0f} "
            f"| {r['gflop']:.2f} | {rate:.0f} ({rate / best:.0%}) |"
        )
    lines += [
        "",
        "Range over passes (ms/clip): "
        + "; ".join(
            f"{name} "
            + ", ".join(f"{k} {1000 * lo:.1f}–{1000 * hi:.1f}" for k, (lo, hi) in r["range"].items())
            for name, r in results.items()
        )
        + ".",
        "Peak: best float32 2048² matrix product with the same threads, before and after the runs: "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peak.items())
        + f"; the fractions are of {best:.1f} GFLOP/s. Encoder FLOPs count Conv, MatMul and Gemm only.",
        "Share of the time per clip spent in the encoder: "
        + ", ".join(
            f"{name} {r['median']['encoder'] / sum(r['median'].values()):.0%}" for name, r in results.items()
        )
        + "; the rest is reading, resampling and the numpy frontend, one core.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=48, help="clips to time (default: 48)")
    parser.add_argument("--runs", type=int, default=5, help="passes over the clips (default: 5)")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: every core)")
    parser.add_argument("--benchmarks-md", type=Path, default=None, help="also write the section here")
    args = parser.parse_args(argv)
    import os

    threads = args.threads or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="frozenasd-backbones-") as tmp:
        synthesize(tmp, ["fan"], n_train_source=args.clips, n_train_target=0, n_test_per_cell=0)
        files = sorted(Path(tmp, "fan", "train").glob("*.wav"))[: args.clips]
        before = matmul_rate(threads)
        results = {name: time_backbone(name, files, args.runs, threads) for name in BACKBONES}
        after = matmul_rate(threads)
    peak = {k: max(before[k], after[k]) for k in before}
    text = report(results, peak, len(files), args.runs, threads)
    publish(text, SECTION, args.benchmarks_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
