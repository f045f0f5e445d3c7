"""The offline demo on a small data set with the real packaged model (aiSFX, the default)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import frozenasd.workflows.demo as demo
from frozenasd.errors import FrozenASDError
from frozenasd.outputs.files import read_metrics_txt
from frozenasd.views import PRESETS, default_preset
from frozenasd.workflows.demo import DemoData, run_demo

SMALL = DemoData(
    machines=("fan", "valve"), n_train_source=12, n_train_target=3, n_test_per_cell=4, duration_s=2.0
)


def test_demo_runs_offline_with_the_packaged_model(tmp_path):
    result = run_demo(tmp_path / "demo", data=SMALL, progress=False)
    assert set(result.results) == {"fan", "valve"}
    for machine, metrics in result.results.items():
        assert isinstance(metrics, dict), metrics
        written = read_metrics_txt(result.out / f"results_{machine}" / "metrics.txt")
        assert written["auc"] == pytest.approx(metrics["auc"])
        assert (result.out / f"anomaly_score_{machine}_section_00_test.csv").is_file()
    assert "Official score" in (result.out / "summary.md").read_text()
    assert (result.out / "report.html").is_file()
    files = sorted((tmp_path / "demo" / "data" / "fan" / "train").glob("*.wav"))
    assert len(files) == 15
    # the demo runs what `frozenasd run` runs by default: the default preset's fusion of views
    record = json.loads((result.out / "results_fan" / "run.json").read_text())
    assert record["settings"]["preset"] == default_preset()[0]
    assert len(record["views"]) == len(PRESETS[default_preset()[0]].branches)


def test_demo_options_that_do_not_go_together_are_refused(tmp_path):
    with pytest.raises(FrozenASDError, match=r"shapes one model's view: give the model \(--model\)"):
        run_demo(tmp_path, detector="knn", data=SMALL, progress=False)
    with pytest.raises(FrozenASDError, match=r"a preset \(--preset, a fusion of views\), not both"):
        run_demo(tmp_path, backbone="logmel", preset="spectral", data=SMALL, progress=False)


def test_demo_data_is_written_once(tmp_path, monkeypatch):
    calls = []
    real = demo.synthesize
    monkeypatch.setattr(demo, "synthesize", lambda *a, **k: calls.append(a) or real(*a, **k))
    small = DemoData(
        machines=("valve",), n_train_source=4, n_train_target=2, n_test_per_cell=2, duration_s=1.0
    )
    demo.ensure_data(tmp_path, small, progress=False)
    demo.ensure_data(tmp_path, small, progress=False)
    assert len(calls) == 1
    demo.ensure_data(tmp_path, DemoData(**{**small.__dict__, "seed": 1}), progress=False)
    assert len(calls) == 2


def test_demo_command_prints_where_the_outputs_are(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "frozenasd",
            "demo",
            "--quick",
            "--machines",
            "valve",
            "--out",
            "out",
            "--no-progress",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert "Official score" in result.stdout
    assert str((tmp_path / "out" / "results" / "report.html").resolve()) in result.stdout
    assert len(list((tmp_path / "out" / "data" / "valve" / "test").glob("*.wav"))) == 40
