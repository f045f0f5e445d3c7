from __future__ import annotations

import json
import math
import pickle

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper
from sklearn.base import clone

from frozenasd.data.audio import load_audio
from frozenasd.embed.encoders.metadata import METADATA_KEY
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.embed.encoders.patch_encoder import build_patch_encoder
from frozenasd.embed.fbank import eat_features
from frozenasd.embed.frontends import LAYOUT_B1TF, get_frontend
from frozenasd.errors import ModelError

RNG = np.random.default_rng(0)


def waves(*lengths: int) -> list[np.ndarray]:
    return [RNG.standard_normal(n).astype(np.float32) * 0.1 for n in lengths]


def reference_embedding(model_path, wave: np.ndarray) -> np.ndarray:
    """Mean over patches of tanh(W·patch + b), computed from the graph's weights by hand."""
    model = onnx.load(str(model_path))
    init = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    w, b = init["patch_weight"][:, 0], init["patch_bias"]
    feats = eat_features(wave)  # (T, 128): time first, as EAT's conv sees it
    t_patches, f_patches = feats.shape[0] // 16, feats.shape[1] // 16
    tokens = []
    for t in range(t_patches):
        for f in range(f_patches):
            patch = feats[16 * t : 16 * t + 16, 16 * f : 16 * f + 16]
            tokens.append(np.tanh(np.einsum("dij,ij->d", w, patch) + b))
    return np.mean(tokens, axis=0)


def test_embeddings_match_hand_computation(patch_encoder):
    x = waves(16000, 8000)
    emb = ONNXFeatureExtractor(patch_encoder).fit().transform(x)
    assert emb.shape == (2, 24) and emb.dtype == np.float32
    for row, wave in zip(emb, x, strict=True):
        np.testing.assert_allclose(row, reference_embedding(patch_encoder, wave), atol=1e-5)


def test_both_input_layouts_give_the_same_embeddings(tmp_path, patch_encoder):
    native = build_patch_encoder(tmp_path / "b1tf.onnx", embed_dim=24, seed=3, layout=LAYOUT_B1TF)
    x = waves(12000, 5000)
    a = ONNXFeatureExtractor(patch_encoder).fit().transform(x)
    b = ONNXFeatureExtractor(native).fit().transform(x)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_batching_and_length_mixing_do_not_change_results(patch_encoder):
    x = waves(16000, 4000, 16000, 9000, 4000, 16000, 700)
    one = ONNXFeatureExtractor(patch_encoder, batch_size=1).fit().transform(x)
    many = ONNXFeatureExtractor(patch_encoder, batch_size=3).fit().transform(x)
    np.testing.assert_allclose(one, many, atol=1e-6)
    single = ONNXFeatureExtractor(patch_encoder).fit().transform([x[3]])
    np.testing.assert_allclose(single[0], one[3], atol=1e-6)


def test_target_frames_fixes_the_input_length(patch_encoder):
    ext = ONNXFeatureExtractor(patch_encoder, target_frames=64).fit()
    assert ext.features(waves(16000)[0]).shape == (64, 128)
    assert ext.features(waves(3000)[0]).shape == (64, 128)


def test_resamples_input_given_at_another_rate(patch_encoder):
    wave16 = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    wave8 = wave16[::2].copy()
    ext = ONNXFeatureExtractor(patch_encoder, sample_rate=8000).fit()
    assert ext.features(wave8).shape == ONNXFeatureExtractor(patch_encoder).fit().features(wave16).shape


def test_a_frontend_at_another_rate_sees_files_at_their_true_speed(tmp_path):
    """A file is read once at the frontend's rate and embedded as is: same duration, same pitch."""
    from frozenasd.data.dcase import Clip
    from frozenasd.embed import embed_clips

    rate = 22050
    encoder = build_patch_encoder(tmp_path / "enc22k.onnx", embed_dim=8, sample_rate=rate)
    t = np.arange(rate) / rate  # one second
    tone = (0.3 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    path = tmp_path / "section_00_source_test_normal_0000.wav"
    sf.write(path, tone, rate, subtype="FLOAT")
    ext = ONNXFeatureExtractor(encoder).fit()

    embedded = embed_clips(ext, [Clip.from_path(path, "fan", "test")], progress=False)
    direct = ext.embed_features([eat_features(tone, rate)])
    np.testing.assert_allclose(embedded.embeddings, direct, atol=1e-6)
    feats = ext.features(tone, rate)
    assert feats.shape[0] == eat_features(tone, rate).shape[0]  # one second, not 1.4 s
    bins = eat_features(tone, rate).mean(axis=0)
    np.testing.assert_allclose(feats.mean(axis=0), bins, atol=1e-5)  # the 3 kHz band, not 2.1 kHz
    # the same tone handed over at 16 kHz is resampled to the frontend's rate first
    tone16 = (0.3 * np.sin(2 * np.pi * 3000 * np.arange(16000) / 16000)).astype(np.float32)
    np.testing.assert_allclose(ext.features(tone16).mean(axis=0), bins, atol=0.05)


def test_clips_longer_than_the_encoder_takes_are_reported_once(tmp_path, tiny_dataset):
    from frozenasd.data.dcase import list_clips
    from frozenasd.embed import embed_clips

    encoder = build_patch_encoder(tmp_path / "short.onnx", embed_dim=8, max_frames=64)
    ext = ONNXFeatureExtractor(encoder).fit()
    assert ext.longest_samples() == 63 * 160 + 400
    clips = list_clips(tiny_dataset, "fan", "test")  # 1-second clips (98 frames) and a broken one
    messages: list[str] = []
    embedded = embed_clips(ext, clips, progress=False, warn=messages.append)
    assert len(embedded.cut) == len(embedded.clips) == 40
    notes = [m for m in messages if "longer than" in m]
    assert notes == [
        f"40 fan test clip(s) longer than 0.66 s, the encoder's longest input: only their first 0.66 s "
        f"are embedded (e.g. {embedded.cut[0].path})"
    ]
    from frozenasd.embed.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "cache", "e" * 64, {})
    embed_clips(ext, clips, progress=False, warn=lambda m: None, cache=cache)
    messages.clear()
    rerun = embed_clips(ext, clips, progress=False, warn=messages.append, cache=cache)  # from the cache
    assert rerun.cut == embedded.cut and sum("longer than" in m for m in messages) == 1
    fixed = ONNXFeatureExtractor(encoder, target_frames=64).fit()  # a length the user chose: no note
    assert fixed.longest_samples() is None
    messages.clear()
    again = embed_clips(fixed, clips, progress=False, warn=messages.append)
    assert not again.cut and not any("longer than" in m for m in messages)
    np.testing.assert_allclose(again.embeddings, embedded.embeddings, atol=1e-6)


def test_a_clip_too_large_for_memory_is_skipped_not_fatal(tiny_dataset, patch_encoder, monkeypatch):
    import frozenasd.embed.steps as steps_module
    from frozenasd.data.dcase import list_clips
    from frozenasd.embed import embed_clips

    clips = list_clips(tiny_dataset, "fan", "test")
    huge = clips[3].path
    real = steps_module.load_audio

    def load(path, *args, **kwargs):
        if path == huge:
            raise MemoryError
        return real(path, *args, **kwargs)

    monkeypatch.setattr(steps_module, "load_audio", load)
    messages: list[str] = []
    ext = ONNXFeatureExtractor(patch_encoder).fit()
    embedded = embed_clips(ext, clips, progress=False, warn=messages.append)
    assert len(embedded.clips) == len(clips) - 2  # the huge clip and the unreadable one
    assert (clips[3], "too large to load into memory") in embedded.skipped
    assert f"skipped {huge}: too large to load into memory" in messages


def test_of_a_long_recording_only_what_the_encoder_takes_is_read(tmp_path, monkeypatch):
    import frozenasd.data.audio as audio
    from frozenasd.data.dcase import Clip
    from frozenasd.embed import embed_clips

    encoder = build_patch_encoder(tmp_path / "short.onnx", embed_dim=8, max_frames=64)  # 0.66 s
    rng = np.random.default_rng(3)
    path = tmp_path / "long.wav"
    sf.write(path, (0.1 * rng.standard_normal((48000 * 30, 2)) + 0.02).astype(np.float32), 48000)
    decoded: list[int] = []
    read = audio.sf.SoundFile.read
    monkeypatch.setattr(
        audio.sf.SoundFile, "read", lambda self, n, **k: decoded.append(n) or read(self, n, **k)
    )
    ext = ONNXFeatureExtractor(encoder).fit()
    embedded = embed_clips(ext, [Clip.from_path(path, "fan", "test")], progress=False, warn=lambda m: None)
    assert sum(decoded) == math.ceil((10480 / 16000 + 1.0) * 48000)  # 1.66 s of 30 s
    assert embedded.cut == [embedded.clips[0]]
    whole = ext.embed_features([ext.features(load_audio(path, 16000), 16000)])  # read to the end
    np.testing.assert_allclose(embedded.embeddings, whole, atol=1e-4)


def test_large_examples_go_in_smaller_batches(patch_encoder, monkeypatch):
    ext = ONNXFeatureExtractor(patch_encoder, batch_size=8).fit()
    sizes: list[tuple[int, int]] = []
    run = ext._run
    monkeypatch.setattr(ext, "_run", lambda batch: sizes.append(batch.shape[:2]) or run(batch))
    small = [np.zeros((128, 128), np.float32)] * 9  # 1.3 s each: batch_size at a time
    short = [np.zeros((1024, 128), np.float32)] * 5  # 10 s each: two per call on the CPU
    long = [np.zeros((4096, 128), np.float32)] * 2  # 41 s each: alone
    emb = ext.embed_features(small + short + long)
    assert ext.provider_ == "CPUExecutionProvider"
    assert sorted(sizes) == sorted(
        [(8, 128), (1, 128), (2, 1024), (2, 1024), (1, 1024), (1, 4096), (1, 4096)]
    )
    np.testing.assert_allclose(emb[9], ext.embed_features(short[:1])[0], atol=1e-6)
    # on CUDA the budget is batch_size 10-s clips: 8 of them, or 2 of 41 s, a 2-minute clip alone
    monkeypatch.setattr(ext, "provider_", "CUDAExecutionProvider")
    sizes.clear()
    huge = [np.zeros((12288, 128), np.float32)]
    ext.embed_features(short * 2 + long + huge)
    assert sorted(sizes) == sorted([(8, 1024), (2, 1024), (2, 4096), (1, 12288)])


def test_a_clip_the_encoder_fails_on_is_skipped_and_its_batch_kept(tiny_dataset, patch_encoder, monkeypatch):
    from frozenasd.data.dcase import list_clips
    from frozenasd.embed import embed_clips

    clips = list_clips(tiny_dataset, "fan", "test")
    ext = ONNXFeatureExtractor(patch_encoder).fit()
    poison = ext.features(load_audio(clips[5].path), 16000)
    run = ext._run

    def failing(batch):  # the encoder fails on any batch holding the poisoned clip
        if any(np.array_equal(example, poison) for example in batch):
            raise ModelError(f"{ext.model_path}: the encoder failed on {len(batch)} example(s): bad input")
        return run(batch)

    monkeypatch.setattr(ext, "_run", failing)
    messages: list[str] = []
    embedded = embed_clips(ext, clips, progress=False, warn=messages.append)
    assert len(embedded.clips) == len(clips) - 2  # the poisoned clip and the unreadable one
    assert (clips[5], "the encoder failed on 1 example(s): bad input") in embedded.skipped
    reference = ONNXFeatureExtractor(patch_encoder).fit()
    others = [c for c in clips if c != clips[5]]
    expected = embed_clips(reference, others, progress=False, warn=lambda m: None)
    np.testing.assert_allclose(embedded.embeddings, expected.embeddings, atol=1e-6)


def test_reads_metadata_and_works_without(tmp_path, patch_encoder):
    ext = ONNXFeatureExtractor(patch_encoder).fit()
    assert ext.metadata_["model"]["embed_dim"] == 24
    assert ext.output_name_ == "emb"
    bare = build_patch_encoder(tmp_path / "bare.onnx", embed_dim=24, seed=3, with_metadata=False)
    plain = ONNXFeatureExtractor(bare).fit()
    assert plain.metadata_ == {}
    x = waves(6000)
    np.testing.assert_allclose(plain.transform(x), ext.transform(x), atol=1e-6)


def test_cls_output_without_pooling(patch_encoder):
    x = waves(6000)
    cls = ONNXFeatureExtractor(patch_encoder, output="cls", pooling="none").fit().transform(x)
    emb = ONNXFeatureExtractor(patch_encoder).fit().transform(x)
    np.testing.assert_allclose(cls, emb, atol=1e-6)  # the tiny encoder's cls is the token mean
    with pytest.raises(ModelError, match="pooling='mean'"):
        ONNXFeatureExtractor(patch_encoder, pooling="none").fit()


def test_clone_and_pickle(patch_encoder):
    ext = ONNXFeatureExtractor(patch_encoder, batch_size=2).fit()
    x = waves(5000)
    restored = pickle.loads(pickle.dumps(ext))
    np.testing.assert_allclose(restored.transform(x), ext.transform(x))
    assert clone(ext).get_params()["batch_size"] == 2


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ModelError, match="nope.onnx: ONNX model file not found"):
        ONNXFeatureExtractor(tmp_path / "nope.onnx").fit()


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="bad.onnx: not a loadable ONNX model"):
        ONNXFeatureExtractor(bad).fit()


def test_input_that_does_not_fit_is_refused(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "wrong",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 2, 64, "t"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 2, 64, "t"])],
    )
    path = tmp_path / "wrong.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(
        ModelError, match=r"wrong.onnx: input 'x' has shape .*expected \(batch, 3, 128, time\)"
    ):
        ONNXFeatureExtractor(path).fit()


def test_unknown_output_name(patch_encoder):
    with pytest.raises(ModelError, match="no output named 'layer_3'"):
        ONNXFeatureExtractor(patch_encoder, output="layer_3").fit()


def test_too_short_clip_raises_value_error(patch_encoder):
    with pytest.raises(ValueError):
        ONNXFeatureExtractor(patch_encoder).fit().features(np.zeros(100, dtype=np.float32))


def test_token_output_of_a_patch_frontend_is_pooled_over_tokens_then_patches(tmp_path):
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [0, 96, 64])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["emb"])],  # frames as tokens
        "tokens",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 96, 64])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 96, 64])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(
        key=METADATA_KEY, value=json.dumps({"schema": 1, "frontend": {"name": "yamnet_logmel"}})
    )
    path = tmp_path / "tokens.onnx"
    onnx.save(model, str(path))
    x = waves(16000, 31000)
    emb = ONNXFeatureExtractor(path, batch_size=2).fit().transform(x)
    fe = get_frontend("yamnet_logmel")
    for row, wave in zip(emb, x, strict=True):
        np.testing.assert_allclose(row, fe.features(wave, fe.resolve(None, "t")).mean(axis=(0, 1)), atol=1e-5)


def test_bands_pooling_keeps_the_frequency_bands(patch_encoder):
    wave = waves(16000)[0]
    bands = ONNXFeatureExtractor(patch_encoder, pooling="bands").fit().transform([wave])[0]
    assert bands.shape == (8 * 24,)
    # band f averages the tokens of frequency patch f over time; their mean over bands is the mean pooling
    mean = ONNXFeatureExtractor(patch_encoder).fit().transform([wave])[0]
    np.testing.assert_allclose(bands.reshape(8, 24).mean(0), mean, atol=1e-6)
    model = onnx.load(str(patch_encoder))
    init = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    feats = eat_features(wave)
    band3 = np.mean(
        [
            np.tanh(
                np.einsum("dij,ij->d", init["patch_weight"][:, 0], feats[16 * t : 16 * t + 16, 48:64])
                + init["patch_bias"]
            )
            for t in range(feats.shape[0] // 16)
        ],
        axis=0,
    )
    np.testing.assert_allclose(bands.reshape(8, 24)[3], band3, atol=1e-5)
    with pytest.raises(ModelError, match="no tokens to pool by band"):
        ONNXFeatureExtractor(patch_encoder, output="cls", pooling="bands").fit()
