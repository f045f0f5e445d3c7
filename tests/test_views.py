"""Embedding views: pooling statistics, waveform normalisation, the logmel view, constant dimensions."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper

from frozenasd.backbones import format_backbones_table, prepare, resolve_model, status
from frozenasd.data.dcase import list_clips
from frozenasd.detectors.persistence import pipeline_info
from frozenasd.embed import embed_clips, open_cache
from frozenasd.embed.encoders.metadata import METADATA_KEY, decode_metadata
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.embed.encoders.pooling import (
    POOLINGS,
    QUANTILES,
    STATISTICS,
    normalise_waveform,
    parse_pooling,
    pool_frames,
)
from frozenasd.embed.fbank import eat_features, num_frames
from frozenasd.embed.frontends import get_frontend
from frozenasd.settings import RunSettings
from frozenasd.workflows.demo import DemoData, run_demo
from frozenasd.workflows.fit_score import audio_files, fit_machine, score_files

RNG = np.random.default_rng(7)


def noise(n: int, scale: float = 0.1) -> np.ndarray:
    return (RNG.standard_normal(n) * scale).astype(np.float32)


def numpy_pool(frames: np.ndarray, statistic: str) -> np.ndarray:
    """Each statistic's definition, written with numpy's own reductions."""
    if statistic == "mean":
        return frames.mean(axis=0)
    if statistic == "max":
        return frames.max(axis=0)
    if statistic == "meanstd":
        return np.concatenate([frames.mean(axis=0), frames.std(axis=0)])
    return np.concatenate([np.median(frames, axis=0), np.percentile(frames, 90, axis=0), frames.max(axis=0)])


# ---------------------------------------------------------------- pooling statistics
@pytest.mark.parametrize("statistic", STATISTICS)
def test_each_statistic_matches_its_numpy_definition(statistic):
    frames = RNG.standard_normal((37, 5)).astype(np.float32)
    frames[11, 2] = 40.0  # one short event: max and the top quantile must keep it
    pooled = pool_frames(frames, statistic)
    assert pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, numpy_pool(frames.astype(np.float64), statistic), rtol=1e-6)
    if statistic in ("max", "quantiles"):
        assert pooled[-5 + 2] == 40.0


def test_pooling_names():
    assert QUANTILES == (0.5, 0.9, 1.0)
    assert parse_pooling("max") == ("max", False)
    assert parse_pooling("bands-quantiles") == ("quantiles", True)
    assert parse_pooling("bands") == parse_pooling("bands-mean") == ("mean", True)
    assert parse_pooling("none") == ("mean", False)
    with pytest.raises(ValueError, match="pooling must be one of .*'max'.*got 'median'"):
        parse_pooling("median")
    with pytest.raises(ValueError, match="unknown pooling statistic 'median'"):
        pool_frames(np.ones((2, 2)), "median")
    with pytest.raises(ValueError, match="non-empty"):
        pool_frames(np.ones((0, 2)), "mean")


def patch_tokens(model_path, wave: np.ndarray) -> np.ndarray:
    """The tiny encoder's patch tokens ``(time, band, dim)`` = tanh(W·patch + b), from its weights."""
    model = onnx.load(str(model_path))
    init = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    w, b = init["patch_weight"][:, 0].astype(np.float64), init["patch_bias"]
    feats = eat_features(wave).astype(np.float64)
    t_patches, f_patches = feats.shape[0] // 16, feats.shape[1] // 16
    patches = feats[: 16 * t_patches].reshape(t_patches, 16, f_patches, 16).transpose(0, 2, 1, 3)
    return np.tanh(np.einsum("dij,tfij->tfd", w, patches) + b)


@pytest.mark.parametrize("statistic", STATISTICS)
def test_token_pooling_and_band_keeping_pooling_of_an_eat_like_encoder(patch_encoder, statistic):
    waves = [noise(16000), noise(27000)]
    flat = ONNXFeatureExtractor(patch_encoder, pooling=statistic).fit().transform(waves)
    bands = ONNXFeatureExtractor(patch_encoder, pooling=f"bands-{statistic}").fit().transform(waves)
    for wave, row, band_row in zip(waves, flat, bands, strict=True):
        tokens = patch_tokens(patch_encoder, wave)  # (time, 8, 24)
        np.testing.assert_allclose(row, numpy_pool(tokens.reshape(-1, 24), statistic), atol=1e-5)
        per_band = numpy_pool(tokens.reshape(len(tokens), -1), statistic)  # over time, bands kept
        np.testing.assert_allclose(band_row, per_band, atol=1e-5)
    assert bands.shape[1] == 8 * flat.shape[1]


def per_patch_mean_model(path):
    """A YAMNet-frontend model whose (batch, 64) output is each patch's mean over its 96 frames."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["emb"], axes=[1, 2], keepdims=0)],
        "mean",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 96, 64])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 64])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(
        key=METADATA_KEY, value=json.dumps({"schema": 1, "frontend": {"name": "yamnet_logmel"}})
    )
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("statistic", STATISTICS)
def test_one_vector_per_example_is_pooled_over_the_clips_examples(tmp_path, statistic):
    path = per_patch_mean_model(tmp_path / "y.onnx")
    fe = get_frontend("yamnet_logmel")
    params = fe.resolve(None, "y")
    waves = [noise(40000), noise(9000), noise(30000)]
    emb = ONNXFeatureExtractor(path, pooling=statistic, batch_size=2).fit().transform(waves)
    for wave, row in zip(waves, emb, strict=True):
        per_patch = fe.features(wave, params).mean(axis=1).astype(np.float64)  # (patches, 64)
        np.testing.assert_allclose(row, numpy_pool(per_patch, statistic), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="no tokens to pool by band"):
        ONNXFeatureExtractor(path, pooling="bands-max").fit()


# ---------------------------------------------------------------- normalisation
def test_normalise_waveform_sets_the_level():
    x = noise(8000, 0.37)
    rms = normalise_waveform(x, "rms")
    assert np.sqrt(np.mean(rms.astype(np.float64) ** 2)) == pytest.approx(0.1, rel=1e-6)
    assert np.max(np.abs(normalise_waveform(x, "peak"))) == pytest.approx(1.0, rel=1e-6)
    assert normalise_waveform(x, "none") is x
    silent = np.zeros(100, np.float32)
    np.testing.assert_array_equal(normalise_waveform(silent, "rms"), silent)
    with pytest.raises(ValueError, match="normalise must be one of"):
        normalise_waveform(x, "loud")
    with pytest.raises(ValueError, match="normalise must be one of"):
        ONNXFeatureExtractor(prepare("logmel"), normalise="loud").fit()


@pytest.mark.parametrize("mode", ["rms", "peak"])
def test_normalised_clips_embed_alike_whatever_their_recording_level(mode):
    wave = noise(16000)
    model = prepare("logmel")
    plain = ONNXFeatureExtractor(model, pooling="meanstd").fit().transform([wave, 4 * wave])
    # without normalisation the level dimensions (means of frame RMS, peak, crest) move by 20·log10(4) dB
    rms_db, peak_db, crest_db = plain[:, 128], plain[:, 129], plain[:, 130]
    assert rms_db[1] - rms_db[0] == pytest.approx(20 * np.log10(4), abs=1e-3)
    assert peak_db[1] - peak_db[0] == pytest.approx(20 * np.log10(4), abs=1e-3)
    assert crest_db[1] == pytest.approx(crest_db[0], abs=1e-3)
    normed = ONNXFeatureExtractor(model, pooling="meanstd", normalise=mode).fit().transform([wave, 4 * wave])
    np.testing.assert_allclose(normed[0], normed[1], atol=1e-4)


# ---------------------------------------------------------------- the logmel view
def test_logmel_frontend_is_the_unpadded_fbank_and_frame_levels():
    fe = get_frontend("logmel")
    params = fe.resolve(None, "logmel.onnx")
    wave = noise(16000 + 2345)
    feats = fe.features(wave, params)
    n = num_frames(wave.size, 400, 160)
    assert feats.shape == (n, 131) and feats.dtype == np.float32
    padded = eat_features(wave)  # EAT's frontend: the same frames, then zero frames up to a multiple of 16
    assert padded.shape[0] > n
    np.testing.assert_array_equal(feats[:, :128], padded[:n])
    x = wave.astype(np.float64) - wave.astype(np.float64).mean()
    for k in (0, 17, n - 1):
        frame = x[160 * k : 160 * k + 400]
        rms_db = 10 * np.log10(np.mean(frame**2) + 1e-10)
        peak_db = 10 * np.log10(np.max(frame**2) + 1e-10)
        np.testing.assert_allclose(feats[k, 128:], [rms_db, peak_db, peak_db - rms_db], atol=1e-4)
    silent = fe.features(np.zeros(1000, np.float32), params)
    np.testing.assert_allclose(silent[:, 128:130], -100.0, atol=1e-4)
    with pytest.raises(ValueError, match="fewer than one 25 ms frame"):
        fe.features(noise(399), params)


def test_logmel_backbone_is_always_ready_and_embeds_the_pooled_frames():
    assert status()["logmel"].ready
    path = prepare("logmel")
    assert prepare("logmel") == path == resolve_model("logmel")
    meta = decode_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})
    assert meta["frontend"]["name"] == "logmel" and meta["model"]["name"] == "logmel"
    assert "logmel" in format_backbones_table() and "prepared:" in status()["logmel"].detail
    wave = noise(24000)
    frames = get_frontend("logmel").features(wave, get_frontend("logmel").resolve(None, "m"))
    for statistic in STATISTICS:
        emb = ONNXFeatureExtractor(path, pooling=statistic).fit().transform([wave])[0]
        np.testing.assert_allclose(emb, numpy_pool(frames.astype(np.float64), statistic), atol=1e-5)
    with pytest.raises(Exception, match="needs EAT's patch grid"):
        ONNXFeatureExtractor(path, pooling="bands-max").fit()


def test_cache_key_follows_pooling_and_normalise(tiny_dataset, tmp_path):
    model = prepare("logmel")
    keys = {}
    for pooling, normalise in [("mean", "none"), ("max", "none"), ("max", "rms"), ("max", "peak")]:
        settings = RunSettings(
            model_path=model, pooling=pooling, normalise=normalise, progress=False, cache_dir=tmp_path
        )
        extractor = settings.extractor().fit()
        cache = open_cache(settings, extractor)
        done = embed_clips(extractor, list_clips(tiny_dataset, "fan", "train"), cache=cache, progress=False)
        keys[pooling, normalise] = cache.folder
        cached = cache.load("fan", "train")
        assert len(cached) == len(done.clips) == 20
        np.testing.assert_array_equal(
            np.sort(np.stack(list(cached.values())), 0), np.sort(done.embeddings, 0)
        )
    assert len(set(keys.values())) == 4  # no two views share cached embeddings


# ---------------------------------------------------------------- run, fit, score, demo with logmel
def test_logmel_through_run_fit_and_score(tiny_dataset, tmp_path):
    def cli(*args):
        done = subprocess.run(
            [sys.executable, "-m", "frozenasd", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    common = ["--model", "logmel", "--pooling", "max", "--normalise", "rms", "--no-progress"]
    cli("run", "--data", str(tiny_dataset), "--detector", "mahalanobis", "--out", "out", *common)
    metrics = json.loads((tmp_path / "out" / "results_fan" / "run.json").read_text())["metrics"]
    assert metrics["auc"] > 0.9  # the tiny data set's anomalies add a loud whine
    cli("fit", "--data", str(tiny_dataset), "--machine", "fan", "-o", "fan.npz", *common)
    info = pipeline_info(tmp_path / "fan.npz")
    assert info["pooling"] == "max" and info["normalise"] == "rms"
    # the saved normalisation is applied when scoring: a clip 3x quieter scores as the clip
    clip = sorted((tiny_dataset / "fan" / "test").glob("*anomaly_0001*"))[0]
    wave, rate = sf.read(clip, dtype="float32")
    sf.write(tmp_path / "quiet.wav", wave / 3, rate, subtype="FLOAT")
    scored = score_files(tmp_path / "fan.npz", prepare("logmel"), [clip, tmp_path / "quiet.wav"])
    assert scored.scores[0] == pytest.approx(scored.scores[1], rel=1e-3)
    assert "logmel" in cli("backbones")


def test_fitted_file_with_unknown_embedding_settings_is_named(tiny_dataset, tmp_path, monkeypatch):
    settings = RunSettings(
        model_path=prepare("logmel"), detector="mahalanobis", progress=False, cache_dir=None
    )
    fit_machine(tiny_dataset, "fan", settings, tmp_path / "fan.npz")
    import frozenasd.scoring.model as scoring

    real = scoring.pipeline_info
    monkeypatch.setattr(scoring, "pipeline_info", lambda p: {**real(p), "normalise": "loudest"})
    with pytest.raises(Exception, match=r"fan\.npz: the saved embedding settings .*'loudest'"):
        score_files(tmp_path / "fan.npz", prepare("logmel"), audio_files([tiny_dataset / "fan" / "test"]))


def test_demo_runs_with_the_logmel_backbone(tmp_path):
    small = DemoData(
        machines=("valve",), n_train_source=8, n_train_target=2, n_test_per_cell=3, duration_s=1.0
    )
    result = run_demo(tmp_path / "demo", backbone="logmel", data=small, progress=False)
    assert isinstance(result.results["valve"], dict), result.results


def test_every_pooling_is_offered_on_the_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "frozenasd", "run", "--help"], capture_output=True, text=True, timeout=60
    )
    text = " ".join(done.stdout.split())
    for name in POOLINGS:
        assert name in text
    assert "--normalise {none,rms,peak}" in text
