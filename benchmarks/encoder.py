"""Encoder speed: PyTorch eager vs ONNX Runtime on 10-second clips, EAT-base shapes.

Both run the same encoder with random weights in the real EAT-base layout (a fairseq pre-training
checkpoint written to a temporary folder, since the released weights cannot be fetched here; speed
does not depend on the values), on the export's interface: input ``(B, 3, 128, 1024)`` float32,
outputs ``emb`` and ``cls``.

- PyTorch: ``frozenasd.backbones.eat_export.model.EATEncoder``, eager, float32, ``torch.set_num_threads``.
- ONNX Runtime: the file ``export_onnx`` writes (attention as ONNX Runtime's ``MultiHeadAttention``),
  CPU provider, ``ORT_ENABLE_ALL``, intra-op threads as PyTorch's, sequential execution.
- ONNX Runtime, standard ops: the same with ``export_onnx(..., fused_attention=False)`` (attention as
  MatMul/Softmax/MatMul), which shows what the fused attention is worth.

The runtimes are timed in alternation (A B C, C B A, …) so that load from other processes hits them
alike; the table gives medians. Also reported: the analytic FLOPs per clip, the machine's float32
matrix-multiply rate with the same thread count (the practical peak), the fraction of it each
runtime reaches, and which fused operators ONNX Runtime's optimised graph holds.

    python benchmarks/encoder.py                 # 5 runs, batch 1 and 8, updates BENCHMARKS.md
    python benchmarks/encoder.py --quick         # 2 runs
    python benchmarks/encoder.py --no-write      # print only
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from _common import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Encoder speed (benchmarks/encoder.py)"
FRAMES = 1024  # 10 s at 100 frames/s, padded to a multiple of 16
MEL_BINS = 128

# Operators of ONNX Runtime's optimised graph worth reporting, by what they stand for.
FUSION_OPS = {
    "attention": ("Attention", "MultiHeadAttention", "PackedAttention"),
    "layernorm": ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization"),
    "gelu": ("Gelu", "BiasGelu", "FastGelu", "QuickGelu"),
    "unfused": ("Softmax", "Erf", "ReduceMean", "Pow", "Sqrt"),
}


# --------------------------------------------------------------------------- FLOPs
def encoder_flops(
    embed_dim: int = 768,
    depth: int = 12,
    mlp_dim: int = 3072,
    frames: int = FRAMES,
    mel_bins: int = MEL_BINS,
    patch: int = 16,
) -> dict[str, float]:
    """FLOPs of one clip through the encoder, a multiply-add counted as 2.

    With P = (frames/16)·(mel_bins/16) patches, n = P + 1 tokens, D = embed_dim, M = mlp_dim, L = depth:

    - patch embedding (16×16 conv, stride 16, one input channel): 2·P·D·256
    - per block: qkv 2·n·D·3D, scores q·kᵀ 2·n²·D, weighted sum of v 2·n²·D, output projection
      2·n·D², MLP 2·n·D·M·2, i.e. 2n(4D² + 2DM) + 4n²D

    total = 2·P·D·256 + L·(2n(4D² + 2DM) + 4n²D). LayerNorm, softmax, GELU, biases and the position
    add are O(n·D) or O(n²·heads) per block and left out (about 0.5 % for EAT-base).
    """
    p = (frames // patch) * (mel_bins // patch)
    n, d, m = p + 1, embed_dim, mlp_dim
    parts = {
        "patch_embed": 2.0 * p * d * patch * patch,
        "qkv": depth * 2.0 * n * d * 3 * d,
        "attention": depth * 4.0 * n * n * d,
        "proj": depth * 2.0 * n * d * d,
        "mlp": depth * 4.0 * n * d * m,
    }
    parts["total"] = sum(parts.values())
    return parts


def counted_flops(module) -> float:
    """FLOPs of one clip as PyTorch's operator-level counter sees them (a cross-check of the formula)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(torch.zeros(1, 3, MEL_BINS, FRAMES))
    return float(counter.get_total_flops())


def matmul_rate(threads: int, size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best float32 GFLOP/s of a size×size matrix product with ``threads`` threads (torch, numpy, ORT)."""
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper
    from threadpoolctl import threadpool_limits

    rates: dict[str, float] = {}
    flops = 2.0 * size**3
    a_t, b_t = torch.randn(size, size), torch.randn(size, size)
    torch.set_num_threads(threads)
    rates["torch"] = flops / _best(lambda: a_t @ b_t, repeats) / 1e9
    a_n, b_n = a_t.numpy(), b_t.numpy()
    with threadpool_limits(limits=threads):
        rates["numpy"] = flops / _best(lambda: a_n @ b_n, repeats) / 1e9
    # ONNX Runtime's own kernel, with a constant right-hand side as the encoder's weights
    square = [size, size]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, square)],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, square)],
        [numpy_helper.from_array(b_n, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    del model
    onnx_input = {"a": a_n}
    rates["onnxruntime"] = flops / _best(lambda: session.run(None, onnx_input), repeats) / 1e9
    return rates


def _best(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# --------------------------------------------------------------------------- models
def ort_session(path: Path, threads: int, optimised: Path | None = None):
    """A CPU session as the extractor opens one (``ORT_ENABLE_ALL``), optionally saving its graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimised is not None:
        options.optimized_model_filepath = str(optimised)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def build_models(folder: Path, threads: int, size: str = "base"):
    """Models with random weights: torch module, ORT sessions by name, their paths, EATConfig.

    Sessions: ``ort`` (the default export) and ``ort_std`` (``fused_attention=False``); paths:
    ``exported``, ``optimised`` (ORT's optimised graph of the default export) and ``exported_std``.
    """
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from eat_checkpoints import write_fairseq_pretrain

    from frozenasd.backbones.eat_export.checkpoint import load_eat_checkpoint
    from frozenasd.backbones.eat_export.export import SeedInterface, export_onnx
    from frozenasd.backbones.eat_export.model import EATEncoder

    torch.set_num_threads(threads)
    checkpoint = write_fairseq_pretrain(folder / f"EAT-{size}_random_pt.pt", size=size).path
    exported = export_onnx(checkpoint, folder / f"eat-{size}.onnx", verify=False)
    exported_std = export_onnx(
        checkpoint, folder / f"eat-{size}.std.onnx", verify=False, fused_attention=False
    )

    state, config, _info = load_eat_checkpoint(checkpoint)
    encoder = EATEncoder(config)
    encoder.load_state_dict(state, strict=True, assign=True)
    module = SeedInterface(encoder.eval()).eval()

    optimised = folder / f"eat-{size}.optimised.onnx"
    sessions = {
        "ort": ort_session(exported, threads, optimised),
        "ort_std": ort_session(exported_std, threads),
    }
    paths = {"exported": exported, "optimised": optimised, "exported_std": exported_std}
    return module, sessions, paths, config


def op_counts(path: Path) -> Counter:
    """Node op types of an ONNX graph (subgraphs included), with their domain when not the default."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts: Counter = Counter()

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            counts[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"] += 1
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g)

    walk(model.graph)
    return counts


def fusion_summary(counts: Counter) -> dict[str, dict[str, int]]:
    summary: dict[str, dict[str, int]] = {}
    for group, names in FUSION_OPS.items():
        found = {}
        for key, value in counts.items():
            if key.rsplit(".", 1)[-1] in names:
                found[key] = value
        summary[group] = found
    return summary


# --------------------------------------------------------------------------- timing
def time_interleaved(
    runners: dict[str, Callable[[], object]], runs: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each runner, alternating the order every run."""
    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(runs):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - start)
    return times


def benchmark(
    runs: int, batch_sizes: Sequence[int], threads: int, matmul_size: int, size: str = "base"
) -> dict:
    import onnxruntime as ort
    import torch

    results: dict = {
        "runs": runs,
        "threads": threads,
        "size": size,
        "batches": {},
        "matmul_size": matmul_size,
    }
    ort.set_default_logger_severity(3)  # not the warning about saving a hardware-specific optimised graph
    results["load_before"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    before = matmul_rate(threads, size=matmul_size)
    with tempfile.TemporaryDirectory(prefix="frozenasd-bench-") as tmp:
        start = time.perf_counter()
        module, sessions, paths, config = build_models(Path(tmp), threads, size)
        results["setup_s"] = time.perf_counter() - start
        results["config"] = config
        results["flops"] = encoder_flops(config.embed_dim, config.depth, config.mlp_dim)
        results["flops_counted"] = counted_flops(module)
        results["ops_exported"] = op_counts(paths["exported"])
        results["ops_optimised"] = (
            op_counts(paths["optimised"]) if paths["optimised"].is_file() else Counter()
        )
        results["ops_exported_std"] = op_counts(paths["exported_std"])
        rng = np.random.default_rng(0)
        for batch in batch_sizes:
            mel = rng.standard_normal((batch, 1, MEL_BINS, FRAMES), dtype=np.float32)
            x = np.ascontiguousarray(np.repeat(mel, 3, axis=1))
            xt = torch.from_numpy(x)

            def run_torch(xt: torch.Tensor = xt) -> object:
                with torch.inference_mode():
                    return module(xt)

            runners: dict[str, Callable[[], object]] = {"torch": run_torch}
            for name, session in sessions.items():
                runners[name] = lambda session=session, x=x: session.run(["emb", "cls"], {"input": x})

            with torch.inference_mode():
                expected = [t.numpy() for t in module(xt)]
            diffs = {}
            for name in sessions:
                got = runners[name]()
                diffs[name] = max(float(np.max(np.abs(e - g))) for e, g in zip(expected, got, strict=True))
            times = time_interleaved(runners, runs)
            results["batches"][batch] = {"times": times, "max_abs_diff": max(diffs.values())}
            print(
                f"batch {batch}: medians "
                + ", ".join(f"{name} {statistics.median(t):.3f} s" for name, t in times.items())
                + f" (max |diff| {max(diffs.values()):.2g})",
                flush=True,
            )
    after = matmul_rate(threads, size=matmul_size)
    results["load_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # the machine is shared: the best rate seen before or after the runs is the closest to its peak
    results["matmul"] = {k: max(before[k], after[k]) for k in before}
    results["versions"] = {
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }
    return results


# --------------------------------------------------------------------------- report
def report(results: dict) -> str:
    flops, cfg = results["flops"], results["config"]
    peak = max(results["matmul"].values())
    info = machine()
    versions = results["versions"]
    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()} on {info['cpu']}, {info['cores']} cores; "
        f"{results['threads']} threads for each runtime; Python {info['python']}, torch {versions['torch']}, "
        f"onnxruntime {versions['onnxruntime']}, numpy {versions['numpy']}. "
        f"EAT-{results['size']} shapes with random weights, input (B, 3, 128, {FRAMES}) = "
        "one 10-second clip per batch item; medians of "
        f"{results['runs']} runs per cell, PyTorch and ONNX Runtime timed in alternation. Other processes "
        "shared the machine, so treat differences under ~10 % as noise. Set-up (write checkpoint, export, "
        f"load) took {results['setup_s']:.0f} s. Load average (1 min) {results['load_before']:.1f} before, "
        f"{results['load_after']:.1f} after the runs"
        + (
            ": other work took CPU time, so every number below is pessimistic."
            if max(results["load_before"], results["load_after"]) > results["threads"]
            else "."
        ),
        "",
        "| batch | PyTorch eager ms/clip | ONNX Runtime ms/clip | ORT speed-up | ORT standard ops ms/clip "
        "(speed-up) | PyTorch GFLOP/s (of peak) | ORT GFLOP/s (of peak) | max abs diff |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch, row in results["batches"].items():
        t_torch, t_ort, t_std = (
            statistics.median(row["times"][name]) / batch for name in ("torch", "ort", "ort_std")
        )
        g_torch, g_ort = flops["total"] / t_torch / 1e9, flops["total"] / t_ort / 1e9
        lines.append(
            f"| {batch} | {t_torch * 1e3:.0f} | {t_ort * 1e3:.0f} | {t_torch / t_ort:.2f}× "
            f"| {t_std * 1e3:.0f} ({t_torch / t_std:.2f}×) "
            f"| {g_torch:.1f} ({g_torch / peak:.0%}) | {g_ort:.1f} ({g_ort / peak:.0%}) "
            f"| {row['max_abs_diff']:.1e} |"
        )
    spread = []
    for batch, row in results["batches"].items():
        for name in ("torch", "ort", "ort_std"):
            t = row["times"][name]
            spread.append(f"{name} b{batch} {min(t) / batch * 1e3:.0f}–{max(t) / batch * 1e3:.0f}")
    lines += [
        "",
        "ONNX Runtime runs the default export, whose attention is ONNX Runtime's fused "
        '`MultiHeadAttention`; "standard ops" is `export_onnx(..., fused_attention=False)`, attention as '
        "MatMul/Softmax/MatMul. Max abs diff: the largest |ONNX Runtime − PyTorch| over both exports, "
        "emb and cls.",
        "",
        f"Range over runs (ms/clip): {', '.join(spread)}.",
        "",
        f"FLOPs per clip (analytic, `encoder_flops`): {flops['total'] / 1e9:.1f} GFLOP = patch embedding "
        f"{flops['patch_embed'] / 1e9:.2f} + qkv {flops['qkv'] / 1e9:.1f} + attention (q·kᵀ and ·v) "
        f"{flops['attention'] / 1e9:.1f} + output projection {flops['proj'] / 1e9:.1f} + MLP "
        f"{flops['mlp'] / 1e9:.1f}; formula 2·P·D·256 + L·(2n(4D² + 2DM) + 4n²D) with P = 512 patches, "
        f"n = 513 tokens, D = {cfg.embed_dim}, M = {cfg.mlp_dim}, L = {cfg.depth} (LayerNorm, softmax, GELU "
        "and biases left out, about 0.5 %). PyTorch's `FlopCounterMode` counts "
        f"{results['flops_counted'] / 1e9:.1f} GFLOP for the same forward pass.",
        "",
        f"Peak (float32 {results['matmul_size']}² matrix product, {results['threads']} threads, "
        "best of 5 before and 5 after the runs): "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in results["matmul"].items())
        + f"; the fractions above are of {peak:.1f} GFLOP/s.",
        "",
    ]
    lines += fusion_lines(results)
    target = results["batches"].get(8)
    if target is not None:
        speedup = statistics.median(target["times"]["torch"]) / statistics.median(target["times"]["ort"])
        verdict = "met" if speedup >= 1.3 else "not met"
        lines += ["", f"Target ORT ≥ 1.3× PyTorch eager at batch 8: {verdict} (measured {speedup:.2f}×)."]
    return "\n".join(lines) + "\n"


def fusion_lines(results: dict) -> list[str]:
    exported, optimised = results["ops_exported"], results["ops_optimised"]
    if not optimised:
        return ["ONNX Runtime did not write its optimised graph; fused operators unknown."]
    depth = results["config"].depth

    def fmt(found: dict[str, int]) -> str:
        return ", ".join(f"{k} ×{v}" for k, v in sorted(found.items())) or "none"

    before, after = fusion_summary(exported), fusion_summary(optimised)
    standard = results["ops_exported_std"]
    lines = [
        f"Operators in ONNX Runtime's optimised graph ({sum(optimised.values())} nodes, "
        f"from {sum(exported.values())} exported; {depth} blocks):",
        "",
        f"- attention: {fmt(after['attention'])}"
        + (" — fused" if after["attention"] else " — not fused: MatMul/Softmax/MatMul stay separate")
        + f"; Softmax ×{optimised.get('Softmax', 0)} (standard-op export: "
        f"Softmax ×{standard.get('Softmax', 0)}, Transpose ×{standard.get('Transpose', 0)}, "
        f"{sum(standard.values())} nodes)",
        f"- LayerNorm: {fmt(after['layernorm'])} (exported: {fmt(before['layernorm'])})",
        f"- GELU: {fmt(after['gelu'])} (Erf left: {optimised.get('Erf', 0)}; "
        f"exported: Erf ×{exported.get('Erf', 0)})",
        f"- most frequent: {', '.join(f'{k} ×{v}' for k, v in optimised.most_common(8))}",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per cell (default 5)")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--threads", type=int, default=2, help="threads for both runtimes (default 2)")
    parser.add_argument("--quick", action="store_true", help="2 runs and a smaller matmul probe")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="file to update")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--size", default="base", help=argparse.SUPPRESS)  # "tiny": a smoke test
    args = parser.parse_args(argv)
    runs = 2 if args.quick else args.runs
    batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    if runs < 1 or not batches or min(batches) < 1:
        parser.error("--runs and every batch size must be positive")
    matmul_size = 1024 if args.quick else 2048

    results = benchmark(runs, batches, args.threads, matmul_size, args.size)
    text = report(results)
    print()
    print(text)
    if not args.no_write:
        write_section(text, SECTION, args.output)
        print(f"updated {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
