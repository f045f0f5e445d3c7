from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn
from scipy.spatial.distance import cdist, mahalanobis
from sklearn.base import clone
from sklearn.covariance import LedoitWolf, ShrunkCovariance
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from frozenasd.detectors import DomainBanks, FlooredStandardScaler, KMeansNN, KNNDetector, MahalanobisDetector
from frozenasd.detectors.persistence import load_scoring_pipeline, save_scoring_pipeline
from frozenasd.detectors.pipeline import DETECTORS, make_detector, scoring_pipeline


def blobs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 0.0]])
    return np.concatenate([c + 0.3 * rng.standard_normal((50, 3)) for c in centers])


def ref_knn(Q: np.ndarray, B: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Mean of the k smallest scipy cdist distances per query."""
    return np.sort(cdist(Q, B, metric=metric), axis=1)[:, :k].mean(axis=1)


def ref_loo(X: np.ndarray, k: int, metric: str) -> np.ndarray:
    return np.array([ref_knn(X[i : i + 1], np.delete(X, i, axis=0), k, metric)[0] for i in range(len(X))])


def shifted_domains(seed: int = 0, dim: int = 5, n_source: int = 60, n_target: int = 8):
    """Source normals around one point, a sparse and wider target domain around another."""
    rng = np.random.default_rng(seed)
    a, b = np.zeros(dim), np.zeros(dim)
    a[0], b[1] = 15.0, 15.0
    X = np.concatenate(
        [a + rng.standard_normal((n_source, dim)), b + 2.0 * rng.standard_normal((n_target, dim))]
    )
    domains = np.array(["source"] * n_source + ["target"] * n_target)
    return X, domains


# --- the seed's k-means detector -------------------------------------------------------------------


def test_distance_to_nearest_centroid_by_brute_force():
    X = blobs()
    det = KMeansNN(n_components=2).fit(X)
    Q = np.random.default_rng(1).standard_normal((20, 3)) * 5
    brute = np.min(np.linalg.norm(Q[:, None, :] - det.cluster_centers_[None], axis=2), axis=1)
    np.testing.assert_allclose(det.transform(Q)[:, 0], brute, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(det.score_samples(Q), -brute, rtol=1e-10, atol=1e-10)


def test_finds_the_clusters_and_scores_outliers_higher():
    X = blobs()
    det = KMeansNN(n_components=2).fit(X)
    found = sorted(map(tuple, np.round(det.cluster_centers_, 0)))
    assert found == [(0.0, 0.0, 0.0), (10.0, 10.0, 0.0)]
    far = np.array([[5.0, 5.0, 0.0], [0.0, 0.0, 4.0]])
    assert det.transform(far).min() > det.transform(X).max()


def test_decision_function_flags_the_contamination_fraction():
    X = blobs()
    det = KMeansNN(n_components=2, contamination=0.1).fit(X)
    outliers = (det.decision_function(X) < 0).mean()
    assert 0.05 <= outliers <= 0.11
    np.testing.assert_allclose(det.decision_function(X), det.score_samples(X) - det.offset_)


def test_seeded_and_clonable():
    X = blobs()
    a = KMeansNN(n_components=3, random_state=7).fit(X).cluster_centers_
    b = clone(KMeansNN(n_components=3, random_state=7)).fit(X).cluster_centers_
    np.testing.assert_array_equal(a, b)


def test_too_many_components_is_a_clear_error():
    with pytest.raises(ValueError, match="n_components=5 needs between 1 and 4"):
        KMeansNN(n_components=5).fit(np.zeros((4, 2)))


def test_feature_count_checked_at_transform():
    det = KMeansNN().fit(blobs())
    with pytest.raises(ValueError):
        det.transform(np.zeros((2, 5)))


def test_kmeans_train_scores_are_the_in_sample_distances():
    X = blobs()
    det = KMeansNN(n_components=2).fit(X)
    brute = np.min(np.linalg.norm(X[:, None, :] - det.cluster_centers_[None], axis=2), axis=1)
    np.testing.assert_allclose(det.train_scores_, brute, rtol=1e-10, atol=1e-10)


# --- k nearest neighbours ----------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 3])
def test_knn_distances_and_loo_scores_by_brute_force(metric, k):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40, 6)) + 1.0
    X[7] = X[3]  # an exact duplicate: its leave-one-out distance must be 0 for k=1
    Q = rng.standard_normal((15, 6)) + 1.0
    det = KNNDetector(n_neighbors=k, metric=metric).fit(X)
    np.testing.assert_allclose(det.transform(Q)[:, 0], ref_knn(Q, X, k, metric), rtol=1e-9, atol=1e-12)
    loo = ref_loo(X, k, metric)
    np.testing.assert_allclose(det.train_scores_, loo, rtol=1e-9, atol=1e-12)
    if k == 1:
        assert det.train_scores_[3] == pytest.approx(0.0, abs=1e-12)
        # in-sample, every training clip is its own nearest neighbour; fit_transform gives the LOO scores
        np.testing.assert_allclose(det.transform(X)[:, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(clone(det).fit_transform(X)[:, 0], loo, rtol=1e-9, atol=1e-12)


def test_knn_chunks_queries_without_changing_results(monkeypatch):
    import frozenasd.detectors.distances as distances

    rng = np.random.default_rng(3)
    X, Q = rng.standard_normal((30, 4)), rng.standard_normal((25, 4))
    monkeypatch.setattr(distances, "_CHUNK_ELEMENTS", 64)  # two queries per chunk
    det = KNNDetector(n_neighbors=2, metric="euclidean").fit(X)
    np.testing.assert_allclose(det.transform(Q)[:, 0], ref_knn(Q, X, 2, "euclidean"), rtol=1e-9)
    np.testing.assert_allclose(det.train_scores_, ref_loo(X, 2, "euclidean"), rtol=1e-9)


def test_knn_offset_is_set_on_the_loo_scores():
    X = blobs()
    det = KNNDetector(n_neighbors=1, contamination=0.2).fit(X)
    assert det.offset_ == pytest.approx(np.percentile(-det.train_scores_, 20.0))
    flagged = (det.score_samples(X) - det.offset_ < 0).mean()
    assert flagged == 0.0  # in-sample distances are 0, below every LOO threshold
    assert 0.15 <= (-det.train_scores_ - det.offset_ < 0).mean() <= 0.21


def test_knn_needs_more_clips_than_neighbours():
    with pytest.raises(ValueError, match="n_neighbors=3 needs at least 4 training clips"):
        KNNDetector(n_neighbors=3).fit(np.random.default_rng(0).standard_normal((3, 2)))
    with pytest.raises(ValueError, match="metric"):
        KNNDetector(metric="manhattan").fit(blobs())


# --- domain banks ------------------------------------------------------------------------------------


def ref_bank_stats(loos, normalization):
    """Per bank (loc, scale) from the LOO distances of each bank's own clips."""
    # zscore: each bank's variance shrunk towards the pooled within-bank variance with a prior of 5 clips
    pooled = sum(o.var() * len(o) for o in loos) / sum(len(o) - 1 for o in loos)
    stats = []
    for own in loos:
        shrunk = np.sqrt((own.var() * len(own) + 5 * pooled) / (len(own) - 1 + 5))
        stats.append(
            {"zscore": (own.mean(), shrunk), "median": (0.0, np.median(own))}.get(normalization, (0, 1))
        )
    return stats


def ref_banks(X, domains, Q, k, metric, normalization):
    """Bank scores by brute force: per bank the LOO statistics of its own clips, min over banks; a
    training clip's score is normalised by statistics computed without its own distance."""
    names = ("source", "target")
    banks = [X[domains == name] for name in names]
    loos = [ref_loo(bank, k, metric) for bank in banks]
    raw = np.empty((len(X), 2))
    for j, (name, bank) in enumerate(zip(names, banks, strict=True)):
        for i in range(len(X)):
            own = np.flatnonzero(domains == name).tolist()
            others = bank if domains[i] != name else np.delete(bank, own.index(i), 0)
            raw[i, j] = ref_knn(X[i : i + 1], others, k, metric)[0]
    stats = ref_bank_stats(loos, normalization)
    scores_q = np.min(
        [(ref_knn(Q, b, k, metric) - lo) / sc for b, (lo, sc) in zip(banks, stats, strict=True)], axis=0
    )
    train = np.empty(len(X))
    for i in range(len(X)):
        j = names.index(domains[i])
        position = np.flatnonzero(domains == names[j]).tolist().index(i)
        without = [np.delete(o, position) if m == j else o for m, o in enumerate(loos)]
        train[i] = min(
            (raw[i, m] - lo) / sc for m, (lo, sc) in enumerate(ref_bank_stats(without, normalization))
        )
    return scores_q, train


@pytest.mark.parametrize("normalization", ["zscore", "median", "none"])
@pytest.mark.parametrize("metric,k", [("cosine", 1), ("euclidean", 2)])
def test_domain_banks_by_brute_force(normalization, metric, k):
    X, domains = shifted_domains()
    Q = np.random.default_rng(5).standard_normal((12, X.shape[1])) * 6.0 + 5.0
    det = DomainBanks(n_neighbors=k, metric=metric, normalization=normalization).fit(X, domains=domains)
    expected_q, expected_train = ref_banks(X, domains, Q, k, metric, normalization)
    np.testing.assert_allclose(det.transform(Q)[:, 0], expected_q, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(det.train_scores_, expected_train, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(det.banks_, [0, 1])
    assert det.bank_scores(Q).shape == (12, 2)
    np.testing.assert_allclose(det.bank_scores(Q).min(axis=1), det.transform(Q)[:, 0])


def test_domain_banks_without_domains_is_one_normalised_bank():
    X, _ = shifted_domains()
    Q = np.random.default_rng(6).standard_normal((9, X.shape[1])) * 5.0
    loo = ref_loo(X, 1, "cosine")
    expected = (ref_knn(Q, X, 1, "cosine") - loo.mean()) / loo.std(ddof=1)
    for domains in (None, [None] * len(X)):
        det = DomainBanks().fit(X, domains=domains)
        np.testing.assert_array_equal(det.banks_, [0])
        np.testing.assert_allclose(det.transform(Q)[:, 0], expected, rtol=1e-8)
        without = [np.delete(loo, i) for i in range(len(loo))]  # each clip's own distance left out
        expected_train = [(loo[i] - w.mean()) / w.std(ddof=1) for i, w in enumerate(without)]
        np.testing.assert_allclose(det.train_scores_, expected_train, rtol=1e-8, atol=1e-10)


def test_domain_banks_refuse_bad_domains():
    X, domains = shifted_domains()
    with pytest.raises(ValueError, match="'source' or 'target'"):
        DomainBanks().fit(X, domains=np.where(domains == "target", "tgt", "source"))
    with pytest.raises(ValueError, match="one label per training row"):
        DomainBanks().fit(X, domains=domains[:-1])
    with pytest.raises(ValueError, match="have no domain label"):
        DomainBanks().fit(X, domains=[None] + list(domains[1:]))
    small = domains.copy()
    small[small == "target"] = "source"
    small[0] = "target"
    with pytest.raises(ValueError, match="target bank has n_samples=1"):
        DomainBanks().fit(X, domains=small)


def point_on_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(t, residual) with p ≈ a + t (b - a)."""
    ab = b - a
    t = float((p - a) @ ab / (ab @ ab))
    return t, float(np.linalg.norm(p - (a + t * ab)))


def test_smote_points_lie_on_segments_between_near_target_clips():
    X, domains = shifted_domains()
    target = np.flatnonzero(domains == "target")
    det = DomainBanks(oversample="smote", n_synthetic=40, smote_neighbors=3, metric="euclidean").fit(
        X, domains=domains
    )
    synthetic = det.memory_parents_[:, 1] >= 0
    assert synthetic.sum() == 40 and (det.memory_bank_[synthetic] == 1).all()
    np.testing.assert_array_equal(det.memory_[: len(X)], X)
    T = X[target]
    pairs = [(i, j) for i in range(len(T)) for j in range(i + 1, len(T))]
    nearest = np.argsort(cdist(T, T) + np.diag(np.full(len(T), np.inf)), axis=1)[:, :3]
    for p, (base, partner) in zip(det.memory_[synthetic], det.memory_parents_[synthetic], strict=True):
        # independently of the recorded parents: p lies on some segment between two target clips
        best = min(point_on_segment(p, T[i], T[j])[1] for i, j in pairs)
        assert best < 1e-9
        t, residual = point_on_segment(p, X[base], X[partner])
        assert residual < 1e-9 and -1e-12 <= t <= 1 + 1e-12
        assert base in target and partner in target
        assert list(target).index(partner) in nearest[list(target).index(base)]
    # every target clip is the base of the same number of points
    assert np.bincount(det.memory_parents_[synthetic, 0])[target].tolist() == [5] * len(target)


def test_mixup_points_lie_on_segments_from_target_to_near_sources():
    X, domains = shifted_domains()
    target, source = np.flatnonzero(domains == "target"), np.flatnonzero(domains == "source")
    det = DomainBanks(
        oversample="mixup",
        n_synthetic=30,
        mixup_low=0.6,
        mixup_high=0.9,
        mixup_neighbors=4,
        metric="euclidean",
    ).fit(X, domains=domains)
    synthetic = det.memory_parents_[:, 1] >= 0
    assert synthetic.sum() == 30 and (det.memory_bank_[synthetic] == 1).all()
    nearest = np.argsort(cdist(X[target], X[source]), axis=1)[:, :4]
    for p, (t_row, s_row) in zip(det.memory_[synthetic], det.memory_parents_[synthetic], strict=True):
        assert t_row in target and s_row in source
        # p = a·t + (1 − a)·s  <=>  p = s + a (t − s)
        a, residual = point_on_segment(p, X[s_row], X[t_row])
        assert residual < 1e-9 and 0.6 - 1e-12 <= a <= 0.9 + 1e-12
        assert list(source).index(s_row) in nearest[list(target).index(t_row)]


@pytest.mark.parametrize("oversample", ["smote", "mixup"])
def test_oversampled_loo_ignores_points_made_from_the_clip(oversample):
    X, domains = shifted_domains()
    # mixup weights near 0 put synthetic points next to their source parent, so leaking them would show
    det = DomainBanks(
        oversample=oversample,
        n_synthetic=24,
        normalization="none",
        metric="euclidean",
        mixup_low=0.0,
        mixup_high=0.3,
    )
    det.fit(X, domains=domains)
    target_bank = det.memory_bank_ == 1
    for i in range(len(X)):
        keep = target_bank & ~(det.memory_parents_ == i).any(axis=1)
        source_bank = (det.memory_bank_ == 0) & (np.arange(len(det.memory_)) != i)
        expected = min(ref_knn(X[i : i + 1], det.memory_[b], 1, "euclidean")[0] for b in (keep, source_bank))
        assert det.train_scores_[i] == pytest.approx(expected, rel=1e-9)


def test_oversampling_is_seeded_and_needs_a_target_domain():
    X, domains = shifted_domains()
    a = DomainBanks(oversample="smote", random_state=1).fit(X, domains=domains).memory_
    b = DomainBanks(oversample="smote", random_state=1).fit(X, domains=domains).memory_
    c = DomainBanks(oversample="smote", random_state=2).fit(X, domains=domains).memory_
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    only_source = DomainBanks(oversample="mixup").fit(X)
    assert len(only_source.memory_) == len(X)


def test_domain_banks_beat_a_single_bank_under_domain_shift():
    """Target normals are sparse and spread out: one bank calls them anomalous, per-bank normalisation not."""
    dim = 8
    rng = np.random.default_rng(0)
    a, b = np.zeros(dim), np.zeros(dim)
    a[0], b[1] = 15.0, 15.0
    X = np.concatenate([a + rng.standard_normal((200, dim)), b + 2.0 * rng.standard_normal((10, dim))])
    domains = np.array(["source"] * 200 + ["target"] * 10)

    def off(center, spread, n):  # anomalies: normal clips pushed 4 spreads away in a random direction
        v = rng.standard_normal((n, dim))
        return (
            center
            + spread * rng.standard_normal((n, dim))
            + 4.0 * spread * v / np.linalg.norm(v, axis=1)[:, None]
        )

    normals = np.concatenate([a + rng.standard_normal((50, dim)), b + 2.0 * rng.standard_normal((50, dim))])
    Q = np.concatenate([normals, off(a, 1.0, 50), off(b, 2.0, 50)])
    y = np.r_[np.zeros(100), np.ones(100)]
    for metric in ("cosine", "euclidean"):
        single = roc_auc_score(y, KNNDetector(metric=metric).fit(X).transform(Q)[:, 0])
        for normalization in ("zscore", "median"):
            det = DomainBanks(metric=metric, normalization=normalization).fit(X, domains=domains)
            banks = roc_auc_score(y, det.transform(Q)[:, 0])
            assert banks > single + 0.08, (metric, normalization, banks, single)
            assert banks > 0.8
        # without normalisation the min over banks is the single-bank distance: no gain
        raw = DomainBanks(metric=metric, normalization="none").fit(X, domains=domains).transform(Q)[:, 0]
        assert roc_auc_score(y, raw) == pytest.approx(single)


# --- Mahalanobis -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,dim", [(40, 6), (12, 20)])
def test_mahalanobis_against_scipy_and_loo_refits(n, dim):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((n, dim)) @ rng.standard_normal((dim, dim)) + 3.0
    Q = rng.standard_normal((10, dim)) * 2.0
    det = MahalanobisDetector().fit(X)
    lw = LedoitWolf().fit(X)
    expected = [mahalanobis(q, lw.location_, lw.precision_) for q in Q]
    np.testing.assert_allclose(det.transform(Q)[:, 0], expected, rtol=1e-8)
    assert det.shrinkage_ == pytest.approx(lw.shrinkage_)
    # leave-one-out: exact against refitting the shrunk covariance without each clip
    loo = []
    for i in range(n):
        cov = ShrunkCovariance(shrinkage=det.shrinkage_).fit(np.delete(X, i, axis=0))
        loo.append(mahalanobis(X[i], cov.location_, cov.precision_))
    np.testing.assert_allclose(det.train_scores_, loo, rtol=1e-8)
    assert (det.train_scores_ > det.transform(X)[:, 0]).all()  # a clip is further from the others


def test_mahalanobis_needs_three_clips():
    with pytest.raises(ValueError, match="at least 3 training clips"):
        MahalanobisDetector().fit(np.zeros((2, 4)))


# --- the scikit-learn contract, the registry and Pipelines -------------------------------------------


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_sklearn_contract(name):
    X, domains = shifted_domains()
    det = make_detector(name)
    with pytest.raises(NotFittedError):
        det.transform(X)
    with pytest.raises(NotFittedError):
        det.decision_function(X)
    twin = clone(det)
    assert twin is not det and twin.get_params() == det.get_params()
    assert det.fit(X, domains=domains) is det
    assert det.train_scores_.shape == (len(X),) and np.isfinite(det.train_scores_).all()
    Q = X[:5] + 0.5
    np.testing.assert_allclose(det.decision_function(Q), det.score_samples(Q) - det.offset_)
    np.testing.assert_allclose(det.score_samples(Q), -det.transform(Q)[:, 0])
    assert det.get_feature_names_out().shape == (1,)


@pytest.mark.parametrize(
    "detector", [KMeansNN(), KNNDetector(), DomainBanks(oversample="smote"), MahalanobisDetector()], ids=repr
)
def test_sklearn_estimator_checks(detector):
    loo = "fit_transform returns leave-one-out training scores, transform in-sample ones"
    expected = (
        {}
        if isinstance(detector, KMeansNN)
        else dict.fromkeys(["check_transformer_general", "check_transformer_data_not_an_array"], loo)
    )
    check_estimator(detector, expected_failed_checks=expected, on_skip=None)


def test_registry_presets_and_make_detector_arguments():
    assert isinstance(make_detector(), KMeansNN) and make_detector().n_components == 2
    assert make_detector("kmeansNN", 5, 3).get_params()["n_components"] == 5
    assert make_detector("kmeansNN", 5, 3).random_state == 3
    assert make_detector("knn").metric == "cosine" and make_detector("knn-euclidean").metric == "euclidean"
    assert make_detector("domain-banks").oversample is None
    assert make_detector("domain-banks-smote").oversample == "smote"
    assert make_detector("domain-banks-mixup", random_state=9).random_state == 9
    assert isinstance(make_detector("mahalanobis", n_components=4), MahalanobisDetector)
    assert make_detector("knn", n_neighbors=3).n_neighbors == 3
    with pytest.raises(ValueError, match="has no parameter"):
        make_detector("knn", n_clusters=3)
    with pytest.raises(ValueError, match="unknown detector 'GMM'"):
        make_detector("GMM")
    assert all(spec.summary for spec in DETECTORS.values())


def test_pipeline_routes_domains_and_scales_crossfitted_scores():
    X, domains = shifted_domains()
    Q = np.random.default_rng(8).standard_normal((7, X.shape[1])) * 8.0
    pipe = scoring_pipeline(DomainBanks(normalization="zscore"))
    train_out = pipe.fit_transform(X, detector__domains=domains)[:, 0]

    scaler = FlooredStandardScaler().fit(X)
    det = DomainBanks(normalization="zscore").fit(scaler.transform(X), domains=domains)
    det.crossfit(X, scaler, domains=domains)
    lo, hi = det.train_scores_.min(), det.train_scores_.max()
    np.testing.assert_allclose(train_out, (det.train_scores_ - lo) / (hi - lo), rtol=1e-9, atol=1e-12)
    expected = (det.transform(scaler.transform(Q))[:, 0] - lo) / (hi - lo)
    np.testing.assert_allclose(pipe.transform(Q)[:, 0], expected, rtol=1e-9)
    np.testing.assert_array_equal(pipe.named_steps["detector"].banks_, [0, 1])

    # fit and fit_transform fit the same pipeline; a plain Pipeline's training scores are not cross-fitted
    refit = scoring_pipeline(DomainBanks()).fit(X, detector__domains=domains)
    np.testing.assert_allclose(refit.transform(Q), pipe.transform(Q))
    steps = [("scale", FlooredStandardScaler()), ("detector", DomainBanks()), ("minmax", MinMaxScaler())]
    plain = Pipeline(steps).fit(X, detector__domains=domains)
    assert not np.allclose(plain.named_steps["detector"].bank_loc_, det.bank_loc_)
    with pytest.raises(ValueError, match="detector__domains"):
        scoring_pipeline(DomainBanks()).fit(X, domains=domains)


def test_pipeline_with_metadata_routing():
    X, domains = shifted_domains()
    Q = X[:4] + 1.0
    with sklearn.config_context(enable_metadata_routing=True):
        det = DomainBanks().set_fit_request(domains=True)
        pipe = scoring_pipeline(det).fit(X, domains=domains)
        out = pipe.transform(Q)
    plain = scoring_pipeline(DomainBanks()).fit(X, detector__domains=domains)
    np.testing.assert_allclose(out, plain.transform(Q))
    np.testing.assert_array_equal(pipe.named_steps["detector"].banks_, [0, 1])


def test_domain_banks_with_two_target_clips_keep_a_usable_scale():
    """Two target clips give the same leave-one-out distance twice: their own std is 0."""
    rng = np.random.default_rng(11)
    axis = np.eye(6) * 6.0
    source = rng.standard_normal((40, 6)) + axis[0]
    target = rng.standard_normal((2, 6)) + axis[1]
    X = np.concatenate([source, target])
    domains = ["source"] * 40 + ["target"] * 2
    det = DomainBanks().fit(X, domains=domains)
    assert det.bank_scale_[1] > 0.1 * det.bank_scale_[0]
    normal_target = target[[0, 1, 0, 1, 0]] + 0.3 * rng.standard_normal((5, 6))
    anomalies = rng.standard_normal((5, 6)) + axis[2]
    scores = det.transform(np.concatenate([normal_target, anomalies]))[:, 0]
    assert np.isfinite(scores).all() and scores[:5].max() < scores[5:].min()


# --- embeddings with dead dimensions (as after a ReLU) ------------------------------------------------

DEAD, ALMOST_DEAD, LIVE = slice(0, 40), slice(40, 43), slice(43, 100)


def relu_like(rng: np.random.Generator, center: np.ndarray, n: int) -> np.ndarray:
    """Rows of 100 non-negative dimensions: 40 always zero, 3 zero here, 57 varying around ``center``."""
    X = np.zeros((n, 100))
    X[:, LIVE] = center + rng.gamma(2.0, 0.5, (n, 57))
    return X


def dead_dimension_data(seed: int = 0):
    """Training rows (source and target) whose almost-dead dimensions are zero but for one clip's tiny
    value; test rows: normal ones, the same rows with small values in the almost-dead dimensions, and
    anomalies of a third kind."""
    rng = np.random.default_rng(seed)
    source, target, anomaly = rng.choice([0.0, 3.0], (3, 57))  # each kind active in other dimensions
    X = np.concatenate([relu_like(rng, source, 50), relu_like(rng, target, 10)])
    X[0, ALMOST_DEAD] = 1e-3
    domains = np.array(["source"] * 50 + ["target"] * 10)
    normal = np.concatenate([relu_like(rng, source, 30), relu_like(rng, target, 10)])
    touched = normal.copy()
    touched[:, ALMOST_DEAD] = 3e-3  # a tiny value, far below the live dimensions' spread (0.7)
    return X, domains, normal, touched, relu_like(rng, anomaly, 40)


def test_floored_scaler_keeps_live_dimensions_and_floors_dead_ones():
    X = dead_dimension_data()[0]
    scaler = FlooredStandardScaler().fit(X)
    plain = StandardScaler().fit(X)
    live_std = X[:, LIVE].std(axis=0)
    np.testing.assert_allclose(scaler.scale_[LIVE], live_std)
    np.testing.assert_allclose(scaler.scale_[:43], 0.01 * live_std.max())
    np.testing.assert_array_equal(scaler.mean_, plain.mean_)
    np.testing.assert_array_equal(scaler.var_, plain.var_)
    np.testing.assert_allclose(scaler.transform(X), (X - X.mean(axis=0)) / scaler.scale_)
    # the same rule whatever the embedding's units: scaling the input scales every divisor
    np.testing.assert_allclose(FlooredStandardScaler().fit(1e3 * X).scale_, 1e3 * scaler.scale_)
    np.testing.assert_allclose(FlooredStandardScaler(min_scale_ratio=1.0).fit(X).scale_, live_std.max())


def test_floored_scale_is_kept_in_a_saved_pipeline(tmp_path):
    X, domains, normal, touched, _ = dead_dimension_data()
    pipe = scoring_pipeline(make_detector("knn-euclidean")).fit(X, detector__domains=domains)
    save_scoring_pipeline(pipe, tmp_path / "pipe.npz")
    back = load_scoring_pipeline(tmp_path / "pipe.npz")
    assert type(back.named_steps["scale"]) is FlooredStandardScaler
    np.testing.assert_array_equal(back.named_steps["scale"].scale_, pipe.named_steps["scale"].scale_)
    np.testing.assert_array_equal(back.transform(touched), pipe.transform(touched))


def test_floored_scaler_without_any_spread_and_with_a_bad_ratio():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(
            ValueError, match=r"the 5 training embeddings are all equal \(none of their 3 dimensions varies\)"
        ):
            FlooredStandardScaler().fit(np.full((5, 3), 0.1))
    for name in sorted(DETECTORS):
        with pytest.raises(ValueError, match=r"are all equal \(none of their 3 dimensions varies\)"):
            scoring_pipeline(make_detector(name)).fit(np.full((8, 3), 2.5))
    for ratio in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"min_scale_ratio must be in \(0, 1\]"):
            FlooredStandardScaler(min_scale_ratio=ratio).fit(np.eye(3))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_almost_dead_dimensions_do_not_dominate_the_scores(name):
    X, domains, normal, touched, anomalous = dead_dimension_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        pipe = scoring_pipeline(make_detector(name)).fit(X, detector__domains=domains)
        scores = {k: pipe.transform(v)[:, 0] for k, v in [("n", normal), ("t", touched), ("a", anomalous)]}
    assert all(np.isfinite(s).all() for s in scores.values())

    def auc(normal_scores: np.ndarray) -> float:
        return roc_auc_score(np.r_[np.zeros(40), np.ones(40)], np.r_[normal_scores, scores["a"]])

    assert auc(scores["n"]) > 0.6 and abs(auc(scores["t"]) - auc(scores["n"])) < 0.05
    # StandardScaler blows the almost-dead dimensions up: they then move the scores by 10-30 times
    # the normal clips' spread
    assert np.abs(scores["t"] - scores["n"]).max() < 0.1 * scores["n"].std()


@pytest.mark.parametrize(
    "rows",
    [np.ones((6, 4)), np.array([[1.0, 2.0], [3.0, 1.0], [1.0, 2.0], [3.0, 1.0]])],
    ids=["identical", "mirrored"],
)
def test_mahalanobis_without_spread_is_a_clear_error(rows):
    """Shrinkage cannot help when no clip varies (or every centred clip is ± one vector)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match=r"do not vary along \d+ of \d+ directions"):
            MahalanobisDetector().fit(rows)


def with_constant_dimensions(X: np.ndarray) -> np.ndarray:
    """``X`` with 3 dimensions constant over its rows (0, 2.5 and 0.1) at ``CONSTANT``, among the others."""
    out = np.insert(X, [0, 2, X.shape[1]], 0.0, axis=1)
    out[:, CONSTANT[1:]] = [2.5, 0.1]
    return out


CONSTANT = [0, 3, -1]  # where with_constant_dimensions puts them


def test_floored_scaler_drops_constant_dimensions():
    X = dead_dimension_data()[0]
    scaler = FlooredStandardScaler().fit(X)
    np.testing.assert_array_equal(scaler.keep_, X.std(axis=0) > 0)  # the almost-dead ones are kept
    T = np.random.default_rng(1).standard_normal((4, 100))
    expected = (T - X.mean(axis=0)) / scaler.scale_
    expected[:, DEAD] = 0.0
    np.testing.assert_allclose(scaler.transform(T), expected)
    # dropped in any units, and a variance of rounding size relative to the largest counts as none
    np.testing.assert_array_equal(FlooredStandardScaler().fit(1e-6 * X + 3.0).keep_, scaler.keep_)
    Y = np.hstack([X, np.r_[1e-7, np.zeros(len(X) - 1)][:, None]])  # std about 1e-8 of the largest
    assert not FlooredStandardScaler().fit(Y).keep_[-1]


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_a_dimension_constant_in_training_does_not_change_any_score(name):
    """Test clips deviating in dimensions that never varied in training score as without them, and the
    fit (training scores and threshold included) is that of the embeddings without those dimensions."""
    X, domains, normal, _, anomalous = dead_dimension_data()
    X, normal, anomalous = X[:, 40:], normal[:, 40:], anomalous[:, 40:]
    T = np.concatenate([normal, anomalous])
    deviating = with_constant_dimensions(T)
    deviating[:, CONSTANT] = np.random.default_rng(5).normal(0.0, 50.0, (len(T), 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        pipe = scoring_pipeline(make_detector(name)).fit(
            with_constant_dimensions(X), detector__domains=domains
        )
        without = scoring_pipeline(make_detector(name)).fit(X, detector__domains=domains)
    det, det_without = pipe.named_steps["detector"], without.named_steps["detector"]
    np.testing.assert_allclose(det.train_scores_, det_without.train_scores_, rtol=1e-9, atol=1e-12)
    assert det.offset_ == pytest.approx(det_without.offset_, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(pipe.transform(deviating), without.transform(T), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(pipe.transform(deviating), pipe.transform(with_constant_dimensions(T)))
