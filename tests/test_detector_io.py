from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from frozenasd.detectors import KNNDetector
from frozenasd.detectors.persistence import (
    load_detector,
    load_scoring_pipeline,
    pipeline_info,
    save_detector,
    save_scoring_pipeline,
)
from frozenasd.detectors.pipeline import DETECTORS, make_detector, scoring_pipeline
from frozenasd.errors import ModelError


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.standard_normal((40, 5)), 4.0 + rng.standard_normal((8, 5))])
    domains = np.array(["source"] * 40 + ["target"] * 8)
    return X, domains, rng.standard_normal((9, 5)) * 3.0


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def rewrite(path: Path, arrays: dict[str, np.ndarray], **meta_changes) -> None:
    meta = json.loads(str(arrays["__meta__"]))
    meta.update(meta_changes)
    arrays = {**arrays, "__meta__": np.array(json.dumps(meta))}
    np.savez(path, **arrays)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_round_trip(name, tmp_path):
    X, domains, Q = data()
    det = make_detector(name, random_state=3).fit(X, domains=domains)
    path = tmp_path / "det.npz"
    save_detector(det, path)
    # plain numbers and one JSON string: readable without pickle
    assert all(a.dtype.kind in "biufU" for a in read_npz(path).values())
    back = load_detector(path)
    assert type(back) is type(det) and back.get_params() == det.get_params()
    np.testing.assert_array_equal(back.transform(Q), det.transform(Q))
    np.testing.assert_array_equal(back.decision_function(Q), det.decision_function(Q))
    np.testing.assert_array_equal(back.train_scores_, det.train_scores_)
    assert back.offset_ == det.offset_


@pytest.mark.parametrize("name", ["kmeansNN", "domain-banks-mixup", "mahalanobis"])
def test_scoring_pipeline_round_trip(name, tmp_path):
    X, domains, Q = data()
    pipe = scoring_pipeline(make_detector(name)).fit(X, detector__domains=domains)
    path = tmp_path / "pipe.npz"
    save_scoring_pipeline(pipe, path)
    back = load_scoring_pipeline(path)
    assert [(n, type(s)) for n, s in back.steps] == [(n, type(s)) for n, s in pipe.steps]
    assert back.named_steps["minmax"].feature_range == pipe.named_steps["minmax"].feature_range
    np.testing.assert_array_equal(back.transform(Q), pipe.transform(Q))
    np.testing.assert_array_equal(back.transform(X), pipe.transform(X))


def test_saving_is_exactly_at_the_path_and_overwrites(tmp_path):
    X, _, Q = data()
    path = tmp_path / "sub" / "model.bin"
    save_detector(KNNDetector().fit(X), path)
    save_detector(KNNDetector(n_neighbors=2).fit(X), path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.bin"]
    assert load_detector(path).n_neighbors == 2


@pytest.fixture
def saved(tmp_path):
    X, domains, _ = data()
    path = tmp_path / "det.npz"
    save_detector(make_detector("domain-banks").fit(X, domains=domains), path)
    return path


def test_unknown_class_is_refused_naming_the_file(saved):
    arrays = read_npz(saved)
    meta = json.loads(str(arrays["__meta__"]))
    meta["estimator"]["class"] = "os.system"
    np.savez(saved, **{**arrays, "__meta__": np.array(json.dumps(meta))})
    with pytest.raises(ModelError, match=r"det\.npz: unknown estimator class 'os.system'"):
        load_detector(saved)


def test_missing_array_is_refused(saved):
    arrays = read_npz(saved)
    del arrays["0.memory_"]
    np.savez(saved, **arrays)
    with pytest.raises(ModelError, match=r"det\.npz: array '0.memory_' of the DomainBanks is missing"):
        load_detector(saved)


def test_missing_state_and_unexpected_attributes_are_refused(saved):
    arrays = read_npz(saved)
    meta = json.loads(str(arrays["__meta__"]))
    meta["estimator"]["state"].pop("offset_")
    rewrite(saved, arrays, estimator=meta["estimator"])
    with pytest.raises(ModelError, match=r"lacks its fitted state \['offset_'\]"):
        load_detector(saved)
    meta["estimator"]["state"].update(offset_=0.0, __class__=1)
    rewrite(saved, arrays, estimator=meta["estimator"])
    with pytest.raises(ModelError, match="unexpected fitted attributes"):
        load_detector(saved)


def test_inconsistent_shapes_are_refused(saved):
    arrays = read_npz(saved)
    arrays["0.memory_"] = arrays["0.memory_"][:, :3]
    np.savez(saved, **arrays)
    with pytest.raises(ModelError, match="does not fit together"):
        load_detector(saved)


def test_pickled_object_arrays_are_never_loaded(saved):
    arrays = read_npz(saved)
    np.savez(saved, **{**arrays, "0.memory_": np.array([{"a": 1}, None], dtype=object)})
    with pytest.raises(ModelError, match=r"det\.npz: not a readable .npz detector file"):
        load_detector(saved)


def test_version_format_and_garbage_are_refused(saved, tmp_path):
    arrays = read_npz(saved)
    rewrite(saved, arrays, version=99)
    with pytest.raises(ModelError, match="format version 99"):
        load_detector(saved)
    rewrite(saved, arrays, format="something-else")
    with pytest.raises(ModelError, match="not a frozenasd detector file"):
        load_detector(saved)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(ModelError, match=r"junk\.npz"):
        load_detector(junk)
    with pytest.raises(ModelError, match="no such detector file"):
        load_detector(tmp_path / "absent.npz")
    np.savez(junk, x=np.zeros(3))
    with pytest.raises(ModelError, match="no __meta__"):
        load_detector(junk)


def test_detector_and_pipeline_files_are_not_confused(saved, tmp_path):
    with pytest.raises(ModelError, match="not a scoring pipeline"):
        load_scoring_pipeline(saved)
    X, _, _ = data()
    path = tmp_path / "pipe.npz"
    save_scoring_pipeline(scoring_pipeline(make_detector("knn")).fit(X), path)
    with pytest.raises(ModelError, match="not a detector"):
        load_detector(path)


def test_what_cannot_be_saved(tmp_path):
    X, _, _ = data()
    path = tmp_path / "x.npz"
    with pytest.raises(ModelError, match="not fitted"):
        save_detector(KNNDetector(), path)
    with pytest.raises(ModelError, match="cannot save PCA"):
        save_scoring_pipeline(Pipeline([("scale", StandardScaler()), ("pca", PCA(2))]).fit(X), path)
    det = make_detector("domain-banks", random_state=np.random.RandomState(0)).fit(X)
    with pytest.raises(ModelError, match="parameter 'random_state'"):
        save_detector(det, path)
    assert not path.exists()


def npy_member(header: dict, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def test_only_the_named_arrays_are_read(saved):
    arrays = read_npz(saved)
    np.savez(saved, **arrays, hidden=np.zeros(1000))
    with pytest.raises(ModelError, match=r"det\.npz: holds members its __meta__ does not name \('hidden'\)"):
        load_detector(saved)


def test_array_headers_are_checked_before_the_data(saved):
    with zipfile.ZipFile(saved) as zf:
        data = {i.filename: zf.read(i) for i in zf.infolist()}
    # 0.memory_ becomes a member of a few bytes whose header declares 8 GB
    data["0.memory_.npy"] = npy_member({"descr": "<f8", "fortran_order": False, "shape": (10**9,)}, bytes(64))
    with zipfile.ZipFile(saved, "w") as zf:
        for name, content in data.items():
            zf.writestr(name, content)
    with pytest.raises(ModelError, match=r"array '0\.memory_': its header declares \(1000000000,\) float64"):
        load_detector(saved)


def test_a_compressed_bomb_member_is_refused(saved):
    arrays = read_npz(saved)
    arrays["0.memory_"] = np.zeros((400_000, 5))  # 16 MB of zeros deflate to about 16 KB
    np.savez_compressed(saved, **arrays)
    assert saved.stat().st_size < 100_000
    with pytest.raises(
        ModelError, match=r"array '0\.memory_' inflates \d+x, more than the 100x .*\(a zip bomb\)"
    ):
        load_detector(saved)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_arrays_are_refused(saved, value):
    arrays = read_npz(saved)
    arrays["0.memory_"][3, 1] = value
    np.savez(saved, **arrays)
    with pytest.raises(ModelError, match=r"det\.npz: array '0\.memory_' holds NaN or infinite values"):
        load_detector(saved)


def test_non_finite_numbers_in_the_description_are_refused(tmp_path):
    X, _, _ = data()
    path = tmp_path / "pipe.npz"
    save_scoring_pipeline(scoring_pipeline(make_detector("knn")).fit(X), path, {"threshold": float("nan")})
    with pytest.raises(ModelError, match=r"pipe\.npz: the __meta__ description .*NaN is not a number"):
        pipeline_info(path)
    save_scoring_pipeline(scoring_pipeline(make_detector("knn")).fit(X), path, {"threshold": 1.0})
    arrays = read_npz(path)
    arrays["__meta__"] = np.array(str(arrays["__meta__"]).replace("1.0", "1e999"))
    np.savez(path, **arrays)
    with pytest.raises(ModelError, match=r"the number 1e999 is not finite"):
        pipeline_info(path)


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deeply_nested_description_is_refused(saved, depth):
    arrays = read_npz(saved)
    meta = str(arrays["__meta__"])
    arrays["__meta__"] = np.array(meta[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}")
    np.savez(saved, **arrays)
    with pytest.raises(ModelError, match=r"det\.npz: the __meta__ description is nested more than 32 levels"):
        load_detector(saved)


def data_with_a_constant_dimension(seed: int = 0):
    """``data`` with a dimension that is 1.5 for every training clip and varies for the test clips."""
    X, domains, Q = data(seed)
    return np.hstack([X, np.full((len(X), 1), 1.5)]), domains, np.hstack([Q, 3.0 * Q[:, :1]])


@pytest.mark.parametrize("name", ["knn", "mahalanobis"])
def test_the_dropped_dimensions_are_kept_in_a_saved_pipeline(name, tmp_path):
    X, domains, Q = data_with_a_constant_dimension()
    pipe = scoring_pipeline(make_detector(name)).fit(X, detector__domains=domains)
    save_scoring_pipeline(pipe, tmp_path / "pipe.npz")
    assert read_npz(tmp_path / "pipe.npz")["0.keep_"].tolist() == [True] * 5 + [False]
    back = load_scoring_pipeline(tmp_path / "pipe.npz")
    np.testing.assert_array_equal(back.named_steps["scale"].keep_, pipe.named_steps["scale"].keep_)
    np.testing.assert_array_equal(back.transform(Q), pipe.transform(Q))
    Q[:, -1] = -40.0  # the dropped dimension changes no score
    np.testing.assert_array_equal(back.transform(Q), pipe.transform(Q))


def without_keep(path: Path) -> None:
    """Rewrite a saved scoring pipeline as it was saved before its scaler had ``keep_``."""
    arrays = read_npz(path)
    meta = json.loads(str(arrays.pop("__meta__")))
    del arrays["0.keep_"]
    meta["steps"][0]["arrays"].remove("keep_")
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)


def test_a_scaler_saved_without_keep_keeps_every_dimension(tmp_path):
    X, domains, Q = data_with_a_constant_dimension()
    pipe = scoring_pipeline(make_detector("knn-euclidean")).fit(X, detector__domains=domains)
    path = tmp_path / "old.npz"
    save_scoring_pipeline(pipe, path)
    without_keep(path)
    back = load_scoring_pipeline(path)
    scale = back.named_steps["scale"]
    assert not hasattr(scale, "keep_")
    np.testing.assert_array_equal(scale.transform(Q), (Q - scale.mean_) / scale.scale_)
    detector, minmax = back.named_steps["detector"], back.named_steps["minmax"]
    expected = minmax.transform(detector.transform((Q - scale.mean_) / scale.scale_))
    np.testing.assert_array_equal(back.transform(Q), expected)
    assert back.transform(Q)[:, 0].tolist() != pipe.transform(Q)[:, 0].tolist()


@pytest.mark.parametrize("keep", [np.ones(6), np.ones(5, dtype=bool)], ids=["not-boolean", "wrong-length"])
def test_a_bad_keep_mask_is_refused_naming_the_file(keep, tmp_path):
    X, domains, _ = data_with_a_constant_dimension()
    path = tmp_path / "pipe.npz"
    save_scoring_pipeline(scoring_pipeline(make_detector("knn")).fit(X, detector__domains=domains), path)
    arrays = read_npz(path)
    arrays["0.keep_"] = keep
    np.savez(path, **arrays)
    with pytest.raises(ModelError, match=rf"{path}: the saved state does not fit together: keep_ must be"):
        load_scoring_pipeline(path)
