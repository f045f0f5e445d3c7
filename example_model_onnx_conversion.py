"""Export the EAT-base checkpoint to ONNX for the anomaly-detection pipeline (one-time step).

Run from the project folder with no arguments:

    python example_model_onnx_conversion.py

It reads ``model_weights/EAT-base_epoch30_pt.pt`` (EAT's AS-2M pre-trained EAT-base, as released) and
writes ``eat_base_export.onnx``: input ``input`` (batch, 3, 128, time) float32, the mel channel
replicated three times, batch and time dynamic; outputs ``emb`` (batch, patches, 768), the patch
tokens, and ``cls`` (batch, 768). The export is checked against PyTorch with ONNX Runtime.

``depth = 12`` is EAT-base's full depth; ``--depth N`` exports only the first N blocks. Without it every
block of the checkpoint is exported, with a warning if that is not 12. ``--help`` lists the options.
Loading never runs code from the checkpoint (restricted unpickler; no fairseq needed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

try:
    import frozenasd  # noqa: F401
except ImportError:  # run from a source checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from frozenasd.errors import ModelError

checkpoint = Path("model_weights/EAT-base_epoch30_pt.pt")
output = Path("eat_base_export.onnx")
depth = 12  # full EAT-base

MISSING = """\
{path}: checkpoint not found.
Download EAT-base_epoch30_pt.pt (EAT-base pre-trained on AudioSet-2M, epoch 30) from the Google Drive
link in EAT's README (https://github.com/cwx-worst-one/EAT) into {folder}/ and run this script again
(pass --checkpoint PATH if the file is elsewhere), or fetch and export EAT from Hugging Face in one
step with `frozenasd download eat-base -o eat_base_export.onnx`."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=checkpoint, help=f"default: {checkpoint}")
    parser.add_argument("--output", type=Path, default=output, help=f"default: {output}")
    parser.add_argument(
        "--depth",
        type=int,
        default=None,
        help=f"export only the first N blocks (default: all; EAT-base has {depth})",
    )
    parser.add_argument("--use-ema", action="store_true", help="export the EMA teacher, not the student")
    parser.add_argument(
        "--layers", type=int, nargs="*", default=(), help="also output these block outputs (0-based)"
    )
    parser.add_argument("--max-frames", type=int, default=None, help="keep positions up to this length only")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.checkpoint.is_file():
        print(MISSING.format(path=args.checkpoint, folder=args.checkpoint.parent), file=sys.stderr)
        return 2
    try:
        from frozenasd.backbones.eat_export.checkpoint import inspect_eat_checkpoint
        from frozenasd.backbones.eat_export.export import export_onnx

        config, _ = inspect_eat_checkpoint(args.checkpoint, use_ema=args.use_ema)
        if args.depth is None and config.depth != depth:
            print(
                f"warning: {args.checkpoint} has {config.depth} blocks, not the {depth} of EAT-base; "
                f"exporting all {config.depth} (use --depth to choose)",
                file=sys.stderr,
            )
        export_onnx(
            args.checkpoint,
            args.output,
            use_ema=args.use_ema,
            opset=args.opset,
            verify=not args.no_verify,
            layers=args.layers,
            max_frames=args.max_frames,
            depth=args.depth,
        )
    except ImportError as exc:
        print(f"export needs PyTorch (pip install 'frozenasd[export]'): {exc}", file=sys.stderr)
        return 1
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0  # export_onnx has logged what it wrote


if __name__ == "__main__":
    sys.exit(main())
