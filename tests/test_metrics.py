"""DCASE metrics against independent definitions written out in the tests."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import scipy.stats

from frozenasd.detectors.threshold import gamma_threshold
from frozenasd.evaluation import metrics
from frozenasd.evaluation.metrics import (
    auc,
    decision_metrics,
    domain_aucs,
    domain_decision_metrics,
    machine_metrics,
    official_score,
    pauc,
)

EPS = sys.float_info.epsilon


def mann_whitney_auc(y, s):
    """P(score of an anomaly > score of a normal) + 0.5 P(tie), over all pairs."""
    y, s = np.asarray(y), np.asarray(s, dtype=float)
    a, n = s[y == 1], s[y == 0]
    greater = (a[:, None] > n[None, :]).sum()
    ties = (a[:, None] == n[None, :]).sum()
    return (greater + 0.5 * ties) / (len(a) * len(n))


def mcclish_pauc(y, s, max_fpr=0.1):
    """ROC by hand (one point per distinct threshold), trapezoids up to max_fpr, then McClish."""
    y, s = np.asarray(y), np.asarray(s, dtype=float)
    n_pos, n_neg = (y == 1).sum(), (y == 0).sum()
    points = [(0.0, 0.0)]
    for t in sorted(set(s.tolist()), reverse=True):
        flagged = s >= t
        points.append(((flagged & (y == 0)).sum() / n_neg, (flagged & (y == 1)).sum() / n_pos))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
        if x0 >= max_fpr:
            break
        if x1 <= max_fpr:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y_cut = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            area += (max_fpr - x0) * (y0 + y_cut) / 2
    min_area = 0.5 * max_fpr**2
    max_area = max_fpr
    return 0.5 * (1 + (area - min_area) / (max_area - min_area))


def random_case(seed, n=120, ties=False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    y[:2] = [0, 1]
    s = rng.normal(size=n) + 0.8 * y
    if ties:
        s = np.round(s, 1)
    return y, s


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True), (3, False)])
def test_auc_is_mann_whitney(seed, ties):
    y, s = random_case(seed, ties=ties)
    assert auc(y, s) == pytest.approx(mann_whitney_auc(y, s), abs=1e-12)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (4, True), (5, False)])
@pytest.mark.parametrize("max_fpr", [0.1, 0.25])
def test_pauc_is_mcclish_standardised_trapezoid(seed, ties, max_fpr):
    y, s = random_case(seed, ties=ties)
    assert pauc(y, s, max_fpr=max_fpr) == pytest.approx(mcclish_pauc(y, s, max_fpr), abs=1e-12)


def test_pauc_perfect_and_reversed():
    y = np.array([0, 0, 0, 1, 1])
    assert pauc(y, [0, 1, 2, 3, 4]) == pytest.approx(1.0)
    # all anomalies below all normals: no area at all below FPR 0.1 -> McClish lower bound 0.5*(1-1/19)
    assert pauc(y, [4, 3, 2, 1, 0]) == pytest.approx(0.5 * (1 - 0.005 / 0.095))


def test_domain_aucs_use_all_anomalies_of_both_domains():
    # source normals below every anomaly, target normals above every anomaly.
    y = [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    s = [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12]
    d = ["source"] * 4 + ["source", "source", "target", "target"] + ["target"] * 3
    out = domain_aucs(y, s, d)
    assert out == {"auc_source": 1.0, "auc_target": 0.0}


def test_domain_auc_differs_from_within_domain_auc():
    # source normals 0 and 6.5; anomalies 5, 6 (source) and 7, 8 (target).
    y = [0, 0, 1, 1, 1, 1, 0, 0]
    s = [0.0, 6.5, 5.0, 6.0, 7.0, 8.0, 1.0, 20.0]
    d = ["source", "source", "source", "source", "target", "target", "target", "target"]
    out = domain_aucs(y, s, d)
    # source: vs 0 -> 4 of 4 anomalies above, vs 6.5 -> 2 of 4: 6/8 (within source only it would be 2/4)
    assert out["auc_source"] == pytest.approx(6 / 8)
    # target: vs 1 -> 4 of 4, vs 20 -> 0 of 4: 4/8
    assert out["auc_target"] == pytest.approx(4 / 8)


def test_domain_aucs_none_without_normals_or_anomalies():
    assert domain_aucs([0, 0, 1], [0, 1, 2], ["source", "source", "source"]) == {
        "auc_source": 1.0,
        "auc_target": None,
    }
    assert domain_aucs([0, 0], [0, 1], ["source", "target"]) == {"auc_source": None, "auc_target": None}


def test_domain_aucs_rejects_unknown_domain():
    with pytest.raises(ValueError, match="domains"):
        domain_aucs([0, 1], [0, 1], ["source", "elsewhere"])


def test_machine_metrics_values_and_hmean():
    y, s = random_case(7, n=80)
    rng = np.random.default_rng(7)
    d = np.where(rng.random(len(y)) < 0.5, "source", "target").tolist()
    m = machine_metrics(y, s, d)
    y_arr, d_arr = np.asarray(y), np.asarray(d)
    for dom in ("source", "target"):
        keep = (d_arr == dom) | (y_arr == 1)
        assert m[f"auc_{dom}"] == pytest.approx(mann_whitney_auc(y_arr[keep], s[keep]), abs=1e-12)
        within = d_arr == dom
        assert m[f"pauc_{dom}"] == pytest.approx(mcclish_pauc(y_arr[within], s[within]), abs=1e-12)
    assert m["auc"] == pytest.approx(mann_whitney_auc(y, s), abs=1e-12)
    assert m["pauc"] == pytest.approx(mcclish_pauc(y, s), abs=1e-12)
    expected_h = 3 / (1 / m["auc_source"] + 1 / m["auc_target"] + 1 / m["pauc"])
    assert m["hmean"] == pytest.approx(expected_h, abs=1e-12)
    assert m["n_normal"] == int((y_arr == 0).sum()) and m["n_anomaly"] == int(y_arr.sum())
    assert m["n_source"] + m["n_target"] == len(y)


def test_machine_metrics_without_domains():
    y, s = random_case(8)
    m = machine_metrics(y, s)
    assert m["auc_source"] is None and m["auc_target"] is None
    assert m["hmean"] == pytest.approx(2 / (1 / m["auc"] + 1 / m["pauc"]), abs=1e-12)


def test_machine_metrics_clips_zero_auc_with_epsilon():
    y = [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    s = [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12]
    d = ["source"] * 8 + ["target"] * 3
    m = machine_metrics(y, s, d)
    assert m["auc_target"] == 0.0
    expected = 3 / (1 / 1.0 + 1 / EPS + 1 / m["pauc"])
    assert m["hmean"] == pytest.approx(expected, rel=1e-9)
    assert 0 < m["hmean"] < 1e-14


@pytest.mark.parametrize(
    "y,s,match",
    [
        ([0, 0, 0], [1, 2, 3], "both normal and anomalous"),
        ([1, 1], [1, 2], "both normal and anomalous"),
        ([0, 1, 2], [1, 2, 3], "only 0"),
        ([0, 1], [1.0, np.nan], "non-finite"),
        ([0, 1, 1], [1.0, 2.0], "entries"),
    ],
)
def test_machine_metrics_bad_input(y, s, match):
    with pytest.raises(ValueError, match=match):
        machine_metrics(y, s)


def test_official_score_is_hmean_of_all_values_and_of_machine_hmeans():
    rng = np.random.default_rng(3)
    per_machine = {
        f"m{i}": {"auc_source": a, "auc_target": b, "pauc": c}
        for i, (a, b, c) in enumerate(rng.random((5, 3)))
    }
    values = [v for m in per_machine.values() for v in m.values()]
    by_hand = len(values) / sum(1 / v for v in values)
    machine_h = [3 / sum(1 / v for v in m.values()) for m in per_machine.values()]
    h_of_h = len(machine_h) / sum(1 / h for h in machine_h)
    score = official_score(per_machine)
    assert score == pytest.approx(by_hand, abs=1e-12)
    assert score == pytest.approx(h_of_h, abs=1e-12)


def test_official_score_clips_and_validates():
    score = official_score({"a": {"auc_source": 0.0, "auc_target": 0.5, "pauc": 0.5}})
    assert score == pytest.approx(3 / (1 / EPS + 4), rel=1e-9)
    with pytest.raises(ValueError, match="auc_target"):
        official_score({"fan": {"auc_source": 0.5, "auc_target": None, "pauc": 0.5}})
    with pytest.raises(ValueError, match="at least one"):
        official_score({})


def test_decision_metrics_by_counting():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([1, 0, 1, 1, 0, 0, 0, 0])
    tp, fp, fn = 2, 1, 2
    out = decision_metrics(y, p)
    prec, rec = tp / (tp + fp), tp / (tp + fn)
    assert out["precision"] == pytest.approx(prec)
    assert out["recall"] == pytest.approx(rec)
    assert out["f1"] == pytest.approx(2 * prec * rec / (prec + rec))


def test_domain_decision_metrics_uses_domain_clips_only():
    y = [1, 0, 1, 0, 0, 0]
    p = [1, 1, 0, 0, 0, 0]
    d = ["source", "source", "source", "target", "target", "target"]
    out = domain_decision_metrics(y, p, d)
    assert out["precision_source"] == pytest.approx(0.5)
    assert out["recall_source"] == pytest.approx(0.5)
    assert out["f1_source"] == pytest.approx(0.5)
    # target: no positive at all -> 0 / eps = 0 everywhere (no crash on a single-class subset)
    assert (out["precision_target"], out["recall_target"], out["f1_target"]) == (0.0, 0.0, 0.0)


def test_gamma_threshold_recovers_known_quantile():
    a, loc, scale = 3.0, 1.0, 0.5
    x = scipy.stats.gamma.rvs(a, loc=loc, scale=scale, size=3000, random_state=np.random.default_rng(0))
    thr = gamma_threshold(x)
    true_q90 = scipy.stats.gamma.ppf(0.9, a, loc=loc, scale=scale)
    assert thr == pytest.approx(true_q90, rel=0.03)
    assert np.mean(x > thr) == pytest.approx(0.1, abs=0.02)
    assert gamma_threshold(x, 0.5) < thr


def test_gamma_threshold_degenerate_input():
    with pytest.raises(ValueError, match="equal"):
        gamma_threshold(np.full(20, 0.3))
    with pytest.raises(ValueError, match="at least 2"):
        gamma_threshold([1.0])
    with pytest.raises(ValueError, match="non-finite"):
        gamma_threshold([1.0, 2.0, np.inf])
    with pytest.raises(ValueError, match="percentile"):
        gamma_threshold([1.0, 2.0, 3.0], percentile=90)


def test_gamma_threshold_falls_back_to_empirical_quantile(monkeypatch):
    def failing_fit(*_args, **_kwargs):
        raise scipy.stats.FitError("no fit")

    monkeypatch.setattr(metrics.scipy.stats.gamma, "fit", failing_fit)
    x = np.arange(1.0, 11.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thr = gamma_threshold(x, 0.9)
    assert thr == pytest.approx(np.quantile(x, 0.9))
    assert any(issubclass(w.category, RuntimeWarning) for w in caught)


def test_the_decision_threshold_is_a_percentile_or_a_fixed_score():
    from frozenasd.detectors.threshold import DEFAULT_PERCENTILE, check_threshold_choice, decision_threshold

    x = np.random.default_rng(0).gamma(2.0, 1.0, 500)
    assert DEFAULT_PERCENTILE == 90.0
    assert decision_threshold(x) == gamma_threshold(x, 0.9)
    assert decision_threshold(x, percentile=50) == gamma_threshold(x, 0.5)
    assert decision_threshold(x, fixed=3) == 3.0
    assert decision_threshold([1.0, 1.0], fixed=0.5) == 0.5  # no gamma fit, so constant scores are fine
    check_threshold_choice(np.float32(12.5), None)
    for percentile, fixed, message in [
        (90, 0.5, "not both"),
        (0, None, "between 0 and 100"),
        (100.0, None, "between 0 and 100"),
        (float("nan"), None, "between 0 and 100"),
        ("90", None, "between 0 and 100"),
        (None, float("-inf"), "finite number"),
        (None, False, "finite number"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_threshold_choice(percentile, fixed)
