"""main.py and `frozenasd run` on a small DCASE-layout dataset with a tiny encoder, as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from optional import require_package
from sklearn.metrics import roc_auc_score

from frozenasd.outputs.files import read_metrics_txt, read_scores_csv

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def frozenasd_run(data: Path, model: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``frozenasd run`` over every machine of ``data``, progress bars off."""
    args = ["-m", "frozenasd", "run", "--data", str(data), "--model", str(model), "--out", str(out)]
    return run([*args, "--no-progress", *extra], cwd=out.parent)


@pytest.fixture(scope="module")
def main_run(tmp_path_factory, tiny_dataset, patch_encoder):
    """The quick start: dataset/fan and eat_base_export.onnx in the current folder, no argument."""
    work = tmp_path_factory.mktemp("quickstart")
    shutil.copytree(tiny_dataset, work / "dataset")
    shutil.copy(patch_encoder, work / "eat_base_export.onnx")
    result = run([str(ROOT / "main.py")], cwd=work)
    assert result.returncode == 0, result.stderr
    return work, result


def check_outputs(out: Path, min_auc: float = 0.9) -> dict:
    """The three outputs exist and agree: metrics.txt is what scores.csv gives."""
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    paths, scores, labels = read_scores_csv(out / "scores.csv")
    assert len(paths) == 40 and not any("9999" in p for p in paths)
    y = np.array(labels)
    assert set(y) == {0, 1} and all(
        ("anomaly" in Path(p).name) == bool(t) for p, t in zip(paths, y, strict=True)
    )
    metrics = read_metrics_txt(out / "metrics.txt")
    assert metrics["auc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-9)
    assert metrics["pauc"] == pytest.approx(roc_auc_score(y, scores, max_fpr=0.1), abs=1e-9)
    domains = np.array(["target" in Path(p).name for p in paths])
    for name, in_domain in (("auc_source", ~domains), ("auc_target", domains)):
        keep = (in_domain & (y == 0)) | (y == 1)
        assert metrics[name] == pytest.approx(roc_auc_score(y[keep], scores[keep]), abs=1e-9)
    assert metrics["auc"] > min_auc
    return metrics


def test_main_py_quick_start(main_run):
    work, result = main_run
    metrics = check_outputs(work / "results_fan")
    assert f"auc={metrics['auc']:.4f}" in result.stdout
    assert "fan test" in result.stderr  # the progress bar over clips


def test_bad_clips_are_skipped_reported_and_listed(main_run):
    work, result = main_run
    assert "section_00_source_test_normal_9999_noAttribute.wav" in result.stderr
    assert "section_00_source_train_normal_9999_noAttribute.wav" in result.stderr
    listed = (work / "results_fan" / "metrics.txt").read_text()
    assert "section_00_source_test_normal_9999_noAttribute.wav" in listed
    assert "section_00_source_train_normal_9999_noAttribute.wav" in listed
    record = json.loads((work / "results_fan" / "run.json").read_text())
    assert record["n_train"] == 20 and record["n_test"] == 40 and len(record["skipped"]) == 2


def test_cli_run_gives_the_same_scores(main_run, tiny_dataset, patch_encoder, tmp_path):
    work, _ = main_run
    cli = ["-m", "frozenasd", "run", "--data", str(tiny_dataset), "--machine", "fan"]
    result = run([*cli, "--model", str(patch_encoder), "--out", str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check_outputs(tmp_path / "results_fan")
    _, cli_scores, _ = read_scores_csv(tmp_path / "results_fan" / "scores.csv")
    _, main_scores, _ = read_scores_csv(work / "results_fan" / "scores.csv")
    np.testing.assert_array_equal(cli_scores, main_scores)


def test_run_with_a_backbone_name_prepares_and_records_it(tiny_dataset, tmp_path):
    require_package("aisfx", "pip install --no-deps aisfx==0.1.2")
    out = tmp_path / "out"
    out.mkdir()
    result = run(
        ["-m", "frozenasd", "run", "--data", str(tiny_dataset), "--model", "aisfx", "--out", str(out)]
        + ["--no-progress"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    check_outputs(out / "results_fan", min_auc=0.6)
    record = json.loads((out / "results_fan" / "run.json").read_text())
    assert record["frontend"]["name"] == "aisfx_mel" and record["frontend"]["sample_rate"] == 44100
    assert record["encoder"]["name"] == "aisfx" and record["encoder"]["package"] == "aisfx==0.1.2"
    prepared = Path(record["settings"]["model_path"])
    assert prepared.name.startswith("aisfx-") and prepared.is_file()


def test_main_py_overrides_every_path(tiny_dataset, patch_encoder, tmp_path):
    out = tmp_path / "elsewhere"
    args = ["--data", str(tiny_dataset), "--machine", "fan", "--model", str(patch_encoder), "--out", str(out)]
    result = run([str(ROOT / "main.py"), *args, "--no-progress"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fan test" not in result.stderr
    check_outputs(out)


def test_missing_model_is_a_clear_error(tiny_dataset, tmp_path):
    result = run([str(ROOT / "main.py"), "--data", str(tiny_dataset)], cwd=tmp_path)
    assert result.returncode == 2
    assert "eat_base_export.onnx: ONNX model file not found" in result.stderr
    assert not (tmp_path / "results_fan").exists()


def test_folder_not_in_the_layout(tmp_path, patch_encoder):
    (tmp_path / "stuff").mkdir()
    result = run(
        ["-m", "frozenasd", "run", "--data", str(tmp_path / "stuff"), "--model", str(patch_encoder)],
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "stuff" in result.stderr and "<root>/<machine>/{train,test}" in result.stderr


def test_one_failing_machine_does_not_stop_the_others(tiny_dataset, patch_encoder, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    (data / "pump" / "train").mkdir(parents=True)
    (data / "pump" / "test").mkdir()
    result = frozenasd_run(data, patch_encoder, tmp_path / "out")
    assert result.returncode == 1
    assert "pump" in result.stdout and "FAILED" in result.stdout
    check_outputs(tmp_path / "out" / "results_fan")
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| fan |" in summary and "over 1 machine type(s)" in summary
    assert "- pump: not scored: " in summary and "0 usable training clips" in summary
    assert (tmp_path / "out" / "report.html").is_file()

    # nothing scored: summary.md says why, and an earlier run's report does not stay behind
    result = frozenasd_run(data, patch_encoder, tmp_path / "out", "--machine", "pump")
    assert result.returncode == 1
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert summary.startswith("No machine was scored.") and "- pump: not scored: " in summary
    assert not (tmp_path / "out" / "report.html").exists()


def test_a_rerun_leaves_no_earlier_outputs_to_be_taken_for_its_own(tiny_dataset, patch_encoder, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(tiny_dataset, data)
    out.mkdir()
    stale = out / "anomaly_score_fan_section_01_test.csv"  # a section this data set does not have
    stale.write_text("old.wav,1.0\n")
    assert frozenasd_run(data, patch_encoder, out).returncode == 0
    assert not stale.exists() and (out / "anomaly_score_fan_section_00_test.csv").is_file()

    for clip in (data / "fan" / "train").glob("*.wav"):  # now fan cannot be fitted
        clip.unlink()
    result = frozenasd_run(data, patch_encoder, out)
    assert result.returncode == 1 and "FAILED" in result.stdout
    assert not list(out.glob("*_fan_section_*")), "the earlier run's submission files must go"
    assert not [p.name for p in (out / "results_fan").iterdir()]
    assert "report in" not in result.stdout and not (out / "report.html").exists()
    assert "- fan: not scored: " in (out / "summary.md").read_text()


def test_run_writes_dcase_submission_files_that_evaluate_reads(tiny_dataset, patch_encoder, tmp_path):
    out = tmp_path / "out"
    assert frozenasd_run(tiny_dataset, patch_encoder, out).returncode == 0
    scores_file = out / "anomaly_score_fan_section_00_test.csv"
    decisions_file = out / "decision_result_fan_section_00_test.csv"
    rows = [line.split(",") for line in scores_file.read_text().splitlines()]
    assert len(rows) == 40 and [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert all("/" not in r[0] and r[0].endswith(".wav") for r in rows)
    threshold = json.loads((out / "results_fan" / "run.json").read_text())["metrics"]["threshold"]
    decisions = dict(line.split(",") for line in decisions_file.read_text().splitlines())
    assert all(decisions[name] == str(int(float(score) > threshold)) for name, score in rows)

    result = run(
        ["-m", "frozenasd", "evaluate", str(out), "--json", str(tmp_path / "eval.json")], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Official score" in result.stdout
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    metrics = read_metrics_txt(out / "results_fan" / "metrics.txt")
    for key in ("auc_source", "auc_target", "pauc", "hmean"):
        assert evaluated["machines"]["fan"][key] == pytest.approx(metrics[key], abs=1e-9)
    assert evaluated["official_score"] == pytest.approx(metrics["hmean"], abs=1e-12)
    summary = (out / "summary.md").read_text()
    assert f"{100 * evaluated['official_score']:.2f}" in summary
    # the unreadable test clip is named as missing from the submission
    assert "- fan: 1 test clip(s) could not be scored and are missing from the submission files" in summary
    page = (out / "report.html").read_text()
    assert "fan" in page and f"{100 * metrics['auc_source']:.2f}" in page


@pytest.mark.parametrize("detector", ["knn", "domain-banks", "domain-banks-smote", "mahalanobis"])
def test_every_detector_runs_end_to_end(detector, tiny_dataset, patch_encoder, tmp_path):
    from frozenasd.settings import RunSettings
    from frozenasd.workflows.run import run as run_machines

    settings = RunSettings(
        model_path=patch_encoder, detector=detector, progress=False, cache_dir=tmp_path / "c"
    )
    results = run_machines(tiny_dataset, ["fan"], tmp_path, settings)
    metrics = check_outputs(tmp_path / "results_fan", min_auc=0.75)
    assert results.metrics["fan"]["auc"] == metrics["auc"]
    # leave-one-out training scores put the threshold inside the training range, not at its bottom
    threshold = results.machines["fan"].threshold
    assert 0.1 < threshold < 1.5
    scores = dict(
        line.split(",") for line in (tmp_path / "anomaly_score_fan_section_00_test.csv").read_text().split()
    )
    decisions = dict(
        line.split(",") for line in (tmp_path / "decision_result_fan_section_00_test.csv").read_text().split()
    )
    assert decisions == {name: str(int(float(score) > threshold)) for name, score in scores.items()}


def test_cls_output_through_the_command_line(tiny_dataset, patch_encoder, tmp_path):
    common = [
        "-m",
        "frozenasd",
        "run",
        "--data",
        str(tiny_dataset),
        "--model",
        str(patch_encoder),
        "--no-cache",
    ]
    cls = run([*common, "--out", "cls", "--encoder-output", "cls", "--pooling", "none"], cwd=tmp_path)
    assert cls.returncode == 0, cls.stderr
    assert (
        json.loads((tmp_path / "cls" / "results_fan" / "run.json").read_text())["settings"]["output"] == "cls"
    )
    # the tiny encoder's cls output is the mean of its tokens: the same scores as mean pooling of emb
    mean = run([*common, "--out", "mean"], cwd=tmp_path)
    assert mean.returncode == 0, mean.stderr
    _, a, _ = read_scores_csv(tmp_path / "cls" / "results_fan" / "scores.csv")
    _, b, _ = read_scores_csv(tmp_path / "mean" / "results_fan" / "scores.csv")
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    bad = run([*common, "--out", "bad", "--encoder-output", "layer_9"], cwd=tmp_path)
    assert bad.returncode == 2 and "no output named 'layer_9'" in bad.stderr


def test_evaluation_set_with_anonymised_names(tiny_dataset, patch_encoder, tmp_path):
    """Labels unknown: scores, submission files and report are written; metrics say n/a; exit code 0."""
    data = tmp_path / "eval"
    shutil.copytree(tiny_dataset, data)
    test = data / "fan" / "test"
    for k, clip in enumerate(sorted(test.glob("*.wav"))):
        clip.rename(test / f"section_00_{k:04d}.wav")
    out = tmp_path / "out"
    result = frozenasd_run(data, patch_encoder, out)
    assert result.returncode == 0, result.stderr
    assert "labels unknown" in result.stdout
    paths, scores, labels = read_scores_csv(out / "results_fan" / "scores.csv")
    assert len(paths) == 40 and all(label is None for label in labels)
    assert read_metrics_txt(out / "results_fan" / "metrics.txt")["auc"] is None
    rows = (out / "anomaly_score_fan_section_00_test.csv").read_text().splitlines()
    assert len(rows) == 40 and rows[0].startswith("section_00_0000.wav,")
    assert (out / "decision_result_fan_section_00_test.csv").is_file()
    assert "Labels are unknown" in (out / "report.html").read_text()
    summary = (out / "summary.md").read_text()
    assert "| fan | n/a | n/a | n/a | n/a |" in summary and "Official score: n/a" in summary
    assert "- fan: labels unknown" in summary


def test_one_class_test_set_keeps_scores_and_submission_files(tiny_dataset, patch_encoder, tmp_path):
    """All test clips normal: no AUC, but nothing else is lost and the run succeeds."""
    data = tmp_path / "normals"
    shutil.copytree(tiny_dataset, data)
    for clip in (data / "fan" / "test").glob("*anomaly*.wav"):
        clip.unlink()
    out = tmp_path / "out"
    out.mkdir()
    result = frozenasd_run(data, patch_encoder, out)
    assert result.returncode == 0, result.stderr
    assert "got 20 normal and 0 anomalous" in result.stdout
    rows = (out / "anomaly_score_fan_section_00_test.csv").read_text().splitlines()
    assert len(rows) == 20 and len(read_scores_csv(out / "results_fan" / "scores.csv")[0]) == 20
    assert len((out / "decision_result_fan_section_00_test.csv").read_text().splitlines()) == 20
    metrics = read_metrics_txt(out / "results_fan" / "metrics.txt")
    assert metrics["auc"] is None and "both normal and anomalous" in metrics["note"]
    assert not (out / "results_fan" / "roc.png").exists()
    assert "all of one class" in (out / "report.html").read_text()
    assert "both normal and anomalous" in (out / "summary.md").read_text()
