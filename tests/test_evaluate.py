"""Evaluation of submission directories, with dev file names and with official-style ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from frozenasd.errors import LayoutError
from frozenasd.evaluation.metrics import machine_metrics
from frozenasd.outputs.submission import write_submission
from frozenasd.workflows.evaluate import evaluate_submission, format_table, write_json

MACHINES = ("fan", "valve")


def make_clips(seed, section="00", n_per_cell=6):
    """Dev names, labels, domains, scores and decisions of one machine/section."""
    rng = np.random.default_rng(seed)
    names, labels, domains = [], [], []
    for domain in ("source", "target"):
        for label in ("normal", "anomaly"):
            for i in range(n_per_cell):
                names.append(f"section_{section}_{domain}_test_{label}_{i:04d}_vel_{i % 3}.wav")
                labels.append(int(label == "anomaly"))
                domains.append(domain)
    labels = np.array(labels)
    shift = np.where(np.array(domains) == "target", 0.3, 1.2)
    scores = rng.normal(size=len(names)) + shift * labels
    decisions = (scores > 0.6).astype(int)
    return {"names": names, "y": labels, "d": domains, "s": scores, "p": decisions}


def write_dev_submission(result_dir, clips_by_machine, section="00", decisions=True):
    for machine, c in clips_by_machine.items():
        write_submission(result_dir, machine, section, c["names"], c["s"], c["p"] if decisions else None)


def prf(y, p):
    tp = int(((y == 1) & (p == 1)).sum())
    fp = int(((y == 0) & (p == 1)).sum())
    fn = int(((y == 1) & (p == 0)).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1


@pytest.fixture
def clips():
    return {m: make_clips(i) for i, m in enumerate(MACHINES)}


def test_dev_names_match_direct_metrics(tmp_path, clips):
    write_dev_submission(tmp_path, clips)
    result = evaluate_submission(tmp_path)
    assert set(result["machines"]) == set(MACHINES)
    values = []
    for machine, c in clips.items():
        got = result["machines"][machine]
        want = machine_metrics(c["y"], c["s"], c["d"])
        for key in ("auc", "pauc", "auc_source", "auc_target", "hmean"):
            assert got[key] == pytest.approx(want[key], abs=1e-12), (machine, key)
            assert 0.0 <= got[key] <= 1.0
        d = np.array(c["d"])
        for dom in ("source", "target"):
            keep = d == dom
            prec, rec, f1 = prf(c["y"][keep], c["p"][keep])
            assert got[f"precision_{dom}"] == pytest.approx(prec)
            assert got[f"recall_{dom}"] == pytest.approx(rec)
            assert got[f"f1_{dom}"] == pytest.approx(f1)
        values += [want["auc_source"], want["auc_target"], want["pauc"]]
    assert result["official_score"] == pytest.approx(len(values) / sum(1 / v for v in values), abs=1e-12)
    assert result["arithmetic_mean"] == pytest.approx(np.mean(values), abs=1e-12)


def test_without_decision_files_no_precision(tmp_path, clips):
    write_dev_submission(tmp_path, clips, decisions=False)
    got = evaluate_submission(tmp_path)["machines"]["fan"]
    assert "precision_source" not in got and "auc_source" in got


def write_ground_truth(gt_dir, machine, clips, perm, section="00", attributes=False):
    """Official-style ground truth: anonymised names section_SS_NNNN.wav in a shuffled order."""
    anon = {clips["names"][j]: f"section_{section}_{k:04d}.wav" for k, j in enumerate(perm)}
    rows_data, rows_domain, rows_attr = [], [], []
    for j, name in enumerate(clips["names"]):
        rows_data.append(f"{anon[name]},{clips['y'][j]}")
        rows_domain.append(f"{anon[name]},{int(clips['d'][j] == 'target')}")
        rows_attr.append(f"{anon[name]},{name[: -len('.wav')]}")
    fname = f"ground_truth_{machine}_section_{section}_test.csv"
    for sub, rows in (("ground_truth_data", rows_data), ("ground_truth_domain", rows_domain)):
        (gt_dir / sub).mkdir(parents=True, exist_ok=True)
        (gt_dir / sub / fname).write_text("\n".join(sorted(rows)) + "\n")
    if attributes:
        (gt_dir / "ground_truth_attributes").mkdir(exist_ok=True)
        (gt_dir / "ground_truth_attributes" / fname).write_text("\n".join(sorted(rows_attr)) + "\n")
    return anon


def test_ground_truth_dir_gives_same_metrics_as_dev_names(tmp_path, clips):
    dev_dir, anon_dir, gt_dir = tmp_path / "dev", tmp_path / "anon", tmp_path / "gt"
    write_dev_submission(dev_dir, clips)
    rng = np.random.default_rng(9)
    for machine, c in clips.items():
        anon = write_ground_truth(gt_dir, machine, c, rng.permutation(len(c["names"])))
        write_submission(anon_dir, machine, "00", [anon[n] for n in c["names"]], c["s"], c["p"])
    by_names = evaluate_submission(dev_dir)
    by_truth = evaluate_submission(anon_dir, ground_truth_dir=gt_dir)
    assert by_truth["official_score"] == pytest.approx(by_names["official_score"], abs=1e-12)
    for machine in MACHINES:
        for key, value in by_names["machines"][machine].items():
            assert by_truth["machines"][machine][key] == pytest.approx(value, abs=1e-12), key


def test_ground_truth_attribute_table_maps_full_names(tmp_path, clips):
    dev_dir, gt_dir = tmp_path / "dev", tmp_path / "gt"
    write_dev_submission(dev_dir, clips)
    for machine, c in clips.items():
        write_ground_truth(gt_dir, machine, c, np.arange(len(c["names"]))[::-1], attributes=True)
    # the submission names the clips by their full names; the attribute table maps them back
    by_truth = evaluate_submission(dev_dir, ground_truth_dir=gt_dir)
    by_names = evaluate_submission(dev_dir)
    assert by_truth["official_score"] == pytest.approx(by_names["official_score"], abs=1e-12)


def test_several_sections_per_machine(tmp_path):
    secs = {"00": make_clips(1, "00"), "01": make_clips(2, "01")}
    for section, c in secs.items():
        write_submission(tmp_path, "fan", section, c["names"], c["s"], c["p"])
    result = evaluate_submission(tmp_path)
    fan = result["machines"]["fan"]
    per = {s: machine_metrics(c["y"], c["s"], c["d"]) for s, c in secs.items()}
    values = [per[s][k] for s in per for k in ("auc_source", "auc_target", "pauc")]
    assert fan["auc_source"] == pytest.approx(np.mean([p["auc_source"] for p in per.values()]))
    assert fan["hmean"] == pytest.approx(len(values) / sum(1 / v for v in values))
    assert result["official_score"] == pytest.approx(fan["hmean"])
    assert set(fan["sections"]) == {"00", "01"}
    assert fan["n_clips"] == 48
    # the table's harmonic-mean row runs over machine × section values, as the official evaluator's
    row = next(line for line in format_table(result).splitlines() if line.startswith("| harmonic mean"))
    target = [per[s]["auc_target"] for s in per]
    assert f"{100 * len(target) / sum(1 / v for v in target):.2f}" == row.split("|")[3].strip()


def test_empty_attribute_file_maps_nothing(tmp_path, clips):
    c = clips["fan"]
    perm = np.arange(len(c["names"]))
    write_ground_truth(tmp_path / "gt", "fan", c, perm, attributes=True)
    attr = tmp_path / "gt" / "ground_truth_attributes" / "ground_truth_fan_section_00_test.csv"
    attr.write_text("")
    anon = [f"section_00_{k:04d}.wav" for k in range(len(perm))]
    write_submission(tmp_path / "res", "fan", "00", anon, c["s"], c["p"])
    result = evaluate_submission(tmp_path / "res", tmp_path / "gt")
    assert result["machines"]["fan"]["auc"] == pytest.approx(machine_metrics(c["y"], c["s"], c["d"])["auc"])


def test_dataset_root_check(tmp_path, clips):
    result_dir, root = tmp_path / "res", tmp_path / "data"
    write_dev_submission(result_dir, clips)
    for machine, c in clips.items():
        (root / machine / "test").mkdir(parents=True)
        for n in c["names"]:
            (root / machine / "test" / n).touch()
    assert evaluate_submission(result_dir, dataset_root=root)["official_score"] > 0
    (root / "fan" / "test" / "section_00_source_test_normal_9999_extra.wav").touch()
    with pytest.raises(LayoutError, match="anomaly_score_fan_section_00_test.csv.*9999"):
        evaluate_submission(result_dir, dataset_root=root)


def test_format_table_and_json(tmp_path, clips):
    write_dev_submission(tmp_path / "res", clips)
    result = evaluate_submission(tmp_path / "res")
    table = format_table(result)
    lines = table.splitlines()
    assert lines[0].startswith("| machine | AUC (source)")
    for machine in MACHINES:
        m = result["machines"][machine]
        row = next(line for line in lines if line.startswith(f"| {machine} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:] == [f"{100 * m[k]:.2f}" for k in ("auc_source", "auc_target", "pauc", "hmean")]
    assert f"{100 * result['official_score']:.2f} %" in table
    out = tmp_path / "json" / "result.json"
    write_json(result, out)
    assert json.loads(out.read_text()) == result


# ---------------------------------------------------------------- errors


def test_missing_dir_and_no_score_files(tmp_path):
    with pytest.raises(LayoutError, match="not found"):
        evaluate_submission(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(LayoutError, match="no anomaly score file"):
        evaluate_submission(tmp_path)


def test_file_listed_twice(tmp_path, clips):
    write_dev_submission(tmp_path, {"fan": clips["fan"]})
    f = tmp_path / "anomaly_score_fan_section_00_test.csv"
    first = f.read_text().splitlines()[0]
    f.write_text(f.read_text() + first + "\n")
    with pytest.raises(LayoutError, match=r"anomaly_score_fan_section_00_test\.csv.*listed twice"):
        evaluate_submission(tmp_path)


def test_row_count_mismatch_with_ground_truth(tmp_path, clips):
    gt, res = tmp_path / "gt", tmp_path / "res"
    c = clips["fan"]
    anon = write_ground_truth(gt, "fan", c, np.arange(len(c["names"])))
    names = [anon[n] for n in c["names"]]
    write_submission(res, "fan", "00", names[:-1], c["s"][:-1], c["p"][:-1])
    with pytest.raises(LayoutError, match=r"anomaly_score_fan_section_00_test\.csv has 23 rows.*24"):
        evaluate_submission(res, ground_truth_dir=gt)


def test_unknown_file_name_with_ground_truth(tmp_path, clips):
    gt, res = tmp_path / "gt", tmp_path / "res"
    c = clips["fan"]
    anon = write_ground_truth(gt, "fan", c, np.arange(len(c["names"])))
    names = [anon[n] for n in c["names"]]
    names[3] = "section_00_9999.wav"
    write_submission(res, "fan", "00", names, c["s"], c["p"])
    with pytest.raises(LayoutError, match="section_00_9999.wav"):
        evaluate_submission(res, ground_truth_dir=gt)


def test_machine_of_ground_truth_without_score_file(tmp_path, clips):
    gt, res = tmp_path / "gt", tmp_path / "res"
    for machine, c in clips.items():
        write_ground_truth(gt, machine, c, np.arange(len(c["names"])))
    write_submission(
        res, "fan", "00", [f"section_00_{k:04d}.wav" for k in range(24)], clips["fan"]["s"], None
    )
    with pytest.raises(LayoutError, match="anomaly_score_valve_section_00_test.csv is missing"):
        evaluate_submission(res, ground_truth_dir=gt)


def test_name_without_label_needs_ground_truth(tmp_path):
    write_submission(tmp_path, "fan", "00", ["section_00_0000.wav", "section_00_0001.wav"], [0.1, 0.2], None)
    with pytest.raises(LayoutError, match=r"section_00_0000\.wav.*ground-truth"):
        evaluate_submission(tmp_path)


def test_decision_file_must_match_score_file(tmp_path, clips):
    write_dev_submission(tmp_path, {"fan": clips["fan"]})
    f = tmp_path / "decision_result_fan_section_00_test.csv"
    f.write_text("\n".join(f.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(LayoutError, match="decision_result_fan_section_00_test.csv"):
        evaluate_submission(tmp_path)


def test_bad_values(tmp_path, clips):
    write_dev_submission(tmp_path, {"fan": clips["fan"]})
    f = tmp_path / "anomaly_score_fan_section_00_test.csv"
    lines = f.read_text().splitlines()
    lines[0] = lines[0].split(",")[0] + ",oops"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(LayoutError, match="'oops'.*not a number"):
        evaluate_submission(tmp_path)


def test_decision_without_score_file(tmp_path, clips):
    write_dev_submission(tmp_path, {"fan": clips["fan"]})
    (tmp_path / "decision_result_pump_section_00_test.csv").write_text("a.wav,0\n")
    with pytest.raises(LayoutError, match="decision_result_pump_section_00_test.csv"):
        evaluate_submission(tmp_path)


def touch_dataset(root, clips_by_machine):
    """A dataset folder holding (empty) test clips of the given names."""
    for machine, c in clips_by_machine.items():
        (root / machine / "test").mkdir(parents=True, exist_ok=True)
        for n in c["names"]:
            (root / machine / "test" / n).touch()


def test_a_machine_of_the_dataset_without_score_files_is_an_error(tmp_path, clips):
    from frozenasd.cli import main

    result_dir, root = tmp_path / "res", tmp_path / "data"
    write_dev_submission(result_dir, {"fan": clips["fan"]})
    touch_dataset(root, clips)
    with pytest.raises(LayoutError, match=r"valve \(anomaly_score_valve_section_00_test\.csv\)"):
        evaluate_submission(result_dir, dataset_root=root)
    assert main(["evaluate", str(result_dir), "--dataset", str(root)]) == 2
    assert evaluate_submission(result_dir)["machines"].keys() == {"fan"}  # without --dataset: what is there


def test_odd_file_names_round_trip_through_the_submission_files(tmp_path):
    """Names with a carriage return, a line feed, commas, quotes or bytes that are not UTF-8."""
    import os

    odd = ["a\rb", "c\nd", 'e,"f"', "g,h", os.fsdecode(b"i\xffj"), " k "]
    c = make_clips(0, n_per_cell=len(odd))
    c["names"] = [n.replace("_vel_", f"_{odd[i % len(odd)]}_") for i, n in enumerate(c["names"])]
    result_dir, root = tmp_path / "res", tmp_path / "data"
    write_dev_submission(result_dir, {"fan": c})
    touch_dataset(root, {"fan": c})
    got = evaluate_submission(result_dir, dataset_root=root)["machines"]["fan"]
    assert got["n_clips"] == len(c["names"])
    assert got["auc"] == pytest.approx(machine_metrics(c["y"], c["s"], c["d"])["auc"])
    text = (result_dir / "anomaly_score_fan_section_00_test.csv").read_text(encoding="utf-8")
    assert "_i\\xffj_" in text


def test_sections_of_three_or_more_digits(tmp_path):
    c = make_clips(1, section="123")
    result_dir, root = tmp_path / "res", tmp_path / "data"
    write_dev_submission(result_dir, {"fan": c}, section="123")
    touch_dataset(root, {"fan": c})
    assert (result_dir / "anomaly_score_fan_section_123_test.csv").is_file()
    got = evaluate_submission(result_dir, dataset_root=root)["machines"]["fan"]
    assert got["n_clips"] == len(c["names"])
