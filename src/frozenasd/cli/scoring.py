"""Subcommands that score: run, evaluate, fit, score, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from frozenasd.cli.executors import add_executor_options, opened_executor
from frozenasd.cli.options import (
    MODEL_HELP,
    add_data_root_options,
    add_device_option,
    add_fusion_options,
    add_run_options,
    add_threshold_options,
    positive_int,
    print_summary,
    settings_from,
)
from frozenasd.cli.vocabulary import HelpFormatter, add_aliases, examples
from frozenasd.outputs.names import (
    ANOMALY_SCORE,
    DECISION_RESULT,
    METRICS_TXT,
    REPORT_HTML,
    ROC_PNG,
    SCORES_CSV,
    SUMMARY_MD,
    machine_dir_name,
)

SINGLE_VIEW_HELP = (
    ": one view, with --detector, --pooling and --normalise; without it, a fusion of views "
    "(--preset, --fuse; default: the robust preset)"
)

# `frozenasd score`'s exit status, for cron jobs and CI steps that alert on it (2: as `main` returns
# for every error)
SCORE_NORMAL, SCORE_ANOMALOUS, SCORE_ERROR = 0, 1, 2
SCORE_EXIT_HELP = f"""\
exit status:
  {SCORE_NORMAL}  every recording scored is normal (skipped recordings do not count; they are listed)
  {SCORE_ANOMALOUS}  at least one recording is anomalous: its score is above the fitted threshold
  {SCORE_ERROR}  an error (bad options, a missing or broken fitted file, another encoder), or no
     recording given could be scored (each is listed with the reason)"""


def cmd_run(args: argparse.Namespace) -> int:
    from frozenasd.workflows.run import run

    out = Path(args.out)
    settings = settings_from(args)
    with opened_executor(args) as executor:
        result = run(Path(args.data), args.machine, out, settings, executor=executor, history=args.history)
    code = print_summary(result.metrics)
    print(result.summary, end="")
    where = f", report in {(out / REPORT_HTML).resolve()}" if result.reports else ""
    print(f"outputs in {out.resolve()}/{machine_dir_name('<machine>')}/{where}")
    return code


def cmd_evaluate(args: argparse.Namespace) -> int:
    from frozenasd.workflows.evaluate import evaluate_submission, format_table, write_json

    result = evaluate_submission(args.results, args.ground_truth, args.data)
    print(format_table(result), end="")
    if args.json:
        write_json(result, args.json)
        print(f"written {args.json}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from frozenasd.workflows.fit_score import fit

    settings = settings_from(args)
    with opened_executor(args) as executor:
        info = fit(
            settings, args.out, inputs=args.inputs, data=args.data, machine=args.machine, executor=executor
        )
    rule = info["threshold_rule"]
    how = "fixed" if "fixed" in rule else f"percentile {rule['percentile']:g} of the gamma fit"
    print(
        f"fitted {info['detector']} on {info['n_train']} {info['machine']} clips; threshold "
        f"{info['threshold']:.6f} ({how}); saved to {args.out}"
    )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from frozenasd.outputs.score_json import STDOUT
    from frozenasd.text import printable
    from frozenasd.workflows.fit_score import score_and_write

    with opened_executor(args) as executor:
        result = score_and_write(
            args.fitted,
            args.inputs,
            encoder=args.model,
            csv=args.csv or None,
            frames=args.frames or None,
            json=args.json or None,
            batch_size=args.batch_size,
            num_threads=args.threads,
            progress=not args.no_progress,
            device=args.device,
            executor=executor,
        )
    rows = [
        (str(p), f"{s:.6f}", int(d))
        for p, s, d in zip(result.paths, result.scores, result.decisions, strict=True)
    ]
    if args.json != STDOUT:  # with the JSON on stdout, the table stays out of it
        for path, score, decision in rows:
            print(f"{score}  {'ANOMALY' if decision else 'normal '}  {printable(path)}")
    n_anomalous = sum(r[2] for r in rows)
    print(
        f"threshold {result.threshold:.6f}; {n_anomalous} of {len(rows)} above it; "
        f"{len(result.skipped)} skipped",
        file=sys.stderr if args.json == STDOUT else sys.stdout,
    )
    if not rows:
        print("error: no recording could be scored (the reasons are above)", file=sys.stderr)
        return SCORE_ERROR
    return SCORE_ANOMALOUS if n_anomalous else SCORE_NORMAL


def cmd_demo(args: argparse.Namespace) -> int:
    from frozenasd.workflows.demo import QUICK, run_demo

    result = run_demo(
        args.out,
        backbone=args.model,
        detector=args.detector,
        preset=args.preset,
        machines=args.machine,
        data=QUICK if args.quick else None,
        num_threads=args.threads,
        progress=not args.no_progress,
        device=args.device,
    )
    code = print_summary(result.results)
    if result.summary:
        print()
        print(result.summary, end="")
    timing = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in result.seconds.items())
    out = result.out.resolve()
    print(f"\ntime: {timing}")
    print(f"per machine: {out}/{machine_dir_name('<machine>')}/ ({SCORES_CSV}, {METRICS_TXT}, {ROC_PNG})")
    print(f"DCASE submission files: {out}/{ANOMALY_SCORE}_*.csv, {DECISION_RESULT}_*.csv")
    print(f"summary: {out / SUMMARY_MD}")
    print(f"report: {out / REPORT_HTML}")
    return code


def add_commands(sub: argparse._SubParsersAction) -> None:
    from frozenasd.detectors.pipeline import DETECTORS
    from frozenasd.views import PRESETS

    p = sub.add_parser(
        "run",
        help="fit on normal training clips and score the test clips of each machine",
        formatter_class=HelpFormatter,
        epilog=examples(
            "frozenasd run --data dataset --out results",
            "frozenasd run --data dataset --machine fan valve --model aisfx --out results",
        ),
    )
    add_data_root_options(p, "run")
    p.add_argument("--model", default=None, help=MODEL_HELP + SINGLE_VIEW_HELP)
    p.add_argument(
        "-o", "--out", default=".", help=f"outputs go to <out>/{machine_dir_name('<machine>')}/ (default: .)"
    )
    p.add_argument(
        "--history",
        default=None,
        metavar="FILE",
        help=f"a score history of `frozenasd watch` (or `serve --history`): its trends go into {REPORT_HTML}",
    )
    add_run_options(p)
    add_threshold_options(p)
    add_fusion_options(p)
    add_executor_options(p)
    add_aliases(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "demo",
        help="the offline demo: synthetic machine sounds, a packaged pre-trained model",
        formatter_class=HelpFormatter,
        epilog=examples("frozenasd demo --quick", "frozenasd demo --model yamnet --detector domain-banks"),
    )
    p.add_argument("-o", "--out", default="demo", help="folder for the data and the results (default: demo)")
    p.add_argument(
        "--model",
        default=None,
        help="one packaged model's view (aisfx, yamnet, or logmel: no model; see `backbones`) "
        "instead of the default fusion of views",
    )
    p.add_argument(
        "--detector",
        default=None,
        choices=sorted(DETECTORS),
        help="anomaly detector of --model's view (default: kmeansNN)",
    )
    p.add_argument(
        "--preset",
        default=None,
        choices=sorted(PRESETS),
        help="the fusion of views to run (default: run's, robust; spectral when aiSFX is missing)",
    )
    p.add_argument("--machine", nargs="+", default=None, help="demo machines (default: all)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small data set (4 s clips, 44 training and 40 test clips per machine) for a first look",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="ONNX Runtime threads")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_device_option(p)
    add_aliases(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "evaluate",
        help="DCASE metrics and official score of a folder of submission files",
        formatter_class=HelpFormatter,
        epilog=examples("frozenasd evaluate results --data dataset --json results/eval.json"),
    )
    p.add_argument("results", help=f"folder with {ANOMALY_SCORE}_*.csv and {DECISION_RESULT}_*.csv files")
    p.add_argument(
        "--ground-truth",
        default=None,
        help="the official evaluator's ground-truth root (ground_truth_data/, ground_truth_domain/, "
        "ground_truth_attributes/) for evaluation sets; default: labels from dev file names",
    )
    p.add_argument(
        "--data",
        default=None,
        help="dataset root: check that each score file lists exactly that machine's test clips",
    )
    p.add_argument("--json", default=None, help="also write the result as JSON to this file")
    add_aliases(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "fit",
        help="fit a detector on one machine's normal clips and save it (no pickle)",
        description="Fit on normal recordings given as files and folders (searched recursively), or on "
        "a DCASE layout's training clips with --data ROOT --machine M.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "frozenasd fit --data dataset --machine fan --out fan.npz",
            "frozenasd fit my_pump_normals/ --model aisfx --out pump.npz",
        ),
    )
    p.add_argument("inputs", nargs="*", help="normal recordings: audio files and/or folders")
    p.add_argument("--data", default=None, help="dataset root: <data>/<machine>/train/*.wav")
    p.add_argument(
        "--machine",
        default=None,
        help="machine type to fit (with --data); with recordings, a name to record (default: recordings)",
    )
    p.add_argument("--model", default=None, help=MODEL_HELP + SINGLE_VIEW_HELP)
    p.add_argument("-o", "--out", required=True, help="file to write (.npz)")
    add_run_options(p)
    add_threshold_options(p)
    add_fusion_options(p)
    add_executor_options(p)
    add_aliases(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser(
        "score",
        help="score new recordings with a model saved by `frozenasd fit`",
        formatter_class=HelpFormatter,
        epilog=examples(
            "frozenasd score new_recordings/ --fitted fan.npz --json scores.json",
            "frozenasd score new_recordings/ --fitted fan.npz --json - --no-progress | jq .n_anomalous",
            before=SCORE_EXIT_HELP,
        ),
    )
    p.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    p.add_argument("--fitted", required=True, help="the file written by `frozenasd fit`")
    p.add_argument(
        "--model",
        default=None,
        help="the ONNX encoder a single-view model was fitted with (a file or a backbone name; default: "
        "the one the fitted file names); a fusion finds its branches' models by the names it saved",
    )
    p.add_argument("--csv", default=None, help="also write path,score,anomalous rows to this file")
    p.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="also write every clip's path, score and decision (anomalous: true/false), the threshold "
        "and the skipped clips with their reasons as JSON to FILE; - writes it to stdout instead of the "
        "table (the summary line goes to stderr)",
    )
    p.add_argument(
        "--frames",
        default=None,
        help="also write path,frame,start_s,score rows, every frame of every clip scored, to this file "
        "(a frame detector's: framebank, framebank-topk)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="clips per encoder call, at most (default: 8; on the CPU two 10-s EAT clips at most)",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="ONNX Runtime threads")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_executor_options(p)
    add_device_option(p)
    add_aliases(p)
    p.set_defaults(func=cmd_score)
