"""int8 and shallower encoders: speed, fidelity and accuracy against fp32, on the CPU at hand.

- EAT-base shapes with random weights (a fairseq checkpoint in the real layout, written to a temporary
  folder; speed does not depend on the values): fp32 and int8 exports cut after 4, 6, 8 and 12 blocks,
  timed side by side in rounds (the order alternates every round) on 10-second clips, in calls of as
  many clips as the extractor puts in one on the CPU (``batch_size.py``); the
  medians per clip, the fraction of the measured float32 matrix-product peak (``encoder.py``'s
  ``matmul_rate``) their FLOPs reach, and the projected time of the DCASE 2024 development set (8,400
  clips). At full depth the int8 weight formats are compared too (QInt8 with ``reduce_range``, the
  default; QInt8 full range; QUInt8). Fidelity: the pooled-embedding cosine of int8 vs fp32 at the same
  depth on synthetic machine clips.
- aiSFX and YAMNet: fp32 vs int8 encoder time per 10-second clip, and the official score of a single
  view under the default detector of single views (mahalanobis) on the real valve recordings and the
  demo data, fp32 vs int8.

One section per CPU kind (AVX-512 or AVX2, with or without VNNI, AMX: what ONNX Runtime's int8 and
fp32 kernels depend on); ``--cpu-kind K`` measures kind K on a CPU that has more (``tests/cpu_kinds.py``
hides the rest from the process), with a fresh embedding cache unless ``--cache-dir`` is given (cached
embeddings are the other kernels').

    python benchmarks/quantisation.py                 # updates BENCHMARKS.md
    python benchmarks/quantisation.py --cpu-kind avx2 # as on an AVX2-only CPU
    python benchmarks/quantisation.py --rounds 2 --no-accuracy --no-write
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from _common import (
    CPU_KIND_HELP,
    check_cpu_kind,
    cpu_kind,
    cpu_kinds,
    hidden_features,
    machine,
    rerun_as,
    write_section,
)
from batch_size import in_calls
from encoder import encoder_flops, matmul_rate, ort_session, time_interleaved

from frozenasd.embed.encoders.onnx_runtime import BATCH_VALUES, CPU_CALL_VALUES

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## int8 and shallower encoders, {kind} (benchmarks/quantisation.py)"
DEPTHS = (4, 6, 8, 12)
DEV_SET_CLIPS = 8400  # DCASE 2024 Task 2 development set: 7 machines × (1,000 train + 200 test)
PER_CALL = CPU_CALL_VALUES // BATCH_VALUES  # 10-s clips the extractor puts in one call on the CPU
REAL = ROOT.parent / "shared" / "realdata"  # the real valve recordings beside the checkout
DEMO = ROOT / "demo" / "data"  # `make demo`'s data
NOTE_FORMATS = (
    "QInt8 with `reduce_range` (7-bit weights) is the default: it runs the same u8 × s8 kernels as "
    "full-range QInt8, and keeps CPUs without VNNI (whose `VPMADDUBSW` sums pairs in 16 bits) from "
    "saturating: its matrix products give bit for bit the same numbers on every kind's kernels, where "
    "full-range weights do not on kinds without VNNI (`tests/test_int8_cpu_kinds.py`). QUInt8 avoids "
    "saturation with U8U8 kernels, which are slower."
)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
SCHEMES = {
    "QInt8 reduce_range": {"weight_type": "QInt8", "reduce_range": True},
    "QInt8 full range": {"weight_type": "QInt8", "reduce_range": False},
    "QUInt8": {"weight_type": "QUInt8", "reduce_range": False},
}


def cpu_flags() -> list[str]:
    """Which of the int8-relevant instruction sets this process sees (/proc/cpuinfo's names)."""
    present = cpu_kinds.visible_flags()
    return [f for f in CPU_FLAGS if f in present]


def synthetic_clips(n: int, rate: int, seconds: float = 10.0) -> list[np.ndarray]:
    """Normal synthetic clips of the three demo machines (seeded; none of the demo's own)."""
    sys.path.insert(0, str(ROOT / "src"))
    from frozenasd.data.synth import MACHINES
    from frozenasd.data.synth.dataset import normal_wave

    return [
        normal_wave(
            MACHINES[i % len(MACHINES)], i, seed=99, split="test", duration_s=seconds, sample_rate=rate
        )
        for i in range(n)
    ]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --------------------------------------------------------------------------------------------- EAT
def eat_models(folder: Path, log: Callable[[str], None]) -> dict[str, Path]:
    """fp32 and int8 EAT-base exports at every depth, and the other int8 schemes at full depth."""
    sys.path.insert(0, str(ROOT / "tests"))
    from eat_checkpoints import write_fairseq_pretrain

    from frozenasd.backbones.eat_export.export import export_onnx
    from frozenasd.backbones.quantise import quantise_file

    checkpoint = write_fairseq_pretrain(folder / "EAT-base_random_pt.pt", size="base").path
    models: dict[str, Path] = {}
    for depth in DEPTHS:
        start = time.perf_counter()
        fp32 = export_onnx(checkpoint, folder / f"d{depth}.onnx", depth=depth, verify=False)
        models[f"fp32 d{depth}"] = fp32
        for scheme, options in SCHEMES.items():
            if scheme != "QInt8 reduce_range" and depth != DEPTHS[-1]:
                continue
            label = f"int8 d{depth}" + ("" if scheme == "QInt8 reduce_range" else f" {scheme}")
            path = folder / f"{label.replace(' ', '_')}.onnx"
            models[label] = quantise_file(fp32, path, **options)
        log(f"exported depth {depth} ({time.perf_counter() - start:.0f} s)")
    checkpoint.unlink()
    return models


def eat_benchmark(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor

    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="frozenasd-quant-") as tmp:
        models = eat_models(Path(tmp), log)
        sessions = {name: ort_session(path, args.threads) for name, path in models.items()}
        x = np.random.default_rng(0).standard_normal((args.batch, 1, 128, 1024)).astype(np.float32)
        x = np.repeat(x, 3, axis=1)
        runners = {name: partial(in_calls, s, x, PER_CALL) for name, s in sessions.items()}
        log(f"timing {len(runners)} EAT models, {args.rounds} rounds of {args.batch} clips")
        times = time_interleaved(runners, args.rounds)
        out["ms"] = {name: statistics.median(t) / args.batch * 1000 for name, t in times.items()}
        out["range"] = {name: (min(t), max(t)) for name, t in times.items()}
        del sessions, runners
        # fidelity: pooled embeddings of synthetic clips, int8 vs fp32 at the same depth
        clips = synthetic_clips(args.clips, 16000)
        pooled = {}
        for name, path in models.items():
            ext = ONNXFeatureExtractor(path, num_threads=args.threads, device="cpu").fit()
            pooled[name] = ext.transform(clips)
        for name in models:
            if name.startswith("int8"):
                reference = "fp32 " + name.split()[1]
                out.setdefault("cosine", {})[name] = float(cosines(pooled[reference], pooled[name]).min())
    return out


# ---------------------------------------------------------------------------------- CNN backbones
def backbone_speed(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    """Encoder ms per 10-s clip of aiSFX and YAMNet, fp32 vs int8 (frontend excluded)."""
    from frozenasd.backbones import prepare
    from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor

    out: dict = {}
    runners = {}
    for name in ("aisfx", "yamnet"):
        try:
            paths = {"fp32": prepare(name), "int8": prepare(name, int8=True)}
        except Exception as exc:  # noqa: BLE001 - a missing package is reported, not fatal
            out[name] = str(exc)
            continue
        rate = ONNXFeatureExtractor(paths["fp32"]).fit().frontend_["sample_rate"]
        clips = synthetic_clips(args.batch, rate)
        for precision, path in paths.items():
            ext = ONNXFeatureExtractor(path, num_threads=args.threads, device="cpu").fit()
            features = [ext.features(c, rate) for c in clips]
            runners[f"{name} {precision}"] = lambda e=ext, f=features: e.embed_features(f)
    log(f"timing {len(runners)} packaged models, {args.rounds} rounds")
    times = time_interleaved(runners, args.rounds)
    out["ms"] = {name: statistics.median(t) / args.batch * 1000 for name, t in times.items()}
    return out


def accuracy(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    """Official score of single views (mahalanobis), fp32 vs int8, on the real and the demo data."""
    from frozenasd.data.dcase import discover_machines
    from frozenasd.evaluation.metrics import official_score
    from frozenasd.settings import model_settings
    from frozenasd.workflows.run import run

    datasets = {"real (valve)": args.real, "demo": args.demo}
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="frozenasd-quant-acc-") as tmp:
        for data_name, root in datasets.items():
            if not root.is_dir():
                out[data_name] = f"{root} not found"
                continue
            machines = discover_machines(root)
            for model in ("aisfx", "aisfx-int8", "yamnet", "yamnet-int8"):
                start = time.perf_counter()
                settings = model_settings(
                    model, detector="mahalanobis", num_threads=args.threads, progress=False,
                    cache_dir=args.cache_dir, device="cpu",
                )  # fmt: skip
                result = run(root, machines, Path(tmp) / data_name / model, settings)
                metrics = result.metrics
                score = (
                    official_score(metrics) if all(isinstance(m, dict) for m in metrics.values()) else None
                )
                out.setdefault(data_name, {})[model] = score
                log(f"{model} on {data_name}: {score} ({time.perf_counter() - start:.0f} s)")
    return out


# ------------------------------------------------------------------------------------------ report
def report(results: dict, args: argparse.Namespace) -> str:
    info = machine()
    flags = results["flags"]
    vnni = "with VNNI" if any("vnni" in f for f in flags) else "without VNNI"
    eat = results["eat"]
    peak = results["peak"]
    option = f" --cpu-kind {args.cpu_kind}" if args.cpu_kind else ""
    lines = [
        SECTION.format(kind=cpu_kind()),
        "",
        f"Measured {results['date']} on {info['cpu']} ({', '.join(flags) or 'no AVX2'}: {vnni})"
        f"{hidden_features()}; {info['cores']}; {args.threads} threads; onnxruntime {results['ort']}; "
        f"`python benchmarks/quantisation.py{option}`. The machine was shared "
        f"with other work (load average {results['load'][0]:.1f} before, {results['load'][1]:.1f} after), "
        "so differences under ~10 % are noise. Whole benchmark: "
        f"{results['seconds'] / 60:.1f} min.",
        "",
        f"**EAT-base shapes, random weights**, {args.batch} 10-s clips per timing in calls of {PER_CALL} "
        f"(as the extractor makes them on the CPU), medians of {args.rounds} "
        f"rounds (the models timed side by side, the order alternating). Peak: float32 2048² matrix "
        f"product, {peak:.0f} GFLOP/s (best of torch, numpy, onnxruntime). Fidelity: smallest cosine of "
        f"the mean-pooled `emb` of {args.clips} synthetic 10-s clips, int8 vs fp32 at the same depth. "
        f"Dev set: {DEV_SET_CLIPS:,} clips × ms/clip (encoder only; decoding and fbank add ~7 ms/clip).",
        "",
        "| blocks | fp32 ms/clip | % of peak | int8 ms/clip | int8 speed-up | cosine int8/fp32 "
        "| dev set fp32 | dev set int8 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for depth in DEPTHS:
        fp32, int8 = eat["ms"][f"fp32 d{depth}"], eat["ms"][f"int8 d{depth}"]
        flops = encoder_flops(depth=depth)["total"]
        lines.append(
            f"| {depth} | {fp32:.0f} | {flops / (fp32 / 1000) / 1e9 / peak:.0%} | {int8:.0f} | "
            f"{fp32 / int8:.2f}× | {eat['cosine'][f'int8 d{depth}']:.4f} | "
            f"{DEV_SET_CLIPS * fp32 / 60000:.0f} min | {DEV_SET_CLIPS * int8 / 60000:.0f} min |"
        )
    full = DEPTHS[-1]
    lines += [
        "",
        f"int8 weight formats at {full} blocks (dynamic quantisation, per-channel):",
        "",
        "| weights | ms/clip | vs fp32 | cosine int8/fp32 |",
        "|---|---:|---:|---:|",
    ]
    fp32_full = eat["ms"][f"fp32 d{full}"]
    for scheme in SCHEMES:
        key = f"int8 d{full}" + ("" if scheme == "QInt8 reduce_range" else f" {scheme}")
        mark = " (default)" if scheme == "QInt8 reduce_range" else ""
        lines.append(
            f"| {scheme}{mark} | {eat['ms'][key]:.0f} | {fp32_full / eat['ms'][key]:.2f}× | "
            f"{eat['cosine'][key]:.4f} |"
        )
    lines += ["", NOTE_FORMATS]
    packaged = results.get("packaged", {})
    if packaged.get("ms"):
        lines += [
            "",
            "**aiSFX and YAMNet**, encoder time per 10-s clip (frontend excluded), fp32 vs int8 "
            "(aiSFX: static QDQ, calibrated on synthetic clips; YAMNet: its publisher's 8-bit "
            "quantisation, weights requantised to 7 bits), medians of the same rounds:",
            "",
            "| backbone | fp32 ms/clip | int8 ms/clip | speed-up |",
            "|---|---:|---:|---:|",
        ]
        for name in ("aisfx", "yamnet"):
            if f"{name} fp32" in packaged["ms"]:
                a, b = packaged["ms"][f"{name} fp32"], packaged["ms"][f"{name} int8"]
                lines.append(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.2f}× |")
    acc = results.get("accuracy")
    if acc:
        lines += [
            "",
            "Official score (%) of a single view under the default detector of single views "
            "(`--model M --detector mahalanobis`), fp32 vs int8:",
            "",
            "| data | aisfx | aisfx-int8 | change | yamnet | yamnet-int8 | change |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for data, scores in acc.items():
            if isinstance(scores, str):
                lines.append(f"| {data} | {scores} | | | | | |")
                continue
            cells = []
            for name in ("aisfx", "yamnet"):
                a, b = scores.get(name), scores.get(f"{name}-int8")
                fmt = [f"{100 * v:.2f}" if v is not None else "failed" for v in (a, b)]
                change = f"{100 * (b - a):+.2f}" if a is not None and b is not None else ""
                cells += [*fmt, change]
            lines.append(f"| {data} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "EAT depth × int8 accuracy needs the real weights: `benchmarks/accuracy.py` has the rows ready "
        "(`--eat-variants`, run with `frozenasd download eat-base --depth K [--int8]` done first).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--clips", type=int, default=6, help="synthetic clips for the fidelity check")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="embedding cache (default: frozenasd's own)"
    )
    parser.add_argument("--real", type=Path, default=REAL, help=f"real recordings (default: {REAL})")
    parser.add_argument("--demo", type=Path, default=DEMO, help=f"demo data (default: {DEMO})")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--cpu-kind", choices=cpu_kinds.KINDS, help=CPU_KIND_HELP)
    args = parser.parse_args(argv)
    if args.cpu_kind and not cpu_kinds.active():
        return rerun_as(args.cpu_kind, __file__, argv)
    check_cpu_kind()
    with contextlib.ExitStack() as stack:
        if args.cache_dir is None and args.cpu_kind:
            fresh = tempfile.TemporaryDirectory(prefix="frozenasd-cpu-kind-cache-")
            args.cache_dir = Path(stack.enter_context(fresh))
        elif args.cache_dir is None:
            from frozenasd.embed.cache import default_cache_dir

            args.cache_dir = default_cache_dir()
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    """Run the benchmark as ``args`` say; print the section and write it unless ``--no-write``."""

    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {text}", flush=True)

    results: dict = {
        "date": dt.date.today().isoformat(),
        "ort": ort.__version__,
        "flags": cpu_flags(),
        "load": [os.getloadavg()[0]],
    }
    rates = matmul_rate(args.threads)
    results["peak"] = max(rates.values())
    log(f"matmul peak {results['peak']:.0f} GFLOP/s ({rates})")
    results["eat"] = eat_benchmark(args, log)
    results["packaged"] = backbone_speed(args, log)
    if not args.no_accuracy:
        results["accuracy"] = accuracy(args, log)
    results["load"].append(os.getloadavg()[0])
    results["seconds"] = time.perf_counter() - started
    text = report(results, args)
    print(text)
    if not args.no_write:
        write_section(text, SECTION.format(kind=cpu_kind()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
