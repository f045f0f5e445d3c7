"""Fusion of views: branches z-normalised by their own cross-fitted training scores and combined."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from test_calibration import median_z, relu_like

from frozenasd.backbones import prepare
from frozenasd.detectors import FusionDetector
from frozenasd.detectors.fusion import combine, robust_location_spread
from frozenasd.detectors.persistence import load_scoring_pipeline, pipeline_info, save_scoring_pipeline
from frozenasd.detectors.pipeline import make_detector, scoring_pipeline
from frozenasd.embed import Views
from frozenasd.embed.encoders.patch_encoder import build_patch_encoder
from frozenasd.errors import ModelError
from frozenasd.settings import RunSettings
from frozenasd.views import PRESETS, Branch, default_preset, parse_branch, parse_fusion
from frozenasd.workflows.fit_score import audio_files, fit_machine, score_files


def two_views(rng: np.random.Generator, n: int, fault_in: int | None = None) -> np.ndarray:
    """Rows of two views side by side (8 + 5 columns); ``fault_in`` shifts one view's columns."""
    a, b = rng.standard_normal((n, 8)), rng.standard_normal((n, 5)) * 3.0 + 10.0
    if fault_in == 0:
        a[:, 2] += 6.0
    elif fault_in == 1:
        b[:, 1] += 18.0
    return np.hstack([a, b])


def fused(rule: str = "max", detectors: tuple[str, ...] = ("mahalanobis", "knn-euclidean")) -> FusionDetector:
    return FusionDetector((0, 8, 13), detectors, rule=rule)


# ---------------------------------------------------------------- the detector
def test_robust_location_spread_and_rules():
    loc, spread = robust_location_spread(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert loc == 3.0 and spread == pytest.approx(1.4826 * 1.0)
    assert robust_location_spread(np.array([1.0, 1.0, 1.0, 4.0])) == (
        1.0,
        pytest.approx(np.std([1, 1, 1, 4])),
    )
    assert robust_location_spread(np.full(5, 2.0)) == (2.0, 1.0)
    z = np.array([[1.0, -3.0], [0.5, 2.0]])
    np.testing.assert_array_equal(combine(z, "max"), [1.0, 2.0])
    np.testing.assert_array_equal(combine(z, "mean"), [-1.0, 1.25])
    with pytest.raises(ValueError, match="rule must be one of"):
        combine(z, "vote")


def test_each_branch_is_the_scoring_pipeline_of_its_columns_z_scored_by_its_training_scores():
    rng = np.random.default_rng(0)
    X, T = two_views(rng, 40), two_views(rng, 10)
    det = scoring_pipeline(fused()).fit(X).named_steps["detector"]
    z = []
    for k, ((a, b), name) in enumerate([((0, 8), "mahalanobis"), ((8, 13), "knn-euclidean")]):
        alone = scoring_pipeline(make_detector(name)).fit(X[:, a:b])
        train = alone.named_steps["detector"].train_scores_
        loc, spread = robust_location_spread(train)
        assert (det.loc_[k], det.spread_[k]) == pytest.approx((loc, spread), rel=1e-12)
        raw = alone.named_steps["detector"].transform(alone.named_steps["scale"].transform(T[:, a:b]))[:, 0]
        np.testing.assert_allclose(det.branch_scores(T)[:, k], (raw - loc) / spread, rtol=1e-10)
        z.append((train - loc) / spread)
    np.testing.assert_allclose(det.train_scores_, np.max(z, axis=0), rtol=1e-12)


@pytest.mark.parametrize("fault_in", [0, 1])
def test_a_fault_seen_by_one_view_only_is_found_by_max_fusion(fault_in):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1 + fault_in)
    X = two_views(rng, 60)
    T = np.vstack([two_views(rng, 30), two_views(rng, 30, fault_in=fault_in)])
    labels = np.r_[np.zeros(30), np.ones(30)]
    pipe = scoring_pipeline(fused("max")).fit(X)
    assert roc_auc_score(labels, pipe.transform(T)[:, 0]) > 0.95
    # the branch that hears the fault is the one that raises the alarm
    z = pipe.named_steps["detector"].branch_scores(T[30:])
    assert np.median(z[:, fault_in]) > np.median(z[:, 1 - fault_in]) + 3


@pytest.mark.parametrize("rule", ["max", "mean"])
def test_unseen_normal_clips_score_like_the_fused_training_clips(rule):
    zs = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        X, T = relu_like(rng, 40), relu_like(rng, 300)
        det = FusionDetector((0, 16, 136), ("mahalanobis", "knn"), rule=rule)
        pipe = scoring_pipeline(det).fit(X)
        zs.append(median_z(det.train_scores_, pipe.named_steps["detector"].transform(T)[:, 0]))
    assert abs(np.median(zs)) <= 0.5, zs


def test_domains_reach_the_branch_detectors():
    rng = np.random.default_rng(4)
    X = two_views(rng, 30)
    domains = ["target" if i % 5 == 0 else "source" for i in range(30)]
    det = FusionDetector((0, 8, 13), ("domain-banks", "mahalanobis"))
    scoring_pipeline(det).fit(X, detector__domains=domains)
    assert list(det.branches_[0][1].memory_bank_[:30]) == [1 if d == "target" else 0 for d in domains]


@pytest.mark.parametrize(
    "bounds,detectors,match",
    [
        ((0, 8), ("mahalanobis", "knn"), "one more bound than detectors"),
        ((0, 8, 12), ("mahalanobis", "knn"), "rise strictly from 0 to the input's 13 columns"),
        ((0, 8, 8, 13), ("mahalanobis", "knn", "knn"), "rise strictly"),
        ((0, 8, 13), ("mahalanobis", "lof"), "unknown branch detector"),
    ],
)
def test_bad_branches_are_named(bounds, detectors, match):
    X = two_views(np.random.default_rng(0), 20)
    with pytest.raises(ValueError, match=match):
        scoring_pipeline(FusionDetector(bounds, detectors)).fit(X)


def test_a_branch_that_cannot_be_fitted_is_named():
    X = two_views(np.random.default_rng(0), 20)
    X[:, 8:] = 1.0  # the second view never varies
    with pytest.raises(ValueError, match=r"fusion branch 2 \(mahalanobis\): .*all equal"):
        scoring_pipeline(FusionDetector((0, 8, 13), ("knn", "mahalanobis"))).fit(X)


# ---------------------------------------------------------------- saving
def test_a_fusion_saves_and_loads_without_pickle_and_scores_identically(tmp_path):
    rng = np.random.default_rng(5)
    X, T = two_views(rng, 30), two_views(rng, 12, fault_in=1)
    pipe = scoring_pipeline(FusionDetector((0, 8, 13), ("kmeansNN", "mahalanobis"), rule="mean")).fit(X)
    save_scoring_pipeline(pipe, tmp_path / "f.npz")
    back = load_scoring_pipeline(tmp_path / "f.npz")
    np.testing.assert_array_equal(back.transform(T), pipe.transform(T))
    loaded = back.named_steps["detector"]
    assert loaded.rule == "mean" and [type(d).__name__ for _, d in loaded.branches_] == [
        "KMeansNN",
        "MahalanobisDetector",
    ]
    with zipfile.ZipFile(tmp_path / "f.npz") as zf:
        names = set(zf.namelist())
    assert "1.branches_.1.1.precision_.npy" in names and "1.branches_.0.0.mean_.npy" in names


def test_a_fusion_file_missing_a_branch_array_or_holding_an_unnamed_one_is_refused(tmp_path):
    pipe = scoring_pipeline(fused()).fit(two_views(np.random.default_rng(6), 20))
    save_scoring_pipeline(pipe, tmp_path / "f.npz")
    with zipfile.ZipFile(tmp_path / "f.npz") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}

    def write(name, contents):
        with zipfile.ZipFile(tmp_path / name, "w") as zf:
            for member, data in contents.items():
                zf.writestr(member, data)
        return tmp_path / name

    missing = write("missing.npz", {k: v for k, v in members.items() if k != "1.branches_.1.0.scale_.npy"})
    with pytest.raises(ModelError, match=r"array '1\.branches_\.1\.0\.scale_' of the FlooredStandardScaler"):
        load_scoring_pipeline(missing)
    extra = write("extra.npz", {**members, "1.branches_.7.0.mean_.npy": members["1.branches_.0.0.mean_.npy"]})
    with pytest.raises(ModelError, match="does not name"):
        load_scoring_pipeline(extra)


# ---------------------------------------------------------------- branches and presets
def test_branches_are_parsed_from_the_right_and_checked():
    assert parse_branch("logmel:max:mahalanobis") == Branch("logmel", "max", "mahalanobis")
    assert parse_branch("aisfx:mean:knn:rms") == Branch("aisfx", "mean", "knn", "rms")
    assert parse_branch("C:/models/x.onnx:quantiles:kmeansNN").model == "C:/models/x.onnx"
    assert parse_fusion("logmel:max:mahalanobis + aisfx:mean:mahalanobis")[1].model == "aisfx"
    assert Branch("aisfx", "mean", "knn", "rms").spec() == "aisfx:mean:knn:rms"
    for text, match in [
        ("logmel:max", "write MODEL:POOLING:DETECTOR"),
        ("logmel:maximum:mahalanobis", "pooling 'maximum'"),
        ("logmel:max:lof", "detector 'lof'"),
        ("logmel:frames:mahalanobis", "pooling 'frames'"),
        ("+", "at least one branch"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_fusion(text)


def test_presets_name_known_views_and_the_default_falls_back_without_aisfx(monkeypatch):
    for name, p in PRESETS.items():
        assert parse_fusion("+".join(b.spec() for b in p.branches)) == p.branches, name
    import frozenasd.backbones as backbones

    real = backbones.status()
    if real["aisfx"].ready:
        assert default_preset() == ("robust", None)
    else:
        assert default_preset()[0] == "spectral"
    gone = {**real, "aisfx": type(real["aisfx"])("aisfx", False, None, None, None, "not installed")}
    monkeypatch.setattr(backbones, "status", lambda: gone)
    name, note = default_preset()
    assert name == "spectral" and "not installed" in note


# ---------------------------------------------------------------- through run, fit and score
def fusion_settings(patch_encoder, **kw) -> RunSettings:
    branches = (Branch("logmel", "max", "mahalanobis"), Branch(str(patch_encoder), "mean", "knn"))
    return RunSettings(branches=branches, progress=False, cache_dir=None, **kw)


def test_views_join_the_clips_usable_in_every_view(tiny_dataset, patch_encoder):
    from frozenasd.data.dcase import list_clips

    views = Views.open(fusion_settings(patch_encoder))
    clips = list_clips(tiny_dataset, "fan", "train")
    embedded, bounds = views.embed(clips, progress=False)
    logmel = views.extractors[0].transform
    assert bounds[0] == 0 and bounds[-1] == embedded.embeddings.shape[1] and len(bounds) == 3
    assert bounds[1] == 131  # logmel's frame: 128 bins and 3 level statistics
    # the tiny data set's too-short clip is skipped once, and the rest are in both views' columns
    assert [c.path.name for c, _ in embedded.skipped] == [
        p.name for p in sorted((tiny_dataset / "fan" / "train").glob("*9999*"))
    ]
    assert len(embedded.clips) == len(clips) - 1
    from frozenasd.data.audio import load_audio

    first = load_audio(embedded.clips[0].path, 16000)
    np.testing.assert_allclose(embedded.embeddings[0, : bounds[1]], logmel([first])[0], rtol=1e-6)


def test_fit_then_score_a_fusion_without_naming_a_model(tiny_dataset, patch_encoder, tmp_path):
    info = fit_machine(tiny_dataset, "fan", fusion_settings(patch_encoder), tmp_path / "fan.npz")
    saved = pipeline_info(tmp_path / "fan.npz")
    assert [b["model"] for b in saved["branches"]] == ["logmel", str(patch_encoder)]
    assert (
        saved["detector"]
        == info["detector"]
        == (f"fusion-max(logmel:max:mahalanobis + {patch_encoder}:mean:knn)")
    )
    files = audio_files([tiny_dataset / "fan" / "test"])
    scored = score_files(tmp_path / "fan.npz", None, files)
    assert len(scored.scores) == len(files) - 1 and [p.name for p, _ in scored.skipped] == [
        "section_00_source_test_normal_9999_noAttribute.wav"
    ]
    assert scored.decisions.sum() > 0
    with pytest.raises(ModelError, match="a fusion of views; its branches name their models"):
        score_files(tmp_path / "fan.npz", patch_encoder, files)


def test_score_refuses_a_fusion_whose_branch_encoder_changed(tiny_dataset, patch_encoder, tmp_path):
    import shutil

    mine = tmp_path / "enc.onnx"
    shutil.copy(patch_encoder, mine)
    settings = RunSettings(
        branches=(Branch("logmel", "max", "mahalanobis"), Branch(str(mine), "mean", "knn")),
        progress=False,
        cache_dir=None,
    )
    fit_machine(tiny_dataset, "fan", settings, tmp_path / "fan.npz")
    build_patch_encoder(mine, seed=9)
    with pytest.raises(ModelError, match=r"enc\.onnx: branch .*:mean:knn: not the encoder"):
        score_files(tmp_path / "fan.npz", None, audio_files([tiny_dataset / "fan" / "test"]))


def cli(*args, cwd, ok=True):
    """Run the command; ``ok``: it exits 0 (``None``: any status, the caller checks)."""
    done = subprocess.run(
        [sys.executable, "-m", "frozenasd", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )
    if ok is not None:
        assert (done.returncode == 0) == ok, done.stderr
    return done


def test_run_fit_and_score_a_fusion_on_the_command_line(tiny_dataset, patch_encoder, tmp_path):
    fuse = f"logmel:max:mahalanobis+{patch_encoder}:mean:knn"
    cli("run", "--data", str(tiny_dataset), "--fuse", fuse, "--fusion-rule", "mean", "--out", "out",
        "--no-progress", cwd=tmp_path)  # fmt: skip
    record = json.loads((tmp_path / "out" / "results_fan" / "run.json").read_text())
    assert record["settings"]["branches"] == fuse.split("+") and record["settings"]["fusion_rule"] == "mean"
    assert [v["pooling"] for v in record["views"]] == ["max", "mean"]
    assert record["detector"] == f"fusion-mean({fuse.replace('+', ' + ')})"
    assert "detector" not in record["settings"] and "model_path" not in record["settings"]
    assert record["metrics"]["auc"] > 0.9
    cli("fit", "--data", str(tiny_dataset), "--machine", "fan", "--fuse", fuse, "-o", "fan.npz",
        "--no-progress", cwd=tmp_path)  # fmt: skip
    done = cli("score", str(tiny_dataset / "fan" / "test"), "--fitted", "fan.npz", "--csv", "s.csv",
               "--no-progress", cwd=tmp_path, ok=None)  # fmt: skip
    assert done.returncode == 1 and "ANOMALY" in done.stdout, done.stderr  # the test folder's anomalies
    assert "threshold" in done.stdout and (tmp_path / "s.csv").read_text().startswith("path,score,anomalous")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--preset", "spectral", "--model", "logmel"], "--model names a single view"),
        (["--preset", "spectral", "--fuse", "logmel:max:knn"], "give --preset or --fuse, not both"),
        (["--pooling", "max"], "--pooling shape a single view: give --model too"),
        (["--fuse", "logmel:max"], "--fuse: branch 'logmel:max': write MODEL:POOLING:DETECTOR"),
    ],
)
def test_fusion_options_that_do_not_go_together_are_one_clear_line(tiny_dataset, tmp_path, args, message):
    done = cli("run", "--data", str(tiny_dataset), "--out", "out", *args, cwd=tmp_path, ok=False)
    assert done.returncode == 2 and message in done.stderr


def test_run_without_a_model_uses_the_default_preset(tiny_dataset, tmp_path):
    cli("run", "--data", str(tiny_dataset), "--out", "out", "--no-progress", cwd=tmp_path)
    record = json.loads((tmp_path / "out" / "results_fan" / "run.json").read_text())
    name, _ = default_preset()
    assert record["settings"]["preset"] == name
    assert record["settings"]["branches"] == [b.spec() for b in PRESETS[name].branches]
    assert prepare("logmel").is_file()
