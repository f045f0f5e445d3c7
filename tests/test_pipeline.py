"""The seed's Python API: load_data → get_deep_feat_cls_eat_all_model → fit → transform → metrics."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from frozenasd.detectors import KMeansNN
from frozenasd.detectors.pipeline import get_deep_feat_cls_eat_all_model
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor

ROOT = Path(__file__).resolve().parents[1]


def import_root_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_pipeline_steps(patch_encoder):
    pipe, settings = get_deep_feat_cls_eat_all_model("EAT", 12, n_components=3, model_path=patch_encoder)
    kinds = [type(step) for _, step in pipe.steps]
    assert kinds == [ONNXFeatureExtractor, StandardScaler, KMeansNN, MinMaxScaler]
    assert pipe.named_steps["detector"].n_components == 3
    assert settings["model_type"] == "kmeansNN" and settings["feat_model_depth"] == 12


def test_seed_workflow_end_to_end(tiny_dataset, patch_encoder, tmp_path):
    data = import_root_module("load_dataset").load_data(tiny_dataset)
    train = [w for _, w in data["fan"]["train"] if w is not None and len(w) >= 400]
    test = [(p, w) for p, w in data["fan"]["test"] if w is not None]
    pipe, _ = get_deep_feat_cls_eat_all_model("EAT", 12, n_components=2, model_path=patch_encoder)
    pipe.fit(train)
    train_scores = pipe.transform(train)[:, 0]
    assert train_scores.min() == pytest.approx(0.0) and train_scores.max() == pytest.approx(1.0)
    scores = pipe.transform([w for _, w in test])[:, 0]

    # The pipeline equals its parts applied by hand.
    emb_train = ONNXFeatureExtractor(patch_encoder).fit().transform(train)
    emb_test = ONNXFeatureExtractor(patch_encoder).fit().transform([w for _, w in test])
    scaler = StandardScaler().fit(emb_train)
    det = KMeansNN(2, random_state=0).fit(scaler.transform(emb_train))
    d_train, d_test = det.transform(scaler.transform(emb_train)), det.transform(scaler.transform(emb_test))
    expected = (d_test[:, 0] - d_train.min()) / (d_train.max() - d_train.min())
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)

    metrics = import_root_module("metrics").compute_and_save_metrics(
        paths=[p for p, _ in test], scores=scores, out_dir=tmp_path / "results_fan"
    )
    assert metrics["auc"] > 0.9 and (tmp_path / "results_fan" / "roc.png").is_file()


def test_unknown_names_are_refused(patch_encoder):
    with pytest.raises(ValueError, match="feat_model_type"):
        get_deep_feat_cls_eat_all_model("BEATs", 12, model_path=patch_encoder)
    with pytest.raises(ValueError, match="unknown detector 'GMMpb'"):
        get_deep_feat_cls_eat_all_model("EAT", 12, model_type="GMMpb", model_path=patch_encoder)


def test_a_detector_that_scales_itself_gets_no_scaler_and_a_scaler_mismatch_is_refused():
    from frozenasd.detectors.pipeline import make_detector, scoring_pipeline
    from frozenasd.detectors.scaling import NoScaler

    class SelfScaling(type(make_detector("knn"))):
        _scales_itself = True

    assert isinstance(scoring_pipeline(SelfScaling()).steps[0][1], NoScaler)
    assert not isinstance(scoring_pipeline(make_detector("knn")).steps[0][1], NoScaler)
    X = np.random.default_rng(0).normal(size=(12, 4))
    bad = scoring_pipeline(make_detector("knn"))
    bad.steps[0] = ("scale", NoScaler())
    with pytest.raises(ValueError, match="needs a scaler before it, got NoScaler"):
        bad.fit(X)
    Z = NoScaler().fit(X).transform(X)
    assert Z.dtype == np.float64 and np.array_equal(Z, X)
