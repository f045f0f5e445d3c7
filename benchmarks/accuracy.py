"""Accuracy harness: every configuration of `frozenasd run` on one or more named data sets → one table.

    python benchmarks/accuracy.py --data real=../shared/realdata --data demo=demo/data \
        --grid "--model aisfx yamnet" "--detector kmeansNN mahalanobis" \
        --config "max=--model aisfx --pooling max --detector mahalanobis" --out accuracy.md

A configuration is a list of `frozenasd run` options, parsed by that command's own parser, so any
option it accepts can be measured. Three ways to give them (all may be combined):

- ``--config "NAME=OPTIONS"`` (or ``--config "OPTIONS"``, named after its options): one configuration;
- ``--grid AXIS [AXIS ...]``: the product of the axes; an axis is an option and its values
  (``"--detector knn mahalanobis"``) or alternatives separated by ``|``
  (``"--pooling max --normalise peak | --pooling mean"``);
- ``--encoder`` × ``--embedding`` × ``--detector``: the grid of encoders (ONNX files or backbone names),
  embedding choices and detectors.

``--data`` takes ``NAME=DIR`` or a bare ``DIR`` (named after the folder). One embedding cache serves the
whole harness run, so configurations that embed alike embed once. The markdown file holds one table of
every configuration: per data set the official score and each machine's hmean, and the worst machine
over all data sets (the best worst case is marked); then one DCASE table per configuration and data set.
A configuration that fails (an unknown option, a missing model, a machine that cannot be scored) is
reported as failed with its error and the others are still measured. The file is rewritten after each
measurement, so an interrupted harness keeps what it measured. With ``--benchmarks-md`` the section
replaces the "Accuracy" section of that file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import machine, write_section

from frozenasd.cli import build_parser as frozenasd_parser
from frozenasd.cli import settings_from
from frozenasd.data.dcase import discover_machines, list_clips
from frozenasd.errors import FrozenASDError
from frozenasd.evaluation.metrics import official_score
from frozenasd.settings import RunSettings
from frozenasd.workflows.evaluate import format_table
from frozenasd.workflows.run import run

SECTION = "## Accuracy (benchmarks/accuracy.py)"
EMBEDDINGS = {
    "mean": {"output": None, "pooling": "mean"},
    "cls": {"output": "cls", "pooling": "none"},
    "bands": {"output": None, "pooling": "bands"},
}
BEST = "★"  # marks the configuration(s) with the best worst case
ERROR_CHARS = 160  # of an error shown in a table cell (the details below the table hold all of it)


@dataclass
class Config:
    """One configuration: its name, its `frozenasd run` options, and what they parse to (or why not)."""

    name: str
    options: list[str]
    settings: RunSettings | None = None
    error: str | None = None


@dataclass
class DataSet:
    """A named DCASE-layout data set and its machines."""

    name: str
    root: Path
    machines: list[str] = field(default_factory=list)
    description: str = ""


@dataclass
class Outcome:
    """One configuration on one data set: per-machine results, or the error that stopped it."""

    results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    @property
    def score(self) -> float | None:
        """The official score, when every machine was scored with all three metrics."""
        if self.error or not self.results or self.failed_machines():
            return None
        try:
            return official_score(self.results)
        except ValueError:
            return None

    def failed_machines(self) -> dict[str, str]:
        return {m: r for m, r in self.results.items() if isinstance(r, str)}

    def hmean(self, name: str) -> float | None:
        result = self.results.get(name)
        return None if not isinstance(result, dict) else result.get("hmean")


# ---------------------------------------------------------------------------------------------------
# Command line: data sets and configurations


def embedding_settings(name: str) -> dict:
    """The run settings of an embedding choice: a named one, or ``layer_<i>[-bands]``."""
    if name in EMBEDDINGS:
        return EMBEDDINGS[name]
    layer, _, pooling = name.partition("-")
    return {"output": layer, "pooling": pooling or "mean"}


def embedding_choice(text: str) -> str:
    if text in EMBEDDINGS or re.fullmatch(r"layer_\d+(-bands)?", text):
        return text
    raise argparse.ArgumentTypeError(
        f"unknown embedding {text!r}: choose {', '.join(EMBEDDINGS)}, layer_<i> or layer_<i>-bands"
    )


def embedding_options(name: str) -> list[str]:
    """The `frozenasd run` options of an embedding choice."""
    chosen = embedding_settings(name)
    output = ["--encoder-output", chosen["output"]] if chosen["output"] else []
    return [*output, "--pooling", chosen["pooling"]]


def data_spec(text: str) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR`` (named after the folder) → (name, folder)."""
    named = re.fullmatch(r"([\w.-]+)=(.+)", text)
    if named and not Path(text).exists():
        return named.group(1), Path(named.group(2))
    path = Path(text)
    return path.resolve().name or "data", path


def config_spec(text: str) -> tuple[str | None, list[str]]:
    """``NAME=OPTIONS`` or ``OPTIONS`` → (name or None, the options as tokens)."""
    named = re.fullmatch(r"\s*([^-\s=][^=]*?)\s*=(.*)", text, flags=re.S)
    name, options = (named.group(1), named.group(2)) if named else (None, text)
    try:
        tokens = shlex.split(options)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"configuration {text!r}: {exc}") from None
    return name, tokens


def grid_axis(text: str) -> list[tuple[str, list[str]]]:
    """An axis of a grid → its alternatives as (label, options).

    ``"--detector knn mahalanobis"`` gives one alternative per value; ``"--pooling max --normalise peak |
    --pooling mean"`` gives the ``|``-separated option lists (an empty one means the defaults).
    """
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"grid axis {text!r}: {exc}") from None
    if "|" in tokens:
        groups = [list(g) for is_bar, g in itertools.groupby(tokens, lambda t: t == "|") if not is_bar]
        if tokens[0] == "|" or tokens[-1] == "|":
            groups.append([])
        return [(" ".join(g) or "defaults", g) for g in groups]
    if len(tokens) < 2 or not tokens[0].startswith("-"):
        raise argparse.ArgumentTypeError(
            f"grid axis {text!r}: give an option and its values (e.g. '--detector knn mahalanobis') "
            "or '|'-separated option lists"
        )
    option, values = tokens[0], tokens[1:]
    return [(value, [option, value]) for value in values]


def expand_grid(axes: list[list[tuple[str, list[str]]]]) -> list[tuple[str, list[str]]]:
    """The product of a grid's axes (each as ``grid_axis`` gives it) → (name, options) per configuration."""
    return [
        (" · ".join(label for label, _ in combo), [t for _, options in combo for t in options])
        for combo in itertools.product(*axes)
    ]


def legacy_grid(encoders: list[str], embeddings: list[str], detectors: list[str]) -> list[tuple[str, list]]:
    """``--encoder`` × ``--embedding`` × ``--detector`` as configurations."""
    return [
        (
            f"{spec} · {embedding} · {detector}",
            ["--model", spec, *embedding_options(embedding), "--detector", detector],
        )
        for spec in encoders
        for embedding in embeddings
        for detector in detectors
    ]


class OptionsError(ValueError):
    """Options `frozenasd run` rejects (argparse's message)."""


def parse_run_options(options: list[str]) -> argparse.Namespace:
    """``options`` as `frozenasd run` parses them; OptionsError with argparse's message if it rejects them."""
    argv = ["run", "--data", "<data>", "--out", "<out>", *options]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return frozenasd_parser().parse_args(argv)
    except SystemExit:
        lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
        raise OptionsError(lines[-1] if lines else "not options `frozenasd run` accepts") from None


def describe_error(exc: Exception) -> str:
    """The message of a failure; the exception's type too unless it is the project's own or argparse's."""
    if isinstance(exc, (FrozenASDError, OptionsError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def make_config(name: str, options: list[str], harness_options: list[str]) -> Config:
    """Parse a configuration's options into run settings; a problem is kept as its error, not raised.

    ``harness_options`` (the shared cache, no progress bars) follow the configuration's own, so they win.
    """
    config = Config(name, options)
    try:
        config.settings = settings_from(parse_run_options([*options, *harness_options]))
    except Exception as exc:  # noqa: BLE001 - any failure of one configuration is reported, not raised
        config.error = describe_error(exc)
    return config


EAT_DEPTHS = (4, 6, 8, 12)  # EAT-base has 12 blocks: eat-base-d12 is eat-base


def eat_variant_configs(detector: str = "mahalanobis") -> list[tuple[str, list[str]]]:
    """EAT-base cut after K blocks, fp32 and int8, one view each under ``detector``.

    Each needs its export first: ``frozenasd download eat-base --depth K [--int8]`` (``eat-base`` and
    ``eat-base-int8`` for the 12 blocks). Until then each row fails, naming the command to run.
    """
    wanted = []
    for depth in EAT_DEPTHS:
        for int8 in (False, True):
            name = "eat-base" + (f"-d{depth}" if depth != 12 else "") + ("-int8" if int8 else "")
            wanted.append((f"{name} {detector}", ["--model", name, "--detector", detector]))
    return wanted


def build_configs(args: argparse.Namespace, harness_options: list[str]) -> list[Config]:
    """Every configuration the command line asks for, in order: --config, --grid, --encoder, then
    --eat-variants."""
    wanted: list[tuple[str, list[str]]] = []
    for name, options in args.config or []:
        wanted.append((name or " ".join(options) or "defaults", options))
    for axes in args.grid or []:
        wanted += expand_grid(axes)
    if args.encoder:
        wanted += legacy_grid(args.encoder, args.embedding or ["mean"], args.detector or ["kmeansNN"])
    if getattr(args, "eat_variants", False):
        wanted += eat_variant_configs()
    names = [name for name, _ in wanted]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SystemExit(f"error: configuration names given twice: {', '.join(duplicated)}; name them apart")
    return [make_config(name, options, harness_options) for name, options in wanted]


# ---------------------------------------------------------------------------------------------------
# Measuring


def describe_data(root: Path, machines: list[str]) -> str:
    """What each machine holds, e.g. ``per machine 290 source + 10 target training clips, 200 test``."""
    import soundfile as sf

    counts = set()
    seconds = set()
    for name in machines:
        train, test = list_clips(root, name, "train"), list_clips(root, name, "test")
        source = sum(c.domain == "source" for c in train)
        counts.add((source, len(train) - source, len(test)))
        for clip in (train + test)[:3]:
            try:
                seconds.add(round(sf.info(str(clip.path)).duration, 1))
            except RuntimeError:  # an unreadable clip: the runs skip it, the description does too
                pass
    length = f" of {seconds.pop():g} s" if len(seconds) == 1 else ""
    if len(counts) == 1:
        source, target, test = counts.pop()
        return (
            f"{', '.join(machines)}: per machine {source} source + {target} target training clips and "
            f"{test} test clips{length}"
        )
    return f"{', '.join(machines)}{length}"


def is_eat(encoder: Path) -> bool:
    from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor

    try:
        return ONNXFeatureExtractor(encoder).fit().frontend_.get("name") == "eat_fbank"
    except Exception:  # noqa: BLE001 - not an ONNX encoder this extractor opens: not EAT either
        return False


def measure(config: Config, data: DataSet, out: Path) -> Outcome:
    """Run one configuration on one data set; any failure is returned as the outcome's error."""
    if config.settings is None:
        return Outcome(error=config.error)
    start = time.perf_counter()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            results = run(data.root, None, out, config.settings).metrics
    except Exception as exc:  # noqa: BLE001 - one configuration must not end the harness
        return Outcome(error=describe_error(exc), seconds=time.perf_counter() - start)
    outcome = Outcome(results=results, seconds=time.perf_counter() - start)
    failed = outcome.failed_machines()
    if failed:
        outcome.error = "; ".join(f"{m}: {reason}" for m, reason in failed.items())
    return outcome


# ---------------------------------------------------------------------------------------------------
# The markdown section


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def cell(text: str) -> str:
    """``text`` safe inside a markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def shorten(text: str, limit: int = ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def worst_machine(outcomes: dict[str, Outcome], datasets: list[DataSet]) -> tuple[float, str] | None:
    """The lowest machine hmean over every data set, with ``data/machine``; None unless all were scored."""
    values = []
    for data in datasets:
        outcome = outcomes.get(data.name)
        if outcome is None or outcome.error:
            return None
        for name in data.machines:
            value = outcome.hmean(name)
            if value is None:
                return None
            values.append((value, f"{data.name}/{name}"))
    return min(values, key=lambda v: v[0]) if values else None  # a tie: the first in the table's order


def summary_table(configs: list[Config], datasets: list[DataSet], outcomes: dict) -> tuple[list[str], str]:
    """The table of every configuration, and a sentence naming the best worst case."""
    head = ["configuration", "options"]
    for data in datasets:
        head += [f"{data.name}: official score %", *(f"{data.name}: {m}" for m in data.machines)]
    head.append("worst machine %")
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    worst = {c.name: worst_machine(outcomes.get(c.name, {}), datasets) for c in configs}
    best = max((w[0] for w in worst.values() if w), default=None)
    best_names = [c.name for c in configs if worst[c.name] and worst[c.name][0] == best]
    for config in configs:
        mine = outcomes.get(config.name, {})
        name = f"**{config.name}** {BEST}" if config.name in best_names else config.name
        row = [cell(name), f"`{cell(shlex.join(config.options))}`" if config.options else "(defaults)"]
        for data in datasets:
            outcome = mine.get(data.name)
            if outcome is None:
                row += ["not run"] + [""] * len(data.machines)
                continue
            if outcome.score is None:
                row.append("failed: " + cell(shorten(outcome.error or "no official score")))
            else:
                row.append(percent(outcome.score))
            row += [
                "failed" if isinstance(outcome.results.get(m), str) else percent(outcome.hmean(m))
                for m in data.machines
            ]
        w = worst[config.name]
        row.append(f"{percent(w[0])} ({w[1]})" if w else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    if best is None:
        verdict = "No configuration was scored on every machine of every data set."
    else:
        verdict = (
            f"{BEST} best worst case (the highest lowest machine hmean over all data sets): "
            + ", ".join(f"**{cell(n)}**" for n in best_names)
            + f", {percent(best)} %."
        )
    return lines, verdict


def details(configs: list[Config], datasets: list[DataSet], outcomes: dict) -> list[str]:
    """One DCASE table (or the error) per configuration and data set, collapsed."""
    lines: list[str] = []
    for config in configs:
        for data in datasets:
            outcome = outcomes.get(config.name, {}).get(data.name)
            if outcome is None:
                continue
            title = f"{cell(config.name)} on {data.name} ({outcome.seconds:.1f} s)"
            body = []
            scored = {m: r for m, r in outcome.results.items() if not isinstance(r, str)}
            if scored:
                body.append(format_table({"machines": scored, "official_score": outcome.score}).rstrip())
            if outcome.error:
                body.append("Failed: " + cell(outcome.error))
            lines += ["<details>", f"<summary>{title}</summary>", "", "\n\n".join(body), "", "</details>", ""]
    return lines


METRICS_NOTE = (
    "Per machine: hmean of AUC (source), AUC (target) and pAUC, in %; the official score is their harmonic "
    "mean over a data set's machines; worst machine: the lowest machine hmean over all data sets. Every "
    "configuration tried is listed."
)
DETAILS_NOTE = (
    "Per configuration and data set, the DCASE table; seconds in brackets: the first configuration of each "
    "encoder and embedding includes embedding every clip, the others re-score from the embedding cache."
)


def render(
    configs: list[Config], datasets: list[DataSet], outcomes: dict, command: str, notes: list[str]
) -> str:
    """The whole markdown section."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    host = machine()
    data_lines = [f"`{d.name}` = `{d.root}`: {d.description}." for d in datasets]
    table, verdict = summary_table(configs, datasets, outcomes)
    lines = [
        SECTION,
        "",
        "Data: " + " ".join(data_lines),
        f"Measured {stamp} on {host['cpu']}, {host['cores']} cores. Command: `{command}`.",
        METRICS_NOTE,
        *notes,
        "",
        *table,
        "",
        verdict,
        "",
        DETAILS_NOTE,
        "",
        *details(configs, datasets, outcomes),
    ]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------------


def as_json(configs: list[Config], datasets: list[DataSet], outcomes: dict) -> dict:
    """What the table shows, for a program: per configuration its options, outcomes and worst machine."""
    rows = []
    for config in configs:
        mine = outcomes.get(config.name, {})
        worst = worst_machine(mine, datasets)
        data = {
            d.name: {
                "official_score": mine[d.name].score,
                "hmean": {m: mine[d.name].hmean(m) for m in d.machines},
                "error": mine[d.name].error,
                "seconds": round(mine[d.name].seconds, 3),
            }
            for d in datasets
            if d.name in mine
        }
        rows.append(
            {
                "name": config.name,
                "options": config.options,
                "data": data,
                "worst": None if worst is None else {"hmean": worst[0], "machine": worst[1]},
            }
        )
    return {
        "data": {d.name: {"root": str(d.root), "machines": d.machines} for d in datasets},
        "configs": rows,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        type=data_spec,
        metavar="[NAME=]DIR",
        help="a DCASE-layout data set, named (real=../shared/realdata) or after its folder; repeatable",
    )
    parser.add_argument(
        "--config",
        action="append",
        type=config_spec,
        metavar="[NAME=]OPTIONS",
        help="one configuration: `frozenasd run` options, e.g. 'max=--model aisfx --pooling max'",
    )
    parser.add_argument(
        "--grid",
        action="append",
        nargs="+",
        type=grid_axis,
        metavar="AXIS",
        help="configurations: the product of the axes, each '--option value ...' or 'options | options'",
    )
    parser.add_argument("--encoder", action="append", help="ONNX file or backbone name (a grid axis)")
    parser.add_argument(
        "--embedding",
        action="append",
        type=embedding_choice,
        default=None,
        help=f"with --encoder: embedding choice(s): {', '.join(EMBEDDINGS)}, or layer_<i> / layer_<i>-bands "
        "for an export with `--layers` (default: mean)",
    )
    parser.add_argument(
        "--detector", action="append", help="with --encoder: detector name(s) (default: kmeansNN)"
    )
    parser.add_argument(
        "--eat-variants",
        action="store_true",
        help="add EAT-base at 4, 6, 8 and 12 blocks, fp32 and int8, each under mahalanobis (export "
        "them first: frozenasd download eat-base --depth K [--int8])",
    )
    parser.add_argument("--out", type=Path, default=Path("accuracy.md"), help="markdown file to write")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    parser.add_argument("--work", type=Path, default=None, help="folder for run outputs (default: temporary)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="the embedding cache of every configuration (default: WORK/cache)",
    )
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    parser.add_argument(
        "--note", action="append", default=None, help="a sentence to add to the section's notes"
    )
    parser.add_argument(
        "--benchmarks-md",
        type=Path,
        default=None,
        help="also put the section into this file's 'Accuracy' section",
    )
    return parser


def load_datasets(specs: list[tuple[str, Path]]) -> list[DataSet]:
    """The data sets, their machines and descriptions (read before any run: a problem shows at once)."""
    names = [name for name, _ in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SystemExit(f"error: data set names given twice: {', '.join(duplicated)}; use --data NAME=DIR")
    datasets = []
    for name, root in specs:
        try:
            machines = discover_machines(root)
            datasets.append(DataSet(name, root, machines, describe_data(root, machines)))
        except FrozenASDError as exc:
            raise SystemExit(f"error: data set {name!r} ({root}): {exc}") from None
    return datasets


def write_outputs(
    args: argparse.Namespace, body: str, configs: list[Config], datasets: list[DataSet], outcomes: dict
) -> None:
    """The markdown file, and the JSON file when asked for."""
    args.out.write_text(body)
    if args.json:
        args.json.write_text(json.dumps(as_json(configs, datasets, outcomes), indent=2) + "\n")


def slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_")[:80] or "config"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.embedding or args.detector) and not args.encoder:
        raise SystemExit("error: --embedding and --detector make a grid with --encoder; use --grid otherwise")
    if not (args.config or args.grid or args.encoder):
        raise SystemExit("error: give configurations: --config, --grid, or --encoder [--detector ...]")
    if args.work is not None:
        return run_harness(args, args.work, argv)
    with tempfile.TemporaryDirectory(prefix="frozenasd-accuracy-") as work:
        return run_harness(args, Path(work), argv)


def run_harness(args: argparse.Namespace, work: Path, argv: list[str] | None) -> int:
    """Measure every configuration on every data set, with run outputs (and by default the cache) in
    ``work``, and write the results."""
    cache = args.cache_dir or work / "cache"
    harness_options = ["--cache-dir", str(cache), "--no-progress"]
    if args.threads:
        harness_options += ["--threads", str(args.threads)]
    datasets = load_datasets(args.data)
    configs = build_configs(args, harness_options)
    command = "python benchmarks/accuracy.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    notes = list(args.note or [])
    models = {c.settings.model_path for c in configs if c.settings and c.settings.model_path}
    if not any(is_eat(path) for path in models):
        notes.append(
            "No EAT encoder was measured in this run (an `eat-base` configuration fails until its weights "
            'are present): `--config "eat=--model eat-base"` (or `--encoder eat-base.onnx --embedding mean '
            "--embedding cls --embedding bands`) measures it, and `--embedding layer_5` a block's output "
            "with an export made with `--layers 5`."
        )

    outcomes: dict[str, dict[str, Outcome]] = {}
    for i, config in enumerate(configs):
        for data in datasets:
            out = work / "runs" / slug(data.name) / f"{i:03d}-{slug(config.name)}"
            outcome = measure(config, data, out)
            outcomes.setdefault(config.name, {})[data.name] = outcome
            status = f"official score {percent(outcome.score)} %" if outcome.score is not None else "FAILED"
            print(f"{config.name} on {data.name}: {status} ({outcome.seconds:.1f} s)", flush=True)
            if outcome.error:
                print(f"  {outcome.error}", flush=True)
            write_outputs(
                args, render(configs, datasets, outcomes, command, notes), configs, datasets, outcomes
            )
    body = render(configs, datasets, outcomes, command, notes)
    write_outputs(args, body, configs, datasets, outcomes)
    print(f"written {args.out}" + (f" and {args.json}" if args.json else ""))
    if args.benchmarks_md:
        write_section(body, SECTION, args.benchmarks_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
