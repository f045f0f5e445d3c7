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


def cmd_export(args: argparse.Namespace) -> int:
    from frozenasd.backbones.eat_export.export import export_onnx

    out = export_onnx(
        args.checkpoint,
        args.out,
        use_ema=args.ema,
        opset=args.opset,
        layers=tuple(args.layers or ()),
        fused_attention=not args.standard_ops,
    )
    print(f"written {out}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from frozenasd.backbones import BACKBONES, download, format_models_list
    from frozenasd.data.datasets import DATASETS, download_dataset, format_datasets_table

    if args.list or args.name is None:
        print("models (each made into an ONNX file; `frozenasd backbones` says more):")
        print(format_models_list(), end="")
        print("\ndata sets (DCASE Task 2, from Zenodo):")
        print(format_datasets_table(), end="")
        return 0
    if args.name in BACKBONES:
        if args.machine:
            raise FrozenASDError(f"--machine applies to data sets, not to the model {args.name!r}")
        out = download(args.name, args.out, use_ema=args.ema)
    elif args.name in DATASETS:
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
        "-o", "--out", default="eat_base_export.onnx", help="ONNX file (default: eat_base_export.onnx)"
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
        help="also output these blocks' tokens as layer_<i> (0-based)",
    )
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
