"""ONNX export of EAT checkpoints: numbers, interface, metadata, graph fusions, the seed script."""

from __future__ import annotations

import collections
import hashlib
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import eat_checkpoints as ec  # noqa: E402

from frozenasd.backbones.eat_export import export as export_module  # noqa: E402
from frozenasd.backbones.eat_export.checkpoint import load_eat_checkpoint  # noqa: E402
from frozenasd.backbones.eat_export.export import export_onnx  # noqa: E402
from frozenasd.backbones.eat_export.model import EATEncoder  # noqa: E402
from frozenasd.embed.encoders.metadata import decode_metadata  # noqa: E402
from frozenasd.embed.frontends import EAT_FRONTEND  # noqa: E402
from frozenasd.errors import ModelError  # noqa: E402
from frozenasd.safe_pickle import TorchArchive  # noqa: E402

pytestmark = pytest.mark.torch
ROOT = Path(__file__).resolve().parents[1]
SEED_SCRIPT = ROOT / "example_model_onnx_conversion.py"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eat_export")
    written = ec.write_fairseq_pretrain(folder / "EAT-tiny_pt.pt")
    onnx_path = export_onnx(written.path, folder / "tiny.onnx", layers=(1, 0))
    state, config, _ = load_eat_checkpoint(written.path)
    return written, onnx_path, EATEncoder.from_state_dict(state, config)


def session(path: Path, level=None, optimized: Path | None = None):
    options = ort.SessionOptions()
    if level is not None:
        options.graph_optimization_level = level
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def seed_input(batch: int, frames: int, seed: int = 0) -> np.ndarray:
    """(B, 3, 128, T): one mel channel replicated three times, as the seed's pipeline feeds it."""
    mel = np.random.default_rng(seed).standard_normal((batch, 1, 128, frames)).astype(np.float32)
    return np.repeat(mel, 3, axis=1)


def torch_tokens(model: EATEncoder, x: np.ndarray, layers=()):
    native = torch.from_numpy(x[:, :1]).transpose(2, 3)  # (B, 1, T, 128)
    with torch.no_grad():
        return model.forward_layers(native, layers)


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("frames", [16, 160, 1024, 2048])
def test_onnx_matches_pytorch(tiny, batch, frames):
    _, onnx_path, model = tiny
    x = seed_input(batch, frames, seed=frames + batch)
    emb, cls, layer0, layer1 = session(onnx_path).run(["emb", "cls", "layer_0", "layer_1"], {"input": x})
    tokens, (block0, block1) = torch_tokens(model, x, layers=(0, 1))
    patches = frames // 16 * 8
    assert emb.shape == (batch, patches, 128) and cls.shape == (batch, 128)
    assert layer0.shape == layer1.shape == (batch, 1 + patches, 128)
    for got, want in ((emb, tokens[:, 1:]), (cls, tokens[:, 0]), (layer0, block0), (layer1, block1)):
        assert np.max(np.abs(got - want.numpy())) < 1e-4


def test_only_channel_zero_is_read(tiny):
    _, onnx_path, _ = tiny
    x = seed_input(2, 64)
    noisy = x.copy()
    noisy[:, 1:] = np.random.default_rng(5).standard_normal(noisy[:, 1:].shape)
    run = session(onnx_path).run
    assert np.array_equal(run(["emb"], {"input": x})[0], run(["emb"], {"input": noisy})[0])


def test_interface_and_metadata(tiny):
    written, onnx_path, _ = tiny
    proto = onnx.load(str(onnx_path))
    assert [i.name for i in proto.graph.input] == ["input"]
    assert dims(proto.graph.input[0]) == ["batch", 3, 128, "time"]
    outputs = {o.name: dims(o) for o in proto.graph.output}
    assert outputs == {
        "emb": ["batch", "patches", 128],
        "cls": ["batch", 128],
        "layer_0": ["batch", "tokens", 128],
        "layer_1": ["batch", "tokens", 128],
    }
    opset = {o.domain: o.version for o in proto.opset_import}
    assert opset.get("", opset.get("ai.onnx")) >= 17
    assert not proto.graph.initializer[0].external_data  # one self-contained file
    doc = decode_metadata({p.key: p.value for p in proto.metadata_props})
    model = doc["model"]
    assert model["name"] == "EAT-tiny_pt" and model["family"] == "eat" and model["size"] == "custom"
    assert (model["embed_dim"], model["depth"], model["num_heads"], model["table_rows"]) == (128, 2, 2, 6144)
    assert model["source_file"] == "EAT-tiny_pt.pt"
    assert model["source_sha256"] == hashlib.sha256(written.path.read_bytes()).hexdigest()
    assert model["use_ema"] is False and model["source_layout"] == "fairseq_pretrain"
    assert doc["frontend"] == {**EAT_FRONTEND, "max_frames": 12288}
    assert doc["input"] == {"name": "input", "layout": "B3FT"}
    assert set(doc["outputs"]) == {"emb", "cls", "layer_0", "layer_1"}
    assert doc["export"]["opset"] == 17


def op_counts(path: Path) -> collections.Counter:
    """Node op types of a graph, ``domain.op`` outside the default domain."""
    nodes = onnx.load(str(path), load_external_data=False).graph.node
    return collections.Counter(f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in nodes)


def test_graph_ops_that_ort_fuses(tiny, tmp_path):
    """Attention is ORT's MultiHeadAttention, LayerNorm a native op, GELU the erf pattern ORT fuses."""
    _, onnx_path, model = tiny
    depth, heads = model.config.depth, model.config.num_heads
    raw = op_counts(onnx_path)
    assert raw["com.microsoft.MultiHeadAttention"] == depth
    assert raw["Softmax"] == 0 and raw["Transpose"] <= 2  # no per-head reshuffling or score tensor
    assert raw["LayerNormalization"] == 1 + 2 * depth and raw["Erf"] == depth
    assert "ReduceMean" not in raw and "Tanh" not in raw  # no decomposed LayerNorm, exact GELU
    attention = [n for n in onnx.load(str(onnx_path)).graph.node if n.op_type == "MultiHeadAttention"]
    assert {onnx.helper.get_attribute_value(a) for n in attention for a in n.attribute} == {heads}
    optimized = tmp_path / "optimized.onnx"
    session(onnx_path, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, optimized)
    fused = op_counts(optimized)
    assert fused["com.microsoft.MultiHeadAttention"] == depth and fused["Softmax"] == 0
    assert fused["com.microsoft.BiasGelu"] == depth and fused["Erf"] == 0
    assert fused["LayerNormalization"] == 1 + 2 * depth


def test_standard_ops_export_gives_the_same_numbers(tiny, tmp_path):
    """fused_attention=False: default-domain operators only, and the same outputs as the fused graph."""
    written, onnx_path, model = tiny
    plain = export_onnx(written.path, tmp_path / "plain.onnx", layers=(0,), depth=2, fused_attention=False)
    ops = op_counts(plain)
    assert not [op for op in ops if "." in op]
    assert ops["Softmax"] == model.config.depth
    x = seed_input(2, 320, seed=7)
    want = session(onnx_path).run(["emb", "cls", "layer_0"], {"input": x})
    got = session(plain, ort.GraphOptimizationLevel.ORT_DISABLE_ALL).run(
        ["emb", "cls", "layer_0"], {"input": x}
    )
    for g, w in zip(got, want, strict=True):
        assert np.max(np.abs(g - w)) < 1e-4


def test_fused_attention_scale_follows_head_dim(tmp_path):
    """Head size 32: the fused op's scale is 1/sqrt(32), the one the PyTorch encoder divides by."""
    written = ec.write_fairseq_pretrain(tmp_path / "narrow.pt", size="narrow")
    path = export_onnx(written.path, tmp_path / "narrow.onnx", verify=False)
    state, config, _ = load_eat_checkpoint(written.path)
    assert config.embed_dim // config.num_heads == 32
    x = seed_input(3, 160, seed=11)
    emb, cls = session(path).run(["emb", "cls"], {"input": x})
    tokens, _ = torch_tokens(EATEncoder.from_state_dict(state, config), x)
    assert np.max(np.abs(emb - tokens[:, 1:].numpy())) < 1e-4
    assert np.max(np.abs(cls - tokens[:, 0].numpy())) < 1e-4


def test_verify_catches_a_broken_graph(tmp_path, monkeypatch):
    written = ec.write_fairseq_pretrain(tmp_path / "pt.pt")
    finalize = export_module._finalize

    def corrupt(proto, description):
        finalize(proto, description)
        weight = next(t for t in proto.graph.initializer if t.dims == [128] and t.name.endswith("weight"))
        values = onnx.numpy_helper.to_array(weight) * 1.01
        weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))

    monkeypatch.setattr(export_module, "_finalize", corrupt)
    with pytest.raises(ModelError, match="differs from PyTorch"):
        export_onnx(written.path, tmp_path / "broken.onnx")
    assert list(tmp_path.glob("broken.onnx*")) == []  # nothing left that looks usable


def test_options_ema_depth_max_frames(tmp_path):
    written = ec.write_fairseq_pretrain(tmp_path / "pt.pt")
    path = export_onnx(written.path, tmp_path / "cut.onnx", use_ema=True, depth=1, max_frames=512)
    doc = decode_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})
    assert doc["model"]["use_ema"] is True and doc["model"]["depth"] == 1
    assert doc["frontend"]["max_frames"] == 512 and doc["model"]["table_rows"] == 256
    state, config, _ = load_eat_checkpoint(written.path, use_ema=True)
    teacher = EATEncoder.from_state_dict(state, config).truncate(depth=1)
    x = seed_input(2, 512)
    emb = session(path).run(["emb"], {"input": x})[0]
    tokens, _ = torch_tokens(teacher, x)
    assert np.max(np.abs(emb - tokens[:, 1:].numpy())) < 1e-4
    with pytest.raises(Exception, match="broadcast"):  # beyond the kept table rows
        session(path).run(["emb"], {"input": seed_input(1, 528)})


def test_legacy_table_and_hf_folder(tmp_path):
    old = ec.write_fairseq_pretrain(tmp_path / "old.pt", table_rows=512)
    doc_old = decode_metadata(
        {p.key: p.value for p in onnx.load(str(export_onnx(old.path, tmp_path / "old.onnx"))).metadata_props}
    )
    assert doc_old["frontend"]["max_frames"] == 1024
    hf = ec.write_hf(tmp_path / "EAT-tiny_finetune", variant="finetune")
    path = export_onnx(hf.path.parent, tmp_path / "hf.onnx", verify=False)
    doc = decode_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})
    assert doc["model"]["name"] == "EAT-tiny_finetune" and doc["model"]["source_file"] == "model.safetensors"
    assert doc["model"]["source_layout"] == "hf"


def test_bad_options(tmp_path):
    written = ec.write_fairseq_pretrain(tmp_path / "pt.pt")
    with pytest.raises(ModelError, match="opset"):
        export_onnx(written.path, tmp_path / "a.onnx", opset=16)
    with pytest.raises(ModelError, match="layers"):
        export_onnx(written.path, tmp_path / "a.onnx", layers=(2,))
    with pytest.raises(ModelError, match="max_frames"):
        export_onnx(written.path, tmp_path / "a.onnx", max_frames=1000)
    assert not (tmp_path / "a.onnx").exists()


@pytest.mark.slow
def test_real_base_shapes_export_and_verify(tmp_path, caplog):
    """EAT-base's real shapes (fp16 student, fp32 _ema): export and check against PyTorch."""
    written = ec.write_fairseq_pretrain(tmp_path / "EAT-base_epoch30_pt.pt", size="base")
    with TorchArchive(written.path) as archive:  # the appendix's counts: 164 student keys + _ema of 150
        stored = archive.load()["model"]
    assert len(stored) == 164 + 1 and len(stored["_ema"]) == 150
    caplog.set_level(logging.INFO, logger=export_module.__name__)
    start = time.perf_counter()
    path = export_onnx(written.path, tmp_path / "eat_base_export.onnx")  # verify=True: T=1024 and 512
    elapsed = time.perf_counter() - start
    verified = [r.getMessage() for r in caplog.records if r.getMessage().startswith("verified")]
    assert len(verified) == 1 and float(verified[0].rsplit("=", 1)[1]) < 1e-4
    proto = onnx.load(str(path))
    doc = decode_metadata({p.key: p.value for p in proto.metadata_props})
    assert doc["model"]["size"] == "base" and doc["model"]["embed_dim"] == 768
    assert doc["model"]["depth"] == 12 and doc["frontend"]["max_frames"] == 12288
    floats = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    assert sum(int(np.prod(t.dims)) for t in floats if np.prod(t.dims) > 1) == 85_254_144 + 4_718_592
    assert elapsed < 120, f"export took {elapsed:.0f} s"


# --- the seed's script ----------------------------------------------------------------------------------


def run_seed(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SEED_SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_seed_script_with_defaults(tmp_path):
    ec.write_fairseq_pretrain(tmp_path / "model_weights" / "EAT-base_epoch30_pt.pt")
    done = run_seed(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 blocks, not the 12 of EAT-base" in done.stderr
    out = tmp_path / "eat_base_export.onnx"
    emb = session(out).run(["emb"], {"input": seed_input(2, 1024)})[0]
    assert emb.shape == (2, 512, 128)
    done = run_seed(tmp_path, "--depth", "1", "--output", "one.onnx", "--no-verify")
    assert done.returncode == 0, done.stderr
    doc = decode_metadata({p.key: p.value for p in onnx.load(str(tmp_path / "one.onnx")).metadata_props})
    assert doc["model"]["depth"] == 1 and "warning" not in done.stderr


def test_seed_script_without_checkpoint(tmp_path):
    done = run_seed(tmp_path)
    assert done.returncode == 2
    assert "model_weights/EAT-base_epoch30_pt.pt" in done.stderr
    assert "frozenasd download eat-base" in done.stderr and "README" in done.stderr
    assert not (tmp_path / "eat_base_export.onnx").exists()


def test_seed_script_reports_bad_checkpoint(tmp_path):
    (tmp_path / "model_weights").mkdir()
    (tmp_path / "model_weights" / "EAT-base_epoch30_pt.pt").write_bytes(b"not a checkpoint")
    done = run_seed(tmp_path)
    assert done.returncode == 1 and "not a torch.save zip" in done.stderr


def test_extractor_pools_patch_tokens_of_any_output(tiny):
    """Mean and band-keeping pooling use the patch tokens only: a block output's CLS token is left out."""
    from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
    from frozenasd.embed.fbank import eat_features

    _, onnx_path, model = tiny
    wave = np.random.default_rng(3).standard_normal(16000 * 2).astype(np.float32) * 0.1
    feats = eat_features(wave)  # (T, 128)
    native = torch.from_numpy(feats[None, None])
    with torch.no_grad():
        tokens, (block0,) = model.forward_layers(native, (0,))
    block0 = block0[0].numpy()  # (1 + P, D), CLS first
    final = tokens[0, 1:].numpy()  # the patch tokens, (P, D)
    dim = final.shape[1]

    def extract(**kw):
        return ONNXFeatureExtractor(onnx_path, **kw).fit().transform([wave])[0]

    np.testing.assert_allclose(extract(), final.mean(0), atol=1e-4)
    np.testing.assert_allclose(extract(output="layer_0"), block0[1:].mean(0), atol=1e-4)
    bands = extract(output="layer_0", pooling="bands")
    assert bands.shape == (8 * dim,)
    expected = block0[1:].reshape(-1, 8, dim).mean(0).reshape(-1)  # time-major tokens: t * 8 + f
    np.testing.assert_allclose(bands, expected, atol=1e-4)
    np.testing.assert_allclose(
        extract(pooling="bands"), final.reshape(-1, 8, dim).mean(0).reshape(-1), atol=1e-4
    )


def test_export_command(tmp_path):
    written = ec.write_fairseq_pretrain(tmp_path / "EAT-tiny_pt.pt")
    for flags, name in (([], "fused.onnx"), (["--standard-ops"], "plain.onnx")):
        done = subprocess.run(
            [sys.executable, "-m", "frozenasd", "export", str(written.path), "-o", name, *flags],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    ops = {
        name: {n.op_type for n in onnx.load(str(tmp_path / name)).graph.node}
        for name in ("fused.onnx", "plain.onnx")
    }
    assert "MultiHeadAttention" in ops["fused.onnx"] and "Softmax" not in ops["fused.onnx"]
    assert "MultiHeadAttention" not in ops["plain.onnx"] and "Softmax" in ops["plain.onnx"]
