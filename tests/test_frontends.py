"""Frontends against independent re-computations of their definitions, and their parameter checks."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
import scipy.fft
import scipy.signal
from onnx import TensorProto, helper

from frozenasd.embed.encoders.metadata import METADATA_KEY, SCHEMA_VERSION
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.embed.fbank import eat_features
from frozenasd.embed.frontends import FRONTENDS, get_frontend
from frozenasd.errors import ModelError

RNG = np.random.default_rng(7)


def machine_like(n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    x = 0.3 * np.sin(2 * np.pi * 120 * t) + 0.1 * np.sin(2 * np.pi * 2500 * t) + 0.05 * RNG.standard_normal(n)
    return x.astype(np.float32)


# ---------------------------------------------------------------- EAT
def test_eat_frontend_is_the_eat_fbank():
    fe = get_frontend("eat_fbank")
    params = fe.resolve({"name": "eat_fbank", "norm_mean": -3.0}, "m.onnx")
    wave = machine_like(12345, 16000)
    got = fe.features(wave, params)
    np.testing.assert_array_equal(got, eat_features(wave, 16000, norm_mean=-3.0))
    assert fe.examples(got).shape == (1, *got.shape)
    assert fe.features(wave, params, target_frames=32).shape == (32, 128)


# ---------------------------------------------------------------- YAMNet reference
def yamnet_reference_weights(n_mel: int, n_bins: int, rate: float, lo: float, hi: float) -> np.ndarray:
    """The HTK triangles, one bin and one band at a time (log10 form of the mel scale)."""

    def mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    edges = [mel(lo) + (mel(hi) - mel(lo)) * i / (n_mel + 1) for i in range(n_mel + 2)]
    w = np.zeros((n_bins, n_mel))
    for k in range(1, n_bins):  # the DC bin stays empty
        m = mel(k * (rate / 2) / (n_bins - 1))
        for b in range(n_mel):
            left, centre, right = edges[b : b + 3]
            if left < m <= centre:
                w[k, b] = (m - left) / (centre - left)
            elif centre < m < right:
                w[k, b] = (right - m) / (right - centre)
    return w


def yamnet_reference_patches(wave: np.ndarray) -> np.ndarray:
    """YAMNet's patches from frames cut one by one, scipy's periodic Hann and FFT, loop-built weights."""
    # at least 0.975 s, then whole 0.48 s hops
    n = max(wave.size, 15600)
    n = 15600 + 7680 * math.ceil((n - 15600) / 7680)
    x = np.pad(wave.astype(np.float64), (0, n - wave.size))
    frames = np.stack([x[s : s + 400] for s in range(0, n - 400 + 1, 160)])
    window = scipy.signal.get_window("hann", 400)  # periodic
    magnitude = np.abs(scipy.fft.rfft(frames * window, n=512, axis=1))
    log_mel = np.log(magnitude @ yamnet_reference_weights(64, 257, 16000.0, 125.0, 7500.0) + 0.001)
    starts = range(0, log_mel.shape[0] - 96 + 1, 48)
    return np.stack([log_mel[s : s + 96] for s in starts])


@pytest.mark.parametrize("n_samples", [16000, 7000, 15600, 15601, 23280, 40000])
def test_yamnet_patches_match_reference(n_samples):
    fe = get_frontend("yamnet_logmel")
    wave = machine_like(n_samples, 16000)
    got = fe.features(wave, fe.resolve(None, "m.onnx"))
    want = yamnet_reference_patches(wave)
    assert got.shape == want.shape and got.shape[1:] == (96, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)


def test_yamnet_mel_weights_are_unit_peak_triangles_without_dc():
    from frozenasd.embed.frontends import yamnet_mel_weights

    w = yamnet_mel_weights(64, 257, 16000.0, 125.0, 7500.0)
    np.testing.assert_allclose(w, yamnet_reference_weights(64, 257, 16000.0, 125.0, 7500.0), atol=1e-6)
    assert not w[0].any() and w.max() <= 1.0 and (w.max(axis=0) > 0.5).all()


def test_yamnet_log_offset_floors_silence():
    fe = get_frontend("yamnet_logmel")
    patches = fe.features(np.zeros(20000, np.float32), fe.resolve(None, "m.onnx"))
    np.testing.assert_allclose(patches, np.log(0.001), rtol=1e-6)


# ---------------------------------------------------------------- aiSFX reference
def aisfx_reference_frames(x: np.ndarray, size: int, hop: int) -> list[np.ndarray]:
    """Frames cut one at a time: the first is centred on sample 0; stop after the first whose centre
    reaches the end; never start a frame past the end."""
    frames, start = [], -((size + 1) // 2)
    while start < x.size:
        frame = np.zeros(size)
        lo, hi = max(start, 0), min(start + size, x.size)
        frame[lo - start : hi - start] = x[lo:hi]
        frames.append(frame)
        if start + size // 2 >= x.size:
            break
        start += hop
    return frames


def aisfx_reference_bank(n_mel: int, n_bins: int, rate: float, lo: float, hi: float) -> np.ndarray:
    """Unit-sum HTK triangles in double precision: weights linear in mel, rows summing to one."""

    def mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m: float) -> float:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = [hz(mel(lo) + (mel(hi) - mel(lo)) * i / (n_mel + 1)) for i in range(n_mel + 2)]
    bin_hz = (rate / 2) / (n_bins - 1)
    bank = np.zeros((n_mel, n_bins))
    for b in range(n_mel):
        left, centre, right = edges[b : b + 3]
        for k in range(n_bins):
            f = k * bin_hz
            if left <= f < centre:
                bank[b, k] = (mel(f) - mel(left)) / (mel(centre) - mel(left))
            elif centre <= f <= right:
                bank[b, k] = (mel(right) - mel(f)) / (mel(right) - mel(centre))
        bank[b] /= bank[b].sum()
    return bank


def aisfx_reference_spectrogram(wave: np.ndarray) -> np.ndarray:
    frames = np.stack(aisfx_reference_frames(wave.astype(np.float64), 2048, 1024))
    window = scipy.signal.get_window("hann", 2048, fftbins=False)  # symmetric
    power = np.abs(scipy.fft.rfft(frames * window, axis=1)) ** 2
    energies = power @ aisfx_reference_bank(96, 1025, 44100.0, 0.0, 22050.0).T
    return np.log10(1e4 * energies + 1.0) / 9.457798957824707


@pytest.mark.parametrize("n_samples", [3000, 44100, 1024 * 120, 1024 * 120 + 1, 150000])
def test_aisfx_spectrogram_matches_reference(n_samples):
    from frozenasd.embed.frontends import aisfx_mel_spectrogram

    fe = get_frontend("aisfx_mel")
    wave = machine_like(n_samples, 44100)
    got = aisfx_mel_spectrogram(wave, fe.resolve(None, "m.onnx"))
    want = aisfx_reference_spectrogram(wave)
    assert got.shape == want.shape == (math.ceil(n_samples / 1024) + 1, 96)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)


def test_aisfx_blocks_match_the_package_blocking():
    from frozenasd.embed.frontends import aisfx_blocks

    preprocessing = pytest.importorskip("aisfx.preprocessing")
    for frames in (30, 100, 149, 150, 151, 432):
        spec = RNG.random((frames, 96)).astype(np.float32)
        want = preprocessing.blocking(spec, block_size=100, hop_size=50, drop_partial_block=True)
        np.testing.assert_array_equal(aisfx_blocks(spec, 100, 50, True), want)


def test_aisfx_features_are_blocks_of_the_spectrogram():
    from frozenasd.embed.frontends import aisfx_mel_spectrogram

    fe = get_frontend("aisfx_mel")
    params = fe.resolve(None, "m.onnx")
    wave = machine_like(44100 * 4, 44100)
    blocks = fe.features(wave, params)
    spec = aisfx_mel_spectrogram(wave, params)  # 174 frames: blocks at 0 and 50 (100 dropped: partial)
    assert spec.shape[0] == 174 and blocks.shape == (2, 100, 96)
    np.testing.assert_array_equal(blocks[0], spec[:100])
    np.testing.assert_array_equal(blocks[1], spec[50:150])
    short = fe.features(wave[:20000], params)  # 21 frames: one block, zero-padded
    assert short.shape == (1, 100, 96) and not short[0, 21:].any()


def test_long_recordings_are_computed_in_chunks_of_frames(monkeypatch):
    """Chunking the spectrogram (here 7 frames at a time) changes no value."""
    from frozenasd.embed.frontends import aisfx_mel_spectrogram, base

    monkeypatch.setattr(base, "FRAME_CHUNK", 7)
    aisfx = get_frontend("aisfx_mel")
    wave = machine_like(44100 + 5000, 44100)  # 54 frames: 7 whole chunks and a partial one
    np.testing.assert_allclose(
        aisfx_mel_spectrogram(wave, aisfx.resolve(None, "m.onnx")),
        aisfx_reference_spectrogram(wave),
        atol=2e-5,
        rtol=0,
    )
    yamnet = get_frontend("yamnet_logmel")
    wave = machine_like(23280, 16000)
    got = yamnet.features(wave, yamnet.resolve(None, "m.onnx"))
    np.testing.assert_allclose(got, yamnet_reference_patches(wave), atol=2e-5, rtol=0)


# ---------------------------------------------------------------- parameter checks
def test_resolve_refuses_parameters_outside_the_definition():
    eat, yam, sfx = (get_frontend(n) for n in ("eat_fbank", "yamnet_logmel", "aisfx_mel"))
    with pytest.raises(ModelError, match=r"m.onnx: frontend 'eat_fbank' parameter 'num_mel_bins' is 64"):
        eat.resolve({"num_mel_bins": 64}, "m.onnx")
    with pytest.raises(ModelError, match="m.onnx: frontend 'yamnet_logmel' has no parameter 'n_fft'"):
        yam.resolve({"n_fft": 512}, "m.onnx")
    with pytest.raises(ModelError, match="parameter 'mel_bands' must be a int"):
        yam.resolve({"mel_bands": "64"}, "m.onnx")
    with pytest.raises(ModelError, match="mel range"):
        yam.resolve({"mel_max_hz": 9000.0}, "m.onnx")
    with pytest.raises(ModelError, match="covers no spectrum bin"):
        sfx.resolve({"mel_bands": 1000}, "m.onnx")
    assert yam.resolve({"sample_rate": 16000.0}, "m.onnx")["sample_rate"] == 16000


def test_unknown_frontend_is_named():
    with pytest.raises(ModelError, match=r"m.onnx: unknown frontend 'vggish'; known frontends: aisfx_mel"):
        get_frontend("vggish", "m.onnx")
    assert sorted(FRONTENDS) == ["aisfx_mel", "eat_fbank", "logmel", "yamnet_logmel"]


# ---------------------------------------------------------------- extractor with patch frontends
def mean_model(path, input_shape, frontend: dict | None, reduce_axes, out_dim, layout=None):
    """An ONNX model whose output is its input averaged over ``reduce_axes``, with optional metadata."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["emb"], axes=list(reduce_axes), keepdims=0)],
        "mean",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", out_dim])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if frontend is not None:
        doc = {"schema": SCHEMA_VERSION, "frontend": frontend}
        if layout:
            doc["input"] = {"name": "input", "layout": layout}
        model.metadata_props.add(key=METADATA_KEY, value=json.dumps(doc))
    onnx.save(model, str(path))
    return path


def test_clip_embedding_is_the_mean_over_its_patches(tmp_path):
    path = mean_model(tmp_path / "y.onnx", ["batch", 1, 96, 64], {"name": "yamnet_logmel"}, [1, 2], 64)
    fe = get_frontend("yamnet_logmel")
    params = fe.resolve(None, "y")
    waves = [machine_like(n, 16000) for n in (16000, 40000, 9000, 30000)]
    one = ONNXFeatureExtractor(path, batch_size=1).fit()
    assert one.frontend_["name"] == "yamnet_logmel" and one.layout_ == "B1TF"
    emb = one.transform(waves)
    for row, wave in zip(emb, waves, strict=True):
        patches = fe.features(wave, params)
        np.testing.assert_allclose(row, patches.mean(axis=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(
        ONNXFeatureExtractor(path, batch_size=5).fit().transform(waves), emb, atol=1e-6
    )


def test_resamples_to_the_frontend_rate(tmp_path):
    path = mean_model(tmp_path / "a.onnx", ["batch", 100, 96], {"name": "aisfx_mel"}, [1], 96)
    ext = ONNXFeatureExtractor(path, sample_rate=16000).fit()
    assert ext.frontend_["sample_rate"] == 44100 and ext.layout_ == "BTF"
    assert ext.features(machine_like(16000 * 4, 16000)).shape == (2, 100, 96)
    assert ext.transform([machine_like(20000, 16000)]).shape == (1, 96)


def test_model_whose_frontend_does_not_fit_is_refused_before_audio(tmp_path, monkeypatch):
    def no_audio(*args, **kwargs):
        raise AssertionError("audio was processed")

    for frontend in FRONTENDS.values():
        monkeypatch.setattr(type(frontend), "features", no_audio)
    wrong_mel = mean_model(
        tmp_path / "w.onnx", ["batch", 1, 96, 64], {"name": "yamnet_logmel", "mel_bands": 128}, [1, 2], 64
    )
    with pytest.raises(
        ModelError, match=r"w.onnx: input 'input' has shape \['batch', 1, 96, 64\]; .*\(batch, 1, 96, 128\)"
    ):
        ONNXFeatureExtractor(wrong_mel).fit()
    wrong_layout = mean_model(
        tmp_path / "l.onnx", ["batch", 100, 96], {"name": "aisfx_mel"}, [1], 96, layout="B3FT"
    )
    with pytest.raises(ModelError, match="l.onnx: input 'input'"):
        ONNXFeatureExtractor(wrong_layout).fit()
    eat_shaped = mean_model(tmp_path / "e.onnx", ["batch", 1, "time", 128], {"name": "aisfx_mel"}, [1], 128)
    with pytest.raises(ModelError, match=r"e.onnx: .*gives \(batch, 100, 96\)"):
        ONNXFeatureExtractor(eat_shaped).fit()
    unknown = mean_model(tmp_path / "u.onnx", ["batch", 1, 96, 64], {"name": "vggish"}, [1, 2], 64)
    with pytest.raises(ModelError, match="u.onnx: unknown frontend 'vggish'"):
        ONNXFeatureExtractor(unknown).fit()
    fine = mean_model(tmp_path / "f.onnx", ["batch", 1, 96, 64], {"name": "yamnet_logmel"}, [1, 2], 64)
    with pytest.raises(ModelError, match="f.onnx: target_frames applies to the eat_fbank frontend only"):
        ONNXFeatureExtractor(fine, target_frames=1024).fit()


# ---------------------------------------------------------------- the clip lengths every frontend embeds
@pytest.mark.parametrize(
    ("name", "shortest"), [("eat_fbank", 400), ("yamnet_logmel", 400), ("aisfx_mel", 1102)]
)
def test_a_waveform_shorter_than_one_25_ms_frame_is_refused(name, shortest):
    fe = get_frontend(name)
    params = fe.resolve(None, "m.onnx")
    assert fe.shortest_samples(params) == shortest == int(params["sample_rate"] * 0.025)
    with pytest.raises(ValueError, match="fewer than one 25 ms frame|shorter than"):
        fe.features(machine_like(shortest - 1, params["sample_rate"]), params)
    assert np.isfinite(fe.features(machine_like(shortest, params["sample_rate"]), params)).all()


@pytest.mark.parametrize("name", ["yamnet_logmel", "aisfx_mel"])
def test_of_a_longer_clip_the_first_ten_minutes_are_embedded(name, monkeypatch):
    fe = get_frontend(name)
    params = fe.resolve(None, "m.onnx")
    rate = params["sample_rate"]
    assert fe.longest_samples(params) == 600 * rate
    monkeypatch.setattr(type(fe), "longest_seconds", 3.0)  # the same cut, on a clip that is quick to make
    wave = machine_like(5 * rate, rate)
    np.testing.assert_array_equal(fe.features(wave, params), fe.features(wave[: 3 * rate], params))


@pytest.mark.parametrize(
    ("frontend", "shape", "axes", "dim"),
    [("yamnet_logmel", ["batch", 1, 96, 64], [1, 2], 64), ("aisfx_mel", ["batch", 100, 96], [1], 96)],
)
def test_run_skips_clips_shorter_than_one_frame_with_every_frontend(tmp_path, frontend, shape, axes, dim):
    import soundfile as sf

    from frozenasd.data.dcase import Clip
    from frozenasd.embed import embed_clips

    model = mean_model(tmp_path / "m.onnx", shape, {"name": frontend}, axes, dim)
    clips = []
    for ms in (10, 20, 30, 1000):  # 25 ms is the shortest clip embedded
        path = tmp_path / f"section_00_source_test_normal_{ms:04d}_x.wav"
        sf.write(path, machine_like(16 * ms, 16000), 16000)
        clips.append(Clip.from_path(path, "fan", "test"))
    messages: list[str] = []
    embedded = embed_clips(ONNXFeatureExtractor(model).fit(), clips, progress=False, warn=messages.append)
    assert embedded.clips == clips[2:]
    assert [c for c, _ in embedded.skipped] == clips[:2]
    assert all("too short" in reason for _, reason in embedded.skipped), embedded.skipped
    assert f"skipped {clips[0].path}: too short" in messages[0]
