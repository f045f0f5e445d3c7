"""ScoringModel: fit on files, folders or waveforms, score, save and load; the threshold choice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import frozenasd
from frozenasd import Scored, ScoringModel
from frozenasd.backbones import prepare
from frozenasd.detectors.persistence import load_scoring_pipeline, pipeline_info, save_scoring_pipeline
from frozenasd.detectors.threshold import gamma_threshold
from frozenasd.errors import AudioError, FrozenASDError, ModelError
from frozenasd.settings import RunSettings
from frozenasd.workflows.fit_score import fit_files, score_files

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fitted(tiny_dataset, patch_encoder, tmp_path_factory) -> Path:
    """A single-view model fitted on the tiny fan's training folder, saved."""
    path = tmp_path_factory.mktemp("fitted") / "fan.npz"
    ScoringModel.fit(tiny_dataset / "fan" / "train", patch_encoder, machine="fan").save(path)
    return path


def test_fit_on_a_folder_is_fit_files_and_scores_after_a_reload(
    fitted, tiny_dataset, patch_encoder, tmp_path
):
    train = sorted((tiny_dataset / "fan" / "train").glob("*.wav"))
    settings = RunSettings(model_path=patch_encoder, progress=False, cache_dir=None)
    info = fit_files(train, settings, tmp_path / "ref.npz", machine="fan")
    saved = pipeline_info(fitted)
    assert saved["threshold"] == pytest.approx(info["threshold"])
    assert saved["threshold_rule"] == {"percentile": 90.0} and saved["n_train"] == 20
    assert saved["machine"] == "fan" and saved["model"] == str(patch_encoder)

    model = ScoringModel.load(fitted)
    assert model.threshold == saved["threshold"] and model.machine == "fan" and model.detector == "kmeansNN"
    assert model.encoder["encoder_file"] == "encoder.onnx" and model.encoder["pooling"] == "mean"
    scored = model.score(tiny_dataset / "fan" / "test")
    assert isinstance(scored, Scored) and len(scored.paths) == 40 and len(scored.skipped) == 1
    assert scored.frames is None  # kmeansNN gives no frame scores
    reference = score_files(tmp_path / "ref.npz", None, sorted((tiny_dataset / "fan" / "test").glob("*")))
    np.testing.assert_allclose(scored.scores, reference.scores, rtol=1e-6)
    np.testing.assert_array_equal(scored.decisions, scored.scores > model.threshold)
    assert "ScoringModel(kmeansNN on fan" in repr(model)


def test_waveforms_score_as_their_files(fitted, tiny_dataset, tmp_path):
    model = ScoringModel.load(fitted)
    files = sorted((tiny_dataset / "fan" / "test").glob("*_0001_*.wav"))
    by_file = model.score(files)
    waves = [sf.read(f, dtype="float32")[0] for f in files]
    in_memory = model.score(waves, sample_rate=16000)
    assert [p.name for p in in_memory.paths] == [f"<waveform {k}>" for k in range(len(files))]
    np.testing.assert_allclose(in_memory.scores, by_file.scores, rtol=1e-5)
    # one waveform, int16 samples, two channels and another rate: each read as a file would be
    one = model.score(waves[0], sample_rate=16000).scores
    pcm = model.score([np.round(waves[0] * 32767).astype(np.int16)], sample_rate=16000).scores
    stereo = model.score([np.stack([waves[0], waves[0]], axis=1)], sample_rate=16000).scores
    np.testing.assert_allclose([one[0], pcm[0], stereo[0]], by_file.scores[0], rtol=1e-3)
    import soxr

    at_48k = soxr.resample(waves[0], 16000, 48000)
    sf.write(tmp_path / "48k.wav", at_48k, 48000, subtype="FLOAT")
    high = model.score([at_48k], sample_rate=48000).scores
    np.testing.assert_allclose(high, model.score(tmp_path / "48k.wav").scores, rtol=1e-4)
    rows = model.score(np.stack(waves[:2]), sample_rate=16000)  # the rows of a 2-D array
    np.testing.assert_allclose(rows.scores, by_file.scores[:2], rtol=1e-5)


def test_bad_waveforms_are_skipped_with_a_reason_and_bad_inputs_are_errors(fitted, tiny_dataset):
    model = ScoringModel.load(fitted)
    good = sf.read(sorted((tiny_dataset / "fan" / "test").glob("*.wav"))[0], dtype="float32")[0]
    nan = good.copy()
    nan[5] = np.nan
    scored = model.score([good, nan, good[:10], good * 1e9], sample_rate=16000)
    assert len(scored.scores) == 1
    reasons = dict((str(p), r) for p, r in scored.skipped)
    assert "non-finite" in reasons["<waveform 1>"] and "too short" in reasons["<waveform 2>"]
    assert "far outside [-1, 1]" in reasons["<waveform 3>"]
    with pytest.raises(FrozenASDError, match="without their sample rate"):
        model.score([good])
    with pytest.raises(FrozenASDError, match="not both"):
        model.score([good, tiny_dataset / "fan" / "test"], sample_rate=16000)
    with pytest.raises(FrozenASDError, match="sample_rate is for waveforms"):
        model.score(tiny_dataset / "fan" / "test", sample_rate=16000)
    with pytest.raises(AudioError, match="sample rate 5 Hz"):
        model.score([good], sample_rate=5)
    with pytest.raises(AudioError, match="<waveform 0>: a waveform is a 1-D array"):
        model.score([np.zeros((2, 2, 2))], sample_rate=16000)
    with pytest.raises(FrozenASDError, match="an input of type int"):
        model.score([3])
    with pytest.raises(FrozenASDError, match="nothing.wav: no such file or folder"):
        model.score(tiny_dataset / "nothing.wav")


def test_fit_on_waveforms_and_with_a_backbone_name(tiny_dataset, tmp_path):
    files = sorted((tiny_dataset / "fan" / "train").glob("*_000[0-9]_*.wav"))
    waves = [sf.read(f, dtype="float32")[0] for f in files]
    common = {"pooling": "max", "detector": "mahalanobis"}
    from_waves = ScoringModel.fit(waves, "logmel", sample_rate=16000, **common)
    from_files = ScoringModel.fit(files, "logmel", **common)
    assert from_waves.info["n_train"] == from_files.info["n_train"] == len(files)
    assert from_waves.info["model"] == str(prepare("logmel")) and from_waves.machine == "recordings"
    assert from_waves.threshold == pytest.approx(from_files.threshold, rel=1e-4)
    test = tiny_dataset / "fan" / "test"
    a, b = from_waves.score(test), from_files.score(test)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4)
    assert a.decisions[[("anomaly" in p.name) for p in a.paths]].mean() > 0.5  # it detects
    # a model fitted in memory scores straight away and again after a save and load
    from_waves.save(tmp_path / "w.npz")
    np.testing.assert_allclose(ScoringModel.load(tmp_path / "w.npz").score(test).scores, a.scores, rtol=1e-6)


def test_a_fusion_preset_and_branches(tiny_dataset, patch_encoder, tmp_path):
    train, test = tiny_dataset / "fan" / "train", tiny_dataset / "fan" / "test"
    spectral = ScoringModel.fit(train, preset="spectral")
    assert spectral.info["preset"] == "spectral" and spectral.detector.startswith("fusion-max(logmel:max")
    assert [b["pooling"] for b in spectral.encoder["branches"]] == ["max", "quantiles"]
    fused = ScoringModel.fit(
        train, branches=f"logmel:max:mahalanobis+{patch_encoder}:mean:knn", fusion_rule="mean"
    )
    assert fused.info["fusion_rule"] == "mean" and len(fused.info["branches"]) == 2
    fused.save(tmp_path / "f.npz")
    again = ScoringModel.load(tmp_path / "f.npz")
    np.testing.assert_allclose(again.score(test).scores, fused.score(test).scores, rtol=1e-6)
    with pytest.raises(ModelError, match="a fusion of views; its branches name their models"):
        ScoringModel.load(tmp_path / "f.npz", patch_encoder)


def test_the_default_is_fit_s_default_preset(tiny_dataset, monkeypatch):
    from frozenasd import views

    monkeypatch.setattr(views, "default_preset", lambda: ("spectral", None))
    model = ScoringModel.fit(tiny_dataset / "fan" / "train")
    assert model.info["preset"] == "spectral"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"model": "logmel", "preset": "spectral"}, "model names a single view"),
        ({"preset": "spectral", "branches": "logmel:max:knn"}, "give preset or branches, not both"),
        ({"pooling": "max"}, "pooling shape a single view"),
        ({"branches": "logmel:max"}, "write MODEL:POOLING:DETECTOR"),
        ({"preset": "loudest"}, "unknown preset 'loudest'"),
        ({"model": "logmel", "threshold": 0.5, "threshold_percentile": 90}, "not both"),
        ({"model": "logmel", "threshold_percentile": 100}, "between 0 and 100, got 100"),
        ({"model": "logmel", "threshold_percentile": 0}, "between 0 and 100, got 0"),
        ({"model": "logmel", "threshold_percentile": float("nan")}, "between 0 and 100, got nan"),
        ({"model": "logmel", "threshold": float("inf")}, "finite number, got inf"),
        ({"model": "logmel", "threshold": True}, "finite number, got True"),
        ({"model": "logmel", "machine": "../x"}, "use a plain name"),
    ],
)
def test_settings_that_do_not_go_together_are_clear_errors(tiny_dataset, kwargs, message):
    with pytest.raises(FrozenASDError, match=message):
        ScoringModel.fit(tiny_dataset / "fan" / "train", **kwargs)


def test_the_threshold_is_a_percentile_or_a_fixed_score(tiny_dataset, tmp_path):
    train, test = tiny_dataset / "fan" / "train", tiny_dataset / "fan" / "test"
    common = {"pooling": "max", "detector": "mahalanobis"}
    low = ScoringModel.fit(train, "logmel", threshold_percentile=50, **common)
    high = ScoringModel.fit(train, "logmel", threshold_percentile=99, **common)
    assert low.threshold < high.threshold and low.info["threshold_rule"] == {"percentile": 50.0}
    # the percentile is that of the gamma law fitted to the cross-fitted training scores
    train_scores = low.pipeline.named_steps["minmax"].transform(
        low.pipeline.named_steps["detector"].train_scores_[:, None]
    )[:, 0]
    assert low.threshold == pytest.approx(gamma_threshold(train_scores, 0.5))
    fixed = ScoringModel.fit(train, "logmel", threshold=0.25, **common)
    assert fixed.threshold == 0.25 and fixed.info["threshold_rule"] == {"fixed": 0.25}
    scored = fixed.score(test)
    np.testing.assert_array_equal(scored.decisions, scored.scores > 0.25)
    fixed.save(tmp_path / "fixed.npz")
    assert pipeline_info(tmp_path / "fixed.npz")["threshold_rule"] == {"fixed": 0.25}
    assert ScoringModel.load(tmp_path / "fixed.npz").threshold == 0.25


def test_files_of_earlier_versions_still_load(fitted, tiny_dataset, tmp_path):
    """Before this version the info had no threshold_rule; such a file loads and scores the same."""
    info = pipeline_info(fitted)
    del info["threshold_rule"]
    save_scoring_pipeline(load_scoring_pipeline(fitted), tmp_path / "old.npz", info)
    old = ScoringModel.load(tmp_path / "old.npz")
    assert "threshold_rule" not in old.info and old.threshold == info["threshold"]
    clips = sorted((tiny_dataset / "fan" / "test").glob("*_0002_*.wav"))
    np.testing.assert_allclose(old.score(clips).scores, ScoringModel.load(fitted).score(clips).scores)


def test_loaded_once_it_scores_without_reopening_or_rehashing(fitted, tiny_dataset, monkeypatch):
    from frozenasd.embed import cache
    from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
    from frozenasd.scoring import identity as encoder_identity

    model = ScoringModel.load(fitted)
    calls = []
    real_open = ONNXFeatureExtractor._open
    monkeypatch.setattr(ONNXFeatureExtractor, "_open", lambda self: (calls.append("open"), real_open(self)))
    for module in (cache, encoder_identity):
        monkeypatch.setattr(module, "file_sha256", lambda *a, **k: calls.append("hash") or "x")
    clips = sorted((tiny_dataset / "fan" / "test").glob("*.wav"))
    first = model.score(clips[:3])
    for _ in range(3):
        np.testing.assert_array_equal(model.score(clips[:3]).scores, first.scores)
    assert calls == []


def test_frame_scores_come_with_a_frame_detector(tiny_dataset, fitted, tmp_path):
    bank = ScoringModel.fit(tiny_dataset / "fan" / "train", "logmel", detector="framebank")
    clips = sorted((tiny_dataset / "fan" / "test").glob("*_0003_*.wav"))
    scored = bank.score(clips)
    assert scored.frames is not None and len(scored.frames) == len(clips) and scored.frame_hop > 0
    assert np.allclose([f.max() for f in scored.frames], scored.scores, rtol=1e-5)
    assert bank.score(clips, frames=False).frames is None
    bank.save(tmp_path / "bank.npz")
    assert ScoringModel.load(tmp_path / "bank.npz").score(clips).frames is not None
    with pytest.raises(ModelError, match=r"fan\.npz: its detector \(kmeansNN\) gives no per-frame scores"):
        ScoringModel.load(fitted).score(clips, frames=True)


def test_the_scoring_path_imports_no_torch(fitted, tiny_dataset):
    code = (
        "import sys\n"
        "from frozenasd import ScoringModel\n"
        f"model = ScoringModel.load({str(fitted)!r})\n"
        f"print(len(model.score({str(tiny_dataset / 'fan' / 'test')!r}).scores))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "40"


def test_importing_the_package_loads_no_library():
    code = "import sys, frozenasd\nprint(sorted(m for m in ('sklearn', 'onnxruntime') if m in sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        frozenasd.Nothing  # noqa: B018


def cli(*args, cwd, ok=True):
    done = subprocess.run(
        [sys.executable, "-m", "frozenasd", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )
    assert (done.returncode == 0) == ok, done.stderr
    return done


def test_threshold_options_of_run_and_fit(tiny_dataset, tmp_path):
    single = ["--model", "logmel", "--pooling", "max", "--detector", "mahalanobis", "--no-progress"]
    cli(
        "run",
        "--data",
        str(tiny_dataset),
        "--out",
        "p",
        "--threshold-percentile",
        "50",
        *single,
        cwd=tmp_path,
    )
    record = json.loads((tmp_path / "p" / "results_fan" / "run.json").read_text())
    assert record["settings"]["threshold_percentile"] == 50 and "threshold" not in record["settings"]
    cli("run", "--data", str(tiny_dataset), "--out", "f", "--threshold", "0.4", *single, cwd=tmp_path)
    record = json.loads((tmp_path / "f" / "results_fan" / "run.json").read_text())
    assert record["settings"]["threshold"] == 0.4 and "threshold_percentile" not in record["settings"]
    assert record["metrics"]["threshold"] == 0.4
    rows = (tmp_path / "f" / "decision_result_fan_section_00_test.csv").read_text().splitlines()
    scores = dict(
        r.split(",")
        for r in (tmp_path / "f" / "anomaly_score_fan_section_00_test.csv").read_text().splitlines()
    )
    assert all(d == str(int(float(scores[n]) > 0.4)) for n, d in (r.split(",") for r in rows))
    default = cli("run", "--data", str(tiny_dataset), "--out", "d", *single, cwd=tmp_path)
    assert default.returncode == 0
    record = json.loads((tmp_path / "d" / "results_fan" / "run.json").read_text())
    assert record["settings"]["threshold_percentile"] == 90

    done = cli(
        "fit", str(tiny_dataset / "fan" / "train"), "-o", "m.npz", "--threshold", "0.3", *single, cwd=tmp_path
    )
    assert "threshold 0.300000 (fixed)" in done.stdout
    assert pipeline_info(tmp_path / "m.npz")["threshold_rule"] == {"fixed": 0.3}
    train = str(tiny_dataset / "fan" / "train")
    done = cli("fit", train, "-o", "p.npz", "--threshold-percentile", "75", *single, cwd=tmp_path)
    assert "(percentile 75 of the gamma fit)" in done.stdout

    for bad, message in [
        (["--threshold", "0.3", "--threshold-percentile", "80"], "not allowed with argument"),
        (["--threshold-percentile", "100"], "must be a percentile between 0 and 100, got 100"),
        (["--threshold-percentile", "nan"], "must be a percentile between 0 and 100, got nan"),
        (["--threshold", "inf"], "must be a finite number, got inf"),
    ]:
        refused = cli(
            "fit", str(tiny_dataset / "fan" / "train"), "-o", "x.npz", *bad, *single, cwd=tmp_path, ok=False
        )
        assert refused.returncode == 2 and message in refused.stderr
    assert not (tmp_path / "x.npz").exists()


def test_the_seed_names_come_from_the_package():
    import importlib.util

    from frozenasd import compat
    from frozenasd.detectors import pipeline
    from frozenasd.outputs import files as outputs

    def root_module(name):
        spec = importlib.util.spec_from_file_location(f"root_{name}", ROOT / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    load_dataset, metrics = root_module("load_dataset"), root_module("metrics")
    assert load_dataset.load_data is compat.load_data and load_dataset.main is compat.count_clips
    assert load_dataset.SPLITS == compat.SPLITS == ("train", "test")
    assert (
        metrics.compute_and_save_metrics
        is compat.compute_and_save_metrics
        is outputs.compute_and_save_metrics
    )
    assert compat.get_deep_feat_cls_eat_all_model is pipeline.get_deep_feat_cls_eat_all_model


def readme_python_example() -> str:
    """The code block of the README's "Python API" section, as written."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_python_example_runs_as_written_from_an_empty_folder(patch_encoder, tmp_path):
    """The example runs in a folder holding only what it names: dataset/ and eat_base_export.onnx."""
    import os
    import shutil

    from conftest import write_tiny_dataset

    write_tiny_dataset(tmp_path / "dataset")
    for broken in (tmp_path / "dataset").rglob("*9999*"):
        broken.unlink()  # the seed's pipeline fits every waveform it is given
    shutil.copy(patch_encoder, tmp_path / "eat_base_export.onnx")  # the seed's EAT interface, tiny
    (tmp_path / "example.py").write_text(readme_python_example(), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(frozenasd.__file__).parents[1])}  # the package, not the repo
    run = [sys.executable, "example.py"]
    done = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum(("ANOMALY" in line or "normal" in line) for line in lines) == 40
    assert (tmp_path / "fan.npz").is_file() and (tmp_path / "results_fan" / "metrics.txt").is_file()
    assert pipeline_info(tmp_path / "fan.npz")["threshold_rule"] == {"percentile": 95.0}
    # the folder is not the repository: the root scripts are not importable from it
    seed = subprocess.run([sys.executable, "-c", "import load_dataset"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert seed.returncode != 0 and "No module named 'load_dataset'" in seed.stderr
