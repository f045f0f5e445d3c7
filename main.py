"""The quick start's main job: fit on dataset/fan/train, score dataset/fan/test, write results_fan/.

Run with no argument from the folder that holds ``dataset/`` and ``eat_base_export.onnx``; every
path can be overridden (``python main.py --help``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from frozenasd.cli import HelpFormatter, add_aliases, add_run_options, examples, print_summary, settings_from
from frozenasd.errors import FrozenASDError
from frozenasd.workflows.run import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=HelpFormatter,
        epilog=examples(
            "python main.py --data dataset --machine fan --model eat_base_export.onnx --out results_fan"
        ),
    )
    parser.add_argument("--data", default="dataset", help="dataset root (default: dataset)")
    parser.add_argument("--machine", default="fan", help="machine type (default: fan)")
    parser.add_argument(
        "--model", default="eat_base_export.onnx", help="exported encoder (default: eat_base_export.onnx)"
    )
    parser.add_argument("-o", "--out", default=None, help="output folder (default: results_<machine>)")
    add_run_options(parser)
    add_aliases(parser)
    args = parser.parse_args(argv)
    out_dir = Path(args.out or f"results_{args.machine}")
    try:
        result = run(
            Path(args.data),
            [args.machine],
            out_dir,
            settings_from(args),
            out_dir_for=lambda root, machine: root,
        )
    except FrozenASDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    code = print_summary(result.metrics)
    print(f"outputs in {out_dir.resolve()}")
    return code


if __name__ == "__main__":
    sys.exit(main())
