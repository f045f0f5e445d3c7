"""Score a DCASE Task 2 submission directory the way the official evaluator does.

A result directory holds, per machine type and section, the headerless CSVs
``anomaly_score_<machine>_section_<SS>_test.csv`` (``<wav name>,<score>``) and optionally
``decision_result_<machine>_section_<SS>_test.csv`` (``<wav name>,<0|1>``).

Labels and domains come from the development-set file names in the rows, or, with a ground-truth
directory laid out as the official evaluator's::

    <gt>/ground_truth_data/ground_truth_<machine>_section_<SS>_test.csv     <wav name>,<0 normal|1 anomaly>
    <gt>/ground_truth_domain/ground_truth_<machine>_section_<SS>_test.csv   <wav name>,<0 source|1 target>
    <gt>/ground_truth_attributes/ground_truth_<machine>_section_<SS>_test.csv  (optional)
                                                        <anonymised wav name>,<full name without .wav>

The attribute table lets a submission name evaluation clips by their full names; they are mapped back
to the anonymised names. Rows are matched to the ground truth by file name. File names are taken as
written (only the values are stripped of spaces); names that are not valid UTF-8 are matched in the
escaped form the outputs write (see ``outputs.printable``).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from frozenasd.data.dcase import DOMAINS, discover_machines, domain_from_name, label_from_name, list_clips
from frozenasd.errors import LayoutError
from frozenasd.evaluation.metrics import (
    clipped_hmean,
    domain_decision_metrics,
    machine_metrics,
    official_score,
)
from frozenasd.outputs.names import (
    ANOMALY_SCORE,
    DECISION_RESULT,
    GROUND_TRUTH,
    section_file_glob,
    section_file_name,
    section_file_pattern,
)
from frozenasd.outputs.submission import section_id
from frozenasd.text import printable

PathLike = str | os.PathLike

_SCORE_FILE = section_file_pattern(ANOMALY_SCORE)
_GT_FILE = section_file_pattern(GROUND_TRUTH)
_DOMAIN_NAMES = dict(enumerate(DOMAINS))  # the ground-truth domain files code 0 source, 1 target
_TABLE_KEYS = ("auc_source", "auc_target", "pauc", "hmean")


def _read_pairs(path: Path) -> dict[str, str]:
    """Rows ``<name>,<value>`` of a headerless CSV, in file order; a name listed twice is an error."""
    if not path.is_file():
        raise LayoutError(f"{path}: file not found")
    pairs: dict[str, str] = {}
    first_line: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 2:
                raise LayoutError(f"{path}:{lineno}: expected '<wav file name>,<value>', got {row!r}")
            name, value = row[0], row[1].strip()
            if name in pairs:
                raise LayoutError(f"{path}: {name!r} is listed twice (lines {first_line[name]} and {lineno})")
            pairs[name] = value
            first_line[name] = lineno
    if not pairs:
        raise LayoutError(f"{path}: file has no rows")
    return pairs


def _to_float(path: Path, name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LayoutError(f"{path}: value {text!r} of {name!r} is not a number") from None
    if not math.isfinite(value):
        raise LayoutError(f"{path}: value of {name!r} is {text!r}; scores must be finite")
    return value


def _to_binary(path: Path, name: str, text: str) -> int:
    value = _to_float(path, name, text)
    if value not in (0.0, 1.0):
        raise LayoutError(f"{path}: value {text!r} of {name!r} must be 0 or 1")
    return int(value)


def _find_score_files(result_dir: Path) -> dict[tuple[str, str], Path]:
    if not result_dir.is_dir():
        raise LayoutError(f"{result_dir}: result directory not found")
    found = {}
    for path in sorted(result_dir.iterdir()):
        m = _SCORE_FILE.match(path.name)
        if m and path.is_file():
            found[(m["machine"], m["section"])] = path
    if not found:
        raise LayoutError(
            f"{result_dir}: no anomaly score file "
            f"({section_file_name(ANOMALY_SCORE, '<machine>', '<SS>')}) found"
        )
    for path in sorted(result_dir.glob(section_file_glob(DECISION_RESULT))):
        score_name = ANOMALY_SCORE + path.name.removeprefix(DECISION_RESULT)
        if not (result_dir / score_name).is_file():
            raise LayoutError(f"{path}: decision file without its anomaly score file {score_name}")
    return found


def _read_ground_truth(gt_dir: Path, machine: str, section: str) -> tuple[dict[str, tuple[int, str]], dict]:
    """``{wav name: (label, domain)}`` and the ``{full name: anonymised name}`` map of one machine/section."""
    name = section_file_name(GROUND_TRUTH, machine, section)
    data_path = gt_dir / "ground_truth_data" / name
    domain_path = gt_dir / "ground_truth_domain" / name
    if not data_path.is_file():
        raise LayoutError(f"{data_path}: no ground truth for machine {machine!r} section {section}")
    labels = {k: _to_binary(data_path, k, v) for k, v in _read_pairs(data_path).items()}
    domains = {k: _to_binary(domain_path, k, v) for k, v in _read_pairs(domain_path).items()}
    if set(labels) != set(domains):
        diff = sorted(set(labels) ^ set(domains))
        raise LayoutError(f"{data_path} and {domain_path} list different clips, e.g. {diff[:3]}")
    attr_path = gt_dir / "ground_truth_attributes" / name
    aliases: dict[str, str] = {}
    if attr_path.is_file() and attr_path.stat().st_size > 0:  # an empty file maps nothing, as officially
        aliases = {f"{full}.wav": anon for anon, full in _read_pairs(attr_path).items()}
    truth = {k: (labels[k], _DOMAIN_NAMES[domains[k]]) for k in labels}
    return truth, aliases


def _test_clips_by_section(dataset_root: Path, machine: str) -> dict[str, set[str]]:
    """``{section: file names}`` of a machine's test clips, grouped and named as ``run`` writes them."""
    found: dict[str, set[str]] = {}
    for clip in list_clips(dataset_root, machine, "test"):
        try:
            section = section_id(clip.section or "00")
        except ValueError:  # a section number too long for a file name: never in a submission
            continue
        found.setdefault(section, set()).add(printable(clip.name))
    return found


def _check_dataset(
    dataset_root: Path, machine: str, section: str, names: list[str], score_path: Path
) -> None:
    test_dir = dataset_root / machine / "test"
    if not test_dir.is_dir():
        raise LayoutError(f"{test_dir}: test folder of machine {machine!r} not found")
    on_disk = _test_clips_by_section(dataset_root, machine).get(section_id(section), set())
    listed = set(names)
    missing = sorted(on_disk - listed)
    extra = sorted(listed - on_disk)
    if missing or extra:
        raise LayoutError(
            f"{score_path}: must list exactly the {len(on_disk)} test clips of {test_dir} "
            f"(section {section}); missing {missing[:3]}, not in the dataset {extra[:3]}"
        )


def _check_every_machine(result_dir: Path, dataset_root: Path, score_files: dict) -> None:
    """LayoutError naming each machine of the dataset whose test sections have no score file."""
    written = {(machine, section_id(section)) for machine, section in score_files}
    missing: list[str] = []
    for machine in discover_machines(dataset_root):
        if not (dataset_root / machine / "test").is_dir():
            continue
        absent = [
            section_file_name(ANOMALY_SCORE, machine, section)
            for section in sorted(_test_clips_by_section(dataset_root, machine))
            if (machine, section) not in written
        ]
        if absent:
            missing.append(f"{machine} ({', '.join(absent)})")
    if missing:
        raise LayoutError(
            f"{result_dir}: score files missing for {len(missing)} machine(s) of {dataset_root}: "
            + "; ".join(missing)
        )


def _labelled_rows(
    score_path: Path,
    scores: dict[str, str],
    gt_dir: Path | None,
    machine: str,
    section: str,
) -> tuple[list[str], list[str], list[int], list[str]]:
    """``(submitted names, keys, labels, domains)`` sorted by key (the ground-truth name)."""
    if gt_dir is None:
        rows = []
        for name in scores:
            label, domain = label_from_name(name), domain_from_name(name)
            if label is None or domain is None:
                what = "label (normal/anomaly)" if label is None else "domain (source/target)"
                raise LayoutError(
                    f"{score_path}: cannot tell the {what} of {name!r} from its name; "
                    "evaluate with a ground-truth directory"
                )
            rows.append((name, name, label, domain))
    else:
        truth, aliases = _read_ground_truth(gt_dir, machine, section)
        gt_path = gt_dir / "ground_truth_data" / section_file_name(GROUND_TRUTH, machine, section)
        if len(scores) != len(truth):
            raise LayoutError(f"{score_path} has {len(scores)} rows but {gt_path} lists {len(truth)} clips")
        keys = {name: aliases.get(name, name) for name in scores}
        unknown = [name for name, key in keys.items() if key not in truth]
        if unknown:
            raise LayoutError(f"{score_path}: clip(s) not in the ground truth {gt_path}: {unknown[:3]}")
        if len(set(keys.values())) != len(keys):
            raise LayoutError(f"{score_path}: some clips are listed twice (under full and anonymised names)")
        rows = [(name, key, *truth[key]) for name, key in keys.items()]
    rows.sort(key=lambda r: r[1])
    names, keys_sorted, labels, domains = (list(col) for col in zip(*rows, strict=True))
    return names, keys_sorted, labels, domains


def _evaluate_section(
    score_path: Path,
    decision_path: Path,
    gt_dir: Path | None,
    dataset_root: Path | None,
    machine: str,
    section: str,
) -> dict[str, Any]:
    raw_scores = _read_pairs(score_path)
    if dataset_root is not None:
        _check_dataset(dataset_root, machine, section, list(raw_scores), score_path)
    names, _, labels, domains = _labelled_rows(score_path, raw_scores, gt_dir, machine, section)
    y_score = np.array([_to_float(score_path, n, raw_scores[n]) for n in names])
    y_true = np.asarray(labels)
    try:
        result = machine_metrics(y_true, y_score, domains)
    except ValueError as exc:
        raise LayoutError(f"{score_path}: {exc}") from None
    for key in ("auc_source", "auc_target"):
        if result[key] is None:
            raise LayoutError(f"{score_path}: {key} cannot be computed (a domain has no normal clip)")
    if decision_path.is_file():
        raw_dec = _read_pairs(decision_path)
        if set(raw_dec) != set(raw_scores):
            diff = sorted(set(raw_dec) ^ set(raw_scores))
            raise LayoutError(f"{decision_path} and {score_path} list different clips, e.g. {diff[:3]}")
        decisions = np.array([_to_binary(decision_path, n, raw_dec[n]) for n in names])
        result.update(domain_decision_metrics(y_true, decisions, domains))
    result["n_clips"] = len(names)
    return result


def _combine_sections(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One machine over several sections: arithmetic means of each metric, hmean over all 3·S values."""
    if len(sections) == 1:
        return dict(next(iter(sections.values())))
    combined: dict[str, Any] = {}
    keys = [k for k in next(iter(sections.values())) if not k.startswith("n_")]
    for key in keys:
        values = [s.get(key) for s in sections.values()]
        combined[key] = None if any(v is None for v in values) else float(np.mean(values))
    for key in ("n_normal", "n_anomaly", "n_clips", "n_source", "n_target"):
        combined[key] = sum(int(s.get(key) or 0) for s in sections.values())
    combined["hmean"] = official_score(sections)
    combined["sections"] = sections
    return combined


def evaluate_submission(
    result_dir: PathLike, ground_truth_dir: PathLike | None = None, dataset_root: PathLike | None = None
) -> dict[str, Any]:
    """Evaluate the submission CSVs in ``result_dir``; metrics are fractions in [0, 1].

    Returns ``{"machines": {machine: metrics}, "official_score": float, "arithmetic_mean": float}`` where
    each machine's metrics hold ``auc``, ``auc_source``, ``auc_target``, ``pauc``, ``hmean``, the clip
    counts and, when a decision file is present, ``precision_/recall_/f1_<source|target>``. A machine
    with several sections gets the arithmetic mean of each metric over its sections, ``hmean`` over all
    its values, and the per-section metrics under ``sections``. With ``dataset_root``, each score file
    must list exactly the clips of ``<dataset_root>/<machine>/test/section_<SS>_*.wav``.
    """
    result_path = Path(result_dir)
    gt_dir = None if ground_truth_dir is None else Path(ground_truth_dir)
    root = None if dataset_root is None else Path(dataset_root)
    score_files = _find_score_files(result_path)
    if root is not None:
        _check_every_machine(result_path, root, score_files)
    if gt_dir is not None:
        data_dir = gt_dir / "ground_truth_data"
        if not data_dir.is_dir():
            raise LayoutError(f"{data_dir}: ground-truth folder not found")
        expected = {(m["machine"], m["section"]) for p in data_dir.iterdir() if (m := _GT_FILE.match(p.name))}
        missing = sorted(expected - set(score_files))
        if missing:
            machine, section = missing[0]
            raise LayoutError(
                f"{result_path}: {section_file_name(ANOMALY_SCORE, machine, section)} is missing "
                f"({len(missing)} machine/section pair(s) of the ground truth have no score file)"
            )

    per_section: dict[str, dict[str, dict[str, Any]]] = {}
    for (machine, section), score_path in sorted(score_files.items()):
        decision_path = result_path / section_file_name(DECISION_RESULT, machine, section)
        metrics = _evaluate_section(score_path, decision_path, gt_dir, root, machine, section)
        per_section.setdefault(machine, {})[section] = metrics

    flat = {f"{m}/section_{s}": v for m, secs in per_section.items() for s, v in secs.items()}
    all_values = [v[k] for v in flat.values() for k in ("auc_source", "auc_target", "pauc")]
    return {
        "machines": {m: _combine_sections(secs) for m, secs in per_section.items()},
        "official_score": official_score(flat),
        "arithmetic_mean": float(np.mean(all_values)),
    }


def format_table(result: dict[str, Any]) -> str:
    """Markdown table (percent) of AUC source/target, pAUC and hmean per machine, then the official score."""
    lines = [
        "| machine | AUC (source) % | AUC (target) % | pAUC % | hmean % |",
        "|---|---:|---:|---:|---:|",
    ]
    machines = result["machines"]
    for machine, m in machines.items():
        cells = ["n/a" if m.get(k) is None else f"{100 * m[k]:.2f}" for k in _TABLE_KEYS]
        lines.append(f"| {machine} | " + " | ".join(cells) + " |")
    # As the official evaluator: each column's harmonic mean runs over every machine × section value.
    units = [s for m in machines.values() for s in (m.get("sections") or {"": m}).values()]
    cols = [[u[k] for u in units if u.get(k) is not None] for k in _TABLE_KEYS[:3]]
    official = result.get("official_score")
    if official is not None and units and all(len(c) == len(units) for c in cols):
        cells = [f"{100 * clipped_hmean(c):.2f}" for c in cols] + [f"{100 * official:.2f}"]
        lines.append("| harmonic mean | " + " | ".join(cells) + " |")
    lines.append("")
    if official is None:
        lines.append(
            "Official score: n/a (it needs AUC (source), AUC (target) and pAUC of every machine type)"
        )
    else:
        lines.append(
            "Official score (harmonic mean of AUC source, AUC target and pAUC over "
            f"{len(machines)} machine type(s)): {100 * official:.2f} %"
        )
    return "\n".join(lines) + "\n"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(result: dict[str, Any], path: PathLike) -> None:
    """Write ``result`` as indented JSON (parent folders created)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
