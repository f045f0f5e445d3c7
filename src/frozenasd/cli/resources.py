"""Subcommands that make or fetch what a run needs: synth, backbones, export, download."""

from __future__ import annotations

import argparse
from pathlib import Path

from frozenasd.cli.vocabulary import HelpFormatter, add_aliases, examples
from frozenasd.errors import FrozenASDError


def cmd_synth(args: argparse.Namespace) -> int:
    from frozenasd.data.synth import synthesize

    written = synthesize(
        args.out,
        args.machine,
        seed=args.seed,
        n_train_source=args.train_source,
        n_train_target=args.train_target,
        n_test_per_cell=args.test_per_cell,
        duration_s=args.duration,
        progress=not args.no_progress,
    )
    print(f"wrote {len(written)} clips to {Path(args.out).resolve()}")
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    from frozenasd.backbones import format_backbones_table

    print(format_backbones_table(), end="")
    return 0


DEFAULT_EXPORT = "eat_base_export.onnx"


def export_file_name(depth: int | None, layers: list[int] | None, int8: bool) -> str:
    """``frozenasd export``'s default output: ``eat_base_export.onnx``, with ``_d<K>`` for a graph cut
    after block K (asked for, or implied by ``--layers``) and ``_int8`` for a quantised one."""
    from frozenasd.backbones.registry import variant_suffix

    if depth is None and layers:
        depth = max(layers) + 1
    suffix = variant_suffix(depth, int8).replace("-", "_")
    return DEFAULT_EXPORT.replace("_export", f"{suffix}_export")


def cmd_export(args: argparse.Namespace) -> int:
    from frozenasd.backbones.eat_export.export import export_onnx

    out = export_onnx(
        args.checkpoint,
        args.out or export_file_name(args.depth, args.layers, args.int8),
        use_ema=args.ema,
        opset=args.opset,
        layers=tuple(args.layers or ()),
        depth=args.depth,
        fused_attention=not args.standard_ops,
        int8=args.int8,
    )
    print(f"written {out}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from frozenasd.backbones import BACKBONES, download, format_models_list
    from frozenasd.backbones.registry import is_backbone_name
    from frozenasd.data.datasets import DATASETS, download_dataset, format_datasets_table

    if args.list or args.name is None:
        print("models (each made into an ONNX file; `frozenasd backbones` says more):")
        print(format_models_list(), end="")
        print("\ndata sets (DCASE Task 2, from Zenodo):")
        print(format_datasets_table(), end="")
        return 0
    if args.name in BACKBONES or is_backbone_name(args.name):
        if args.machine:
            raise FrozenASDError(f"--machine applies to data sets, not to the model {args.name!r}")
        out = download(args.name, args.out, use_ema=args.ema, depth=args.depth, int8=args.int8)
    elif args.name in DATASETS:
        if args.depth is not None or args.int8:
            raise FrozenASDError(f"--depth and --int8 apply to models, not to the data set {args.name!r}")
        out = download_dataset(
            args.name, args.out or "dataset", machines=args.machine, progress=not args.no_progress
        )
        print(f"written {out}\nnext: frozenasd run --data {out} --model eat-base --out results")
        return 0
    else:
        known = ", ".join([*BACKBONES, *DATASETS])
        raise FrozenASDError(f"unknown name {args.name!r}; choose one of: {known}")
    print(f"written {out}")
    return 0


def add_variant_options(parser: argparse.ArgumentParser, model_only: bool = False) -> None:
    """``--depth`` and ``--int8`` of ``export`` and ``download``."""
    from frozenasd.cli.options import positive_int

    which = "model: " if model_only else ""
    parser.add_argument(
        "--depth",
        type=positive_int,
        default=None,
        metavar="K",
        help=f"{which}EAT only: keep the first K transformer blocks (emb and cls are block K-1's tokens; "
        "EAT-base has 12, about 1/12 of the time each); the file name gets -dK (--model eat-base-dK)",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help=f"{which}int8 weights (ONNX Runtime quantisation: dynamic for EAT, static for aisfx and "
        "yamnet); faster on the CPU, slightly different embeddings; the name gets -int8",
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backbones",
        help="list the encoders frozenasd knows and whether each is ready here",
        formatter_class=HelpFormatter,
        epilog=examples("frozenasd backbones"),
    )
    p.set_defaults(func=cmd_backbones)

    from frozenasd.backbones import MANUAL_DOWNLOAD_HELP

    p = sub.add_parser(
        "export",
        help="export an EAT checkpoint (fairseq .pt or Hugging Face port) to ONNX",
        description=MANUAL_DOWNLOAD_HELP,
        formatter_class=HelpFormatter,
        epilog=examples("frozenasd export model_weights/EAT-base_epoch30_pt.pt --out eat_base_export.onnx"),
    )
    p.add_argument("checkpoint", help=".pt, model.safetensors, pytorch_model.bin, or a folder holding one")
    p.add_argument(
        "-o",
        "--out",
        default=None,
        help=f"ONNX file (default: {DEFAULT_EXPORT}; eat_base_d6_int8_export.onnx for --depth 6 --int8)",
    )
    p.add_argument(
        "--ema", action="store_true", help="take the EMA teacher's weights instead of the student's"
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, at least 17 (default: 17)")
    p.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=None,
        help="also output these blocks' tokens as layer_<i> (0-based); without --depth the graph stops "
        "after the deepest one (--layers 5: 6 blocks run, and emb/cls are block 5's tokens)",
    )
    add_variant_options(p)
    p.add_argument(
        "--standard-ops",
        action="store_true",
        help="write attention as standard ONNX operators, for runtimes other than ONNX Runtime "
        "(default: ONNX Runtime's fused MultiHeadAttention, about 5 %% faster)",
    )
    add_aliases(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "download",
        help="make a backbone's ONNX file (downloading an EAT model) or download a DCASE data set",
        description="`frozenasd download eat-base` fetches the Hugging Face port of EAT, checks it and "
        "exports it to ONNX (`--model eat-base` then finds it); `frozenasd download aisfx` prepares a "
        "packaged backbone. `frozenasd download dcase2024-dev --machine fan bearing` fetches DCASE "
        "archives from Zenodo (md5-checked, resumable, extracted safely) into the DCASE layout. "
        "`--list` names everything that can be downloaded.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "frozenasd download eat-base --out eat_base_export.onnx",
            "frozenasd download dcase2024-dev --machine fan bearing --out dataset",
        ),
    )
    p.add_argument(
        "name", nargs="?", default=None, help="a backbone (eat-base, ...) or a data set (dcase2024-dev, ...)"
    )
    p.add_argument(
        "-o",
        "--out",
        default=None,
        help="model: ONNX file (default: EAT ./<name>.onnx, others the cache); data set: folder "
        "(default: dataset)",
    )
    p.add_argument("--machine", nargs="+", default=None, help="data set: machine types (default: all)")
    p.add_argument("--ema", action="store_true", help="model: take the EMA teacher's weights where present")
    add_variant_options(p, model_only=True)
    p.add_argument("--list", action="store_true", help="list the models and data sets")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_aliases(p)
    p.set_defaults(func=cmd_download)

    from frozenasd.data.synth import MACHINES

    p = sub.add_parser(
        "synth",
        help="write synthetic machine sounds in the DCASE layout",
        formatter_class=HelpFormatter,
        epilog=examples("frozenasd synth --out synthetic --machine fan bearing valve"),
    )
    p.add_argument("-o", "--out", required=True, help="dataset root to write: <out>/<machine>/{train,test}/")
    p.add_argument(
        "--machine",
        nargs="+",
        default=list(MACHINES),
        choices=MACHINES,
        help=f"machine types (default: {' '.join(MACHINES)})",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    p.add_argument(
        "--train-source", type=int, default=990, help="normal source training clips (default: 990)"
    )
    p.add_argument("--train-target", type=int, default=10, help="normal target training clips (default: 10)")
    p.add_argument(
        "--test-per-cell",
        type=int,
        default=50,
        help="test clips per (domain, label) cell (default: 50, i.e. 200 test clips)",
    )
    p.add_argument("--duration", type=float, default=10.0, help="clip length in seconds (default: 10)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_aliases(p)
    p.set_defaults(func=cmd_synth)
