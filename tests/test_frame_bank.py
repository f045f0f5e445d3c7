"""Frame-level memory banks: coresets, frame scores that say when, honest training scores, the workflows."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import _machine_sound
from optional import require_package

from frozenasd.backbones import prepare
from frozenasd.data.dcase import list_clips
from frozenasd.detectors import FrameBank
from frozenasd.detectors.coreset import covering_radius, greedy_kcenter
from frozenasd.detectors.frames import pipeline_frame_scores, resolve_pooling
from frozenasd.detectors.nearest import nearest_distances
from frozenasd.detectors.persistence import load_scoring_pipeline, save_scoring_pipeline
from frozenasd.detectors.pipeline import make_detector, scoring_pipeline
from frozenasd.embed import embed_clips, open_cache
from frozenasd.embed.cache import EmbeddingCache
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.embed.encoders.pooling import pad_rows
from frozenasd.embed.frontends import get_frontend
from frozenasd.errors import FrozenASDError
from frozenasd.settings import RunSettings

D = 6  # values per synthetic frame


def clips(rng: np.random.Generator, n: int, frames: int = 60, d: int = D) -> np.ndarray:
    """``n`` clips of smooth frames (a per-clip offset, AR(1) noise), flattened: ``(n, frames · d)``."""
    out = np.empty((n, frames, d))
    for i in range(n):
        noise = rng.standard_normal((frames, d))
        for t in range(1, frames):
            noise[t] = 0.7 * noise[t - 1] + 0.5 * noise[t]
        out[i] = 0.3 * rng.standard_normal(d) + noise
    return out.reshape(n, -1)


def median_z(train_scores: np.ndarray, scores: np.ndarray) -> float:
    centre = np.median(train_scores)
    spread = 1.4826 * np.median(np.abs(train_scores - centre))
    return float(np.median((scores - centre) / spread))


# ---------------------------------------------------------------- coresets
def test_greedy_coreset_covers_better_than_random_subsets_and_is_deterministic():
    rng = np.random.default_rng(0)
    # clustered points of uneven density: random subsets miss the small clusters
    centres = rng.normal(0.0, 6.0, (12, 5))
    sizes = rng.integers(5, 300, 12)
    Z = np.concatenate([c + rng.standard_normal((s, 5)) for c, s in zip(centres, sizes, strict=True)])
    chosen = greedy_kcenter(Z, 40, np.array([0]))[0]
    assert len(set(chosen.tolist())) == 40
    greedy = covering_radius(Z, chosen)
    randoms = [covering_radius(Z, rng.choice(len(Z), 40, replace=False)) for _ in range(30)]
    assert greedy <= min(randoms)
    np.testing.assert_array_equal(greedy_kcenter(Z, 40, np.array([0]))[0], chosen)
    # each addition is the point farthest from those chosen before it (the greedy rule itself)
    for t in (1, 10, 39):
        far = nearest_distances(Z, Z[chosen[:t]])
        assert far[chosen[t]] == pytest.approx(far.max(), rel=1e-4)


def test_batched_problems_are_each_their_own_weighted_greedy_selection():
    rng = np.random.default_rng(1)
    Y = rng.standard_normal((300, 4))
    weights = rng.uniform(0.2, 3.0, (3, 4))
    allowed = rng.random((3, 300)) > 0.3
    first = np.array([np.flatnonzero(a)[0] for a in allowed])
    together = greedy_kcenter(Y, 25, first, weights=weights, allowed=allowed)
    for k in range(3):
        rows = np.flatnonzero(allowed[k])
        alone = greedy_kcenter(Y[rows] * np.sqrt(weights[k]), 25, np.array([0]))[0]
        np.testing.assert_array_equal(together[k], rows[alone])
        assert allowed[k, together[k]].all()
    with pytest.raises(ValueError, match="at least that many allowed points"):
        greedy_kcenter(Y[:10], 11, np.array([0]))


def test_the_bank_respects_the_budget_and_is_deterministic():
    X = clips(np.random.default_rng(2), 12)  # 720 frames
    det = FrameBank(D, budget=100, random_state=4).fit(X)
    assert det.bank_.shape == (100, D)
    again = FrameBank(D, budget=100, random_state=4).fit(X)
    np.testing.assert_array_equal(again.bank_, det.bank_)
    np.testing.assert_array_equal(again.train_scores_, det.train_scores_)
    assert FrameBank(D, budget=None).fit(X).bank_.shape == (720, D)
    assert FrameBank(D, budget=5000).fit(X).bank_.shape == (720, D)
    # the bank is the standardised training frames
    frames = X.reshape(-1, D)
    np.testing.assert_allclose(det.mean_, frames.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(det.scale_, frames.std(axis=0), rtol=1e-9)


def test_high_dimensional_frames_are_selected_on_a_projection():
    X = clips(np.random.default_rng(3), 8, frames=40, d=300)
    det = FrameBank(300, budget=50).fit(X)
    assert det.bank_.shape == (50, 300) and np.isfinite(det.train_scores_).all()
    rows = {tuple(r) for r in np.round(det.bank_, 9)}
    standardised = np.round((X.reshape(-1, 300) - det.mean_) / det.scale_, 9)
    assert rows <= {tuple(r) for r in standardised} and len(rows) == 50


# ---------------------------------------------------------------- frame scores
def test_an_inserted_transient_is_located_in_time():
    rng = np.random.default_rng(5)
    X, T = clips(rng, 20, frames=200), clips(rng, 3, frames=200)
    where = [37, 120, 181]
    for i, t in enumerate(where):
        T[i].reshape(200, D)[t] += 4.0 * np.sign(rng.standard_normal(D))
    det = FrameBank(D, budget=1000).fit(X)
    per_frame = det.frame_scores(T)
    for t, scores in zip(where, per_frame, strict=True):
        assert abs(int(np.argmax(scores)) - t) <= 1
    assert (det.transform(T)[:, 0] > np.percentile(det.train_scores_, 95)).all()


def test_a_click_in_a_recording_is_located_by_the_logmel_frames(tmp_path):
    rng = np.random.default_rng(6)
    ext = ONNXFeatureExtractor(prepare("logmel"), pooling="frames").fit()
    assert ext.frame_dim_ == 131 and ext.frame_hop_ == pytest.approx(0.01)
    train = [_machine_sound(rng, False) for _ in range(12)]
    test = _machine_sound(rng, False)
    at = 0.62  # seconds
    start = int(at * 16000)
    test[start : start + 80] += 0.8 * rng.standard_normal(80).astype(np.float32)  # a 5 ms click
    pipe = scoring_pipeline(FrameBank(ext.frame_dim_, budget=600)).fit(ext.transform(train))
    scores = pipeline_frame_scores(pipe, ext.transform([test]))[0]
    peak = int(np.nanargmax(scores)) * ext.frame_hop_
    assert at - 0.025 - 0.02 <= peak <= at + 0.02  # a frame holding the click: it starts ≤ 25 ms before


def test_max_and_topk_aggregate_the_frame_scores():
    rng = np.random.default_rng(7)
    X, T = clips(rng, 10), clips(rng, 4)
    top = FrameBank(D, aggregate="topk", top_k=5).fit(X)
    high = FrameBank(D).fit(X)
    for det in (top, high):
        per_frame = det.frame_scores(T)
        expected = [s.max() if det.aggregate == "max" else np.sort(s)[-5:].mean() for s in per_frame]
        np.testing.assert_allclose(det.transform(T)[:, 0], expected, rtol=1e-12)
    np.testing.assert_array_equal(high.frame_scores(T)[0], top.frame_scores(T)[0])  # same bank
    short = T[:1, : 3 * D]  # fewer frames than top_k: their mean
    np.testing.assert_allclose(top.transform(short)[0, 0], top.frame_scores(short)[0].mean())
    assert top.transform(T)[0, 0] <= high.transform(T)[0, 0]
    with pytest.raises(ValueError, match="aggregate must be one of"):
        FrameBank(D, aggregate="median").fit(X)
    with pytest.raises(ValueError, match="top_k must be a positive integer, got 0"):
        FrameBank(D, top_k=0).fit(X)


def test_nan_padding_frames_are_ignored():
    rng = np.random.default_rng(8)
    X, T = clips(rng, 10), clips(rng, 3)
    padded = np.hstack([X, np.full((10, 4 * D), np.nan)])
    padded[3, 30 * D :] = np.nan  # a shorter clip
    det = FrameBank(D).fit(padded)
    shorter = [np.delete(X, 3, axis=0), X[3:4, : 30 * D]]
    frames = np.concatenate([s.reshape(-1, D) for s in shorter])
    np.testing.assert_allclose(det.mean_, frames.mean(axis=0), atol=1e-12)
    assert det.bank_.shape == (len(frames), D) and np.isfinite(det.bank_).all()
    # a row scores the same whatever padding it has, and test rows may be longer than training rows
    wide = np.hstack([T, np.full((3, 7 * D), np.nan)])
    np.testing.assert_array_equal(det.transform(wide), det.transform(T))
    longer = np.hstack([T, T])
    assert det.transform(longer).shape == (3, 1)
    per_frame = det.frame_scores(wide)
    assert [len(s) for s in per_frame] == [60, 60, 60] and all(np.isfinite(s).all() for s in per_frame)
    # the padded clip's training score is its score against the other clips' bank
    alone = FrameBank(D).fit(np.delete(padded, 3, axis=0))
    assert det.train_scores_[3] == pytest.approx(alone.transform(padded[3:4])[0, 0], rel=1e-9)


def test_bad_widths_and_frames_are_clear_errors():
    X = clips(np.random.default_rng(9), 6)
    with pytest.raises(
        ValueError, match=r"training rows have 360 values, not a whole number of frames of frame_dim=7"
    ):
        FrameBank(7).fit(X)
    det = FrameBank(D).fit(X)
    with pytest.raises(
        ValueError, match=r"rows to score have 361 values, not a whole number of frames of frame_dim=6"
    ):
        det.transform(np.zeros((1, 361)))
    partial = X.copy()
    partial[2, 4] = np.nan
    with pytest.raises(ValueError, match=r"row 2, frame 0 is NaN in 1 of its 6 values"):
        FrameBank(D).fit(partial)
    empty = X.copy()
    empty[1] = np.nan
    with pytest.raises(ValueError, match=r"row 1 has no frames \(all 60 are NaN padding\)"):
        det.transform(empty)
    with pytest.raises(ValueError, match="infinity"):
        det.transform(np.full((1, 12), np.inf))
    one_frame = FrameBank().fit(X)
    with pytest.raises(ValueError, match="expecting 360 features .*frame_dim is None"):
        one_frame.transform(np.hstack([X, X]))
    with pytest.raises(ValueError, match="at least 2 training clips"):
        FrameBank(D).fit(X[:1])
    with pytest.raises(
        ValueError, match=r"the 20 training frames are all equal \(none of their 6 dimensions"
    ):
        FrameBank(D).fit(np.ones((2, 60)))


# ---------------------------------------------------------------- honest training scores
def test_crossfitted_scores_are_those_of_banks_fitted_without_the_clip():
    X = clips(np.random.default_rng(10), 15)  # 900 frames, a 200-frame coreset in every fold
    det = scoring_pipeline(FrameBank(D, budget=200)).fit(X).named_steps["detector"]
    for i in (0, 6, 14):
        alone = FrameBank(D, budget=200).fit(np.delete(X, i, axis=0))
        assert det.train_scores_[i] == pytest.approx(alone.transform(X[i : i + 1])[0, 0], rel=1e-9)
    assert det.offset_ == pytest.approx(np.percentile(-det.train_scores_, 10.0))


def test_folds_beyond_the_leave_one_out_limit(monkeypatch):
    from frozenasd.detectors.crossfit import fold_ids

    monkeypatch.setattr("frozenasd.detectors.crossfit.LOO_REFIT_LIMIT", 10)
    X = clips(np.random.default_rng(11), 30, frames=20)
    det = FrameBank(D, budget=150).fit(X)
    for fold in (0, 7):
        held = np.flatnonzero(fold_ids(30, 10) == fold)
        alone = FrameBank(D, budget=150).fit(np.delete(X, held, axis=0))
        np.testing.assert_allclose(det.train_scores_[held], alone.transform(X[held])[:, 0], rtol=1e-9)


@pytest.mark.parametrize("aggregate", ["max", "topk"])
@pytest.mark.parametrize("budget", [None, 300])
def test_unseen_normal_clips_score_like_the_training_clips(aggregate, budget):
    zs = []
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        X, T = clips(rng, 40), clips(rng, 200)
        pipe = scoring_pipeline(FrameBank(D, budget=budget, aggregate=aggregate)).fit(X)
        det = pipe.named_steps["detector"]
        zs.append(median_z(det.train_scores_, det.transform(T)[:, 0]))
    assert abs(np.median(zs)) <= 0.5, zs


def test_the_scale_step_must_be_a_noscaler():
    from frozenasd.detectors import FlooredStandardScaler

    X = clips(np.random.default_rng(12), 5)
    with pytest.raises(ValueError, match="FrameBank standardises its own frames: it needs a NoScaler"):
        FrameBank(D).fit(X).crossfit(X, FlooredStandardScaler().fit(X))


# ---------------------------------------------------------------- neighbours
def test_numpy_and_faiss_searches_give_the_same_distances(monkeypatch):
    require_package("faiss", "pip install frozenasd[faiss]")
    rng = np.random.default_rng(13)
    B, Q = rng.standard_normal((3000, 20)), rng.standard_normal((500, 20))
    Q[:5] = B[:5]  # zero distances stay exact
    exact = nearest_distances(Q, B, method="numpy")
    fast = nearest_distances(Q, B, method="faiss")
    np.testing.assert_allclose(fast, exact, rtol=1e-5, atol=1e-6)
    assert (exact[:5] == 0.0).all() and (fast[:5] == 0.0).all()
    brute = np.sqrt(((Q[:, None, :] - B[None]) ** 2).sum(-1)).min(axis=1)
    np.testing.assert_allclose(exact, brute, rtol=1e-12, atol=1e-12)
    # the bank's scores do not depend on which search finds the nearest frame
    monkeypatch.setattr("frozenasd.detectors.nearest.FAISS_MIN_MEMORY", 1)
    X, T = clips(rng, 6), clips(rng, 2)
    via_faiss = FrameBank(D).fit(X)
    monkeypatch.setattr("frozenasd.detectors.nearest.FAISS_MIN_MEMORY", 10**9)
    via_numpy = FrameBank(D).fit(X)
    np.testing.assert_allclose(via_faiss.transform(T), via_numpy.transform(T), rtol=1e-6)
    np.testing.assert_allclose(via_faiss.train_scores_, via_numpy.train_scores_, rtol=1e-6)


def test_nearest_distances_checks_its_input():
    with pytest.raises(ValueError, match="method must be one of"):
        nearest_distances(np.zeros((1, 2)), np.zeros((1, 2)), method="annoy")
    with pytest.raises(ValueError, match="non-empty memory"):
        nearest_distances(np.zeros((1, 2)), np.zeros((0, 2)))


# ---------------------------------------------------------------- saving
def test_saved_and_loaded_bank_scores_alike(tmp_path):
    rng = np.random.default_rng(14)
    X, T = clips(rng, 12), clips(rng, 3, frames=80)
    pipe = scoring_pipeline(make_detector("framebank-topk", frame_dim=D, budget=300)).fit(X)
    save_scoring_pipeline(pipe, tmp_path / "bank.npz")
    with np.load(tmp_path / "bank.npz", allow_pickle=False) as npz:
        assert all(npz[k].dtype.kind in "biufU" for k in npz.files)
    back = load_scoring_pipeline(tmp_path / "bank.npz")
    det = back.named_steps["detector"]
    assert type(det) is FrameBank and det.get_params() == pipe.named_steps["detector"].get_params()
    np.testing.assert_array_equal(back.transform(T), pipe.transform(T))
    for a, b in zip(pipeline_frame_scores(back, T), pipeline_frame_scores(pipe, T), strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- frames pooling, extractor and cache
def test_frames_pooling_keeps_every_frame_and_pads_shorter_clips():
    ext = ONNXFeatureExtractor(prepare("logmel"), pooling="frames").fit()
    waves = [_machine_sound(np.random.default_rng(s), False, seconds) for s, seconds in ((0, 1.0), (1, 0.5))]
    emb = ext.transform(waves)
    feats = [ext.features(w) for w in waves]
    assert emb.shape == (2, len(feats[0]) * 131)
    np.testing.assert_allclose(emb[0], feats[0].reshape(-1), atol=1e-5)
    np.testing.assert_allclose(emb[1, : feats[1].size], feats[1].reshape(-1), atol=1e-5)
    assert np.isnan(emb[1, feats[1].size :]).all()
    np.testing.assert_array_equal(pad_rows([np.ones(2), np.ones(2)]), np.ones((2, 2)))


def test_eat_frames_are_time_steps_of_every_band(patch_encoder):
    ext = ONNXFeatureExtractor(patch_encoder, pooling="frames").fit()
    assert ext.frame_dim_ == 8 * 24 and ext.frame_hop_ == pytest.approx(0.16)
    wave = _machine_sound(np.random.default_rng(2), False, 1.0)
    bands = ONNXFeatureExtractor(patch_encoder, pooling="bands-mean").fit().transform([wave])[0]
    frames = ext.transform([wave])[0].reshape(-1, 8 * 24)
    np.testing.assert_allclose(frames.mean(axis=0), bands, atol=1e-5)


def test_frame_hops_of_the_frontends():
    for name, tokens, hop in [
        ("logmel", True, 0.01),
        ("eat_fbank", True, 0.16),
        ("yamnet_logmel", False, 0.48),
        ("aisfx_mel", False, 50 * 1024 / 44100),
        ("aisfx_mel", True, None),
    ]:
        fe = get_frontend(name)
        got = fe.frame_hop_seconds(fe.resolve(None, name), tokens)
        assert got == (None if hop is None else pytest.approx(hop)), name


def test_the_cache_keeps_clips_of_other_lengths(tmp_path):
    cache = EmbeddingCache(tmp_path, "0" * 64, {"pooling": "frames"})
    cache.store("fan", "train", [("a.wav", np.ones(6, np.float32)), ("b.wav", np.full(3, 2, np.float32))])
    back = cache.load("fan", "train")
    np.testing.assert_array_equal(back["a.wav"], np.ones(6))
    np.testing.assert_array_equal(back["b.wav"], [2, 2, 2, np.nan, np.nan, np.nan])


def test_embedding_clips_of_other_lengths_with_and_without_the_cache(tmp_path):
    data = tmp_path / "data" / "fan" / "train"
    data.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i, seconds in enumerate((1.0, 0.6, 0.8)):
        sf.write(
            data / f"section_00_source_train_normal_{i:04d}_x.wav", _machine_sound(rng, False, seconds), 16000
        )
    settings = RunSettings(prepare("logmel"), detector="framebank", progress=False, cache_dir=tmp_path / "c")
    assert settings.pooling == "frames"
    ext = settings.extractor().fit()
    cache = open_cache(settings, ext)
    listed = list_clips(tmp_path / "data", "fan", "train")
    fresh = embed_clips(ext, listed, cache=cache, progress=False)
    cached = embed_clips(ext, listed, cache=cache, progress=False)
    plain = embed_clips(ext, listed, progress=False)
    assert fresh.frame_dim == 131 and fresh.embeddings.shape[1] == 98 * 131
    for other in (cached, plain):
        np.testing.assert_array_equal(other.embeddings, fresh.embeddings)


# ---------------------------------------------------------------- the workflows
def test_frame_detectors_imply_frames_pooling_and_refuse_another():
    assert resolve_pooling("framebank", None) == "frames"
    assert resolve_pooling("framebank-topk", "frames") == "frames"
    assert resolve_pooling("knn", None) == "mean"
    with pytest.raises(FrozenASDError, match="'framebank' scores a clip's frames: it needs --pooling frames"):
        resolve_pooling("framebank", "mean")
    with pytest.raises(FrozenASDError, match="only the frame detectors .*take it, not 'knn'"):
        resolve_pooling("knn", "frames")


def cli(cwd: Path, *args: str, ok: bool | None = True) -> subprocess.CompletedProcess:
    """Run the command; ``ok``: it exits 0 (``None``: any status, the caller checks)."""
    done = subprocess.run(
        [sys.executable, "-m", "frozenasd", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )
    if ok is not None:
        assert (done.returncode == 0) == ok, done.stderr
    return done


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_run_fit_and_score_with_a_frame_bank(tiny_dataset, tmp_path):
    common = ["--model", "logmel", "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    cli(tmp_path, "run", "--data", str(tiny_dataset), "--detector", "framebank", "--out", "out", *common)
    out = tmp_path / "out"
    scores = {r["path"]: float(r["score"]) for r in read_rows(out / "results_fan" / "scores.csv")}
    rows = read_rows(out / "results_fan" / "frame_scores.csv")
    assert list(rows[0]) == ["path", "frame", "start_s", "score"]
    top = sorted(scores, key=lambda p: (-scores[p], p))[:5]
    assert list(dict.fromkeys(r["path"] for r in rows)) == top
    for path in top:  # a clip's score is its highest frame score; frames start every 10 ms
        mine = [r for r in rows if r["path"] == path]
        assert max(float(r["score"]) for r in mine) == pytest.approx(scores[path], abs=2e-6)
        assert [float(r["start_s"]) for r in mine[:3]] == [0.0, 0.01, 0.02]
    page = (out / "report.html").read_text()
    assert 'aria-label="frame scores over time"' in page and "time in the clip (s)" in page
    metrics = (out / "results_fan" / "run.json").read_text()
    assert '"pooling": "frames"' in metrics

    cli(
        tmp_path,
        "fit",
        "--data",
        str(tiny_dataset),
        "--machine",
        "fan",
        "--detector",
        "framebank-topk",
        "-o",
        "fan.npz",
        *common,
    )
    clip = sorted((tiny_dataset / "fan" / "test").glob("*anomaly_0001*"))[0]
    done = cli(
        tmp_path,
        "score",
        str(clip),
        "--fitted",
        "fan.npz",
        "--model",
        "logmel",
        "--frames",
        "f.csv",
        "--csv",
        "s.csv",
        "--no-progress",
        ok=None,
    )
    assert done.returncode == (1 if "ANOMALY" in done.stdout else 0), done.stderr  # 1: an anomaly
    frames = read_rows(tmp_path / "f.csv")
    assert {r["path"] for r in frames} == {str(clip)} and len(frames) == 98
    assert [int(r["frame"]) for r in frames] == list(range(98))
    assert "ANOMALY" in done.stdout or "normal" in done.stdout

    cli(
        tmp_path,
        "fit",
        "--data",
        str(tiny_dataset),
        "--machine",
        "fan",
        "--detector",
        "knn",
        "-o",
        "knn.npz",
        *common,
    )
    refused = cli(
        tmp_path,
        "score",
        str(clip),
        "--fitted",
        "knn.npz",
        "--model",
        "logmel",
        "--frames",
        "g.csv",
        ok=False,
    )
    assert "knn.npz: its detector (knn) gives no per-frame scores" in refused.stderr
    assert not (tmp_path / "g.csv").exists()
    conflict = cli(
        tmp_path,
        "run",
        "--data",
        str(tiny_dataset),
        "--detector",
        "framebank",
        "--pooling",
        "max",
        "--out",
        "out2",
        *common,
        ok=False,
    )
    assert "needs --pooling frames (its default), not 'max'" in conflict.stderr


def test_other_detectors_write_no_frame_scores(tiny_dataset, tmp_path):
    from frozenasd.workflows.run import run_machine

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "frame_scores.csv").write_text("stale\n")
    settings = RunSettings(prepare("logmel"), detector="knn", progress=False, cache_dir=None)
    report = run_machine(tiny_dataset, "fan", tmp_path / "out", settings)
    assert report.frames == [] and not (tmp_path / "out" / "frame_scores.csv").exists()
