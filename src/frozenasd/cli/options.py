"""Options and helpers the subcommands (and the seed's main.py) share."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from frozenasd.embed.cache import default_cache_dir
from frozenasd.embed.encoders.pooling import NORMALISATIONS, POOLINGS
from frozenasd.errors import FrozenASDError
from frozenasd.outputs.names import RUN_JSON

if TYPE_CHECKING:
    from frozenasd.settings import RunSettings


MODEL_HELP = (
    "the encoder: an exported ONNX file, or a backbone name (logmel: no model, always available; "
    "aisfx, yamnet, eat-base; see `frozenasd backbones`), prepared on first use"
)


DEVICE_HELP = (
    "where the encoders run: auto (ONNX Runtime's CUDA provider when onnxruntime-gpu is installed "
    "and a GPU is visible, else the CPU; the default), cpu, or cuda (falls back to the CPU with one "
    f"line saying why); the provider used is recorded in {RUN_JSON} and the fitted file"
)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``, on every command that embeds."""
    from frozenasd.embed.encoders.device import DEVICES

    parser.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_data_root_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """``--data ROOT`` (a DCASE layout, required) and ``--machine`` (the machine types to ``verb``)."""
    parser.add_argument("--data", required=True, help="dataset root: <data>/<machine>/{train,test}/*.wav")
    parser.add_argument(
        "--machine",
        nargs="+",
        default=None,
        help=f"machine types to {verb} (default: every machine folder under --data)",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``frozenasd run`` and the seed's ``main.py``."""
    from frozenasd.detectors.pipeline import DETECTORS

    parser.add_argument(
        "--detector",
        default=None,
        choices=sorted(DETECTORS),
        help="anomaly detector of a single view (default: kmeansNN, the seed's)",
    )
    parser.add_argument(
        "--n-components",
        type=positive_int,
        default=2,
        help="k-means clusters of the kmeansNN detector (default: 2)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the detector (default: 0)")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="clips per encoder call, at most (default: 8; on the CPU two 10-s EAT clips at most)",
    )
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="ONNX Runtime threads (default: every core)"
    )
    parser.add_argument(
        "--target-frames",
        type=positive_int,
        default=None,
        help="pad or trim every clip to this many fbank frames, a multiple of 16 "
        "(1024 = 10 s); default: the whole clip",
    )
    parser.add_argument(
        "--encoder-output",
        default=None,
        help="encoder output to embed: emb (patch tokens, default), cls, or layer_<i> when the export "
        "has intermediate layers",
    )
    parser.add_argument(
        "--pooling",
        default=None,
        choices=POOLINGS,
        help="statistic over a clip's frames, patch tokens (EAT), patches (YAMNet) or blocks (aiSFX): "
        "mean (default), max (keeps short events), meanstd (mean and standard deviation), quantiles "
        "(median, 90th percentile and max); bands-<statistic>: EAT only, over time keeping EAT's 8 "
        "frequency bands (bands = bands-mean); none: for an output that is already (batch, dim), "
        "such as cls; frames: no pooling, every frame kept (the default of, and only for, the frame "
        "detectors framebank and framebank-topk)",
    )
    parser.add_argument(
        "--normalise",
        default=None,
        choices=NORMALISATIONS,
        help="scale each clip's waveform before the frontend: rms (to an RMS of 0.1), peak (largest "
        "sample to 1) or none (default)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="embedding cache folder (default: $FROZENASD_CACHE or ~/.cache/frozenasd)",
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    add_device_option(parser)


def percentile(text: str) -> float:
    value = float(text)
    if not 0 < value < 100:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a percentile between 0 and 100, got {text}")
    return value


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def add_threshold_options(parser: argparse.ArgumentParser) -> None:
    """``--threshold-percentile`` or ``--threshold``: how the decision threshold is chosen."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--threshold-percentile",
        type=percentile,
        default=None,
        metavar="P",
        help="decision threshold: the P-th percentile of a gamma law fitted to the cross-fitted training "
        "scores (default: 90, as the DCASE baseline)",
    )
    group.add_argument(
        "--threshold",
        type=finite_float,
        default=None,
        metavar="SCORE",
        help="decision threshold: this fixed score instead (scores map the training range to [0, 1]; "
        "a clip above it is anomalous)",
    )


def add_fusion_options(parser: argparse.ArgumentParser) -> None:
    """``--preset``, ``--fuse`` and ``--fusion-rule`` of ``run`` and ``fit`` (their default is a preset)."""
    from frozenasd.views import FUSION_RULES, PRESETS

    parser.add_argument(
        "--preset",
        default=None,
        choices=sorted(PRESETS),
        help="a named fusion of views (the default when no --model is given: robust, or spectral "
        "when aiSFX is not installed): " + "; ".join(f"{name}: {p.summary}" for name, p in PRESETS.items()),
    )
    parser.add_argument(
        "--fuse",
        default=None,
        metavar="BRANCH+BRANCH...",
        help="fuse views of your choice, each MODEL:POOLING:DETECTOR[:NORMALISE] "
        "(e.g. logmel:max:mahalanobis+aisfx:mean:mahalanobis); each branch's scores are z-scored by "
        "its own cross-fitted training scores",
    )
    parser.add_argument(
        "--fusion-rule",
        default=None,
        choices=FUSION_RULES,
        help="how a fusion combines its branches' z-scores: max (one alarmed view is enough) or mean "
        "(default: the preset's, max for --fuse)",
    )


# The options that name model_settings' parameters on the command line.
OPTION_NAMES = {
    "model": "--model",
    "preset": "--preset",
    "branches": "--fuse",
    "fusion_rule": "--fusion-rule",
    "detector": "--detector",
    "pooling": "--pooling",
    "normalise": "--normalise",
    "target_frames": "--target-frames",
    "output": "--encoder-output",
}


def settings_from(args: argparse.Namespace) -> RunSettings:
    """The run settings the shared options describe: one view (``--model``) or a fusion of views."""
    from frozenasd.settings import model_settings

    if args.no_cache:
        cache_dir = None
    else:
        cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if args.model is None and not hasattr(args, "preset"):  # a command without fusion options (main.py)
        raise FrozenASDError("no encoder given: name a model with --model")
    return model_settings(
        args.model,
        preset=getattr(args, "preset", None),
        branches=getattr(args, "fuse", None),
        fusion_rule=getattr(args, "fusion_rule", None),
        detector=args.detector,
        pooling=args.pooling,
        normalise=args.normalise,
        target_frames=args.target_frames,
        output=args.encoder_output,
        threshold_percentile=getattr(args, "threshold_percentile", None),
        threshold=getattr(args, "threshold", None),
        n_components=args.n_components,
        random_state=args.seed,
        batch_size=args.batch_size,
        num_threads=args.threads,
        cache_dir=cache_dir,
        progress=not args.no_progress,
        device=getattr(args, "device", "auto"),
        spelling=OPTION_NAMES,
        note=lambda text: print(f"note: {text}", file=sys.stderr),
    )


def print_summary(results: dict) -> int:
    """Print one line per machine; return the exit code (1 when a machine failed)."""
    from frozenasd.text import printable

    failed = 0
    for machine, result in results.items():
        if isinstance(result, str):
            failed += 1
            print(printable(f"{machine:>12}  FAILED: {result}"))
            continue
        parts = [
            f"{key}={result[key]:.4f}"
            for key in ("auc", "pauc", "auc_source", "auc_target")
            if result.get(key) is not None
        ]
        text = "  ".join(parts or [result.get("note") or "no metrics: scores written"])
        print(printable(f"{machine:>12}  {text}"))
    return 1 if failed else 0
