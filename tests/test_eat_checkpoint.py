"""Loading EAT checkpoints of every released layout, safely."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import os
import pickle
import pickletools
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import eat_checkpoints as ec  # noqa: E402

from frozenasd.backbones.eat_export.checkpoint import inspect_eat_checkpoint, load_eat_checkpoint  # noqa: E402
from frozenasd.backbones.eat_export.model import EATEncoder  # noqa: E402
from frozenasd.errors import ModelError  # noqa: E402
from frozenasd.safe_pickle import (  # noqa: E402
    StoredTensor,
    UnsafeCheckpointError,
    load_torch_file,
)

pytestmark = pytest.mark.torch


def assert_same_tensors(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].dtype == torch.float32, key
        assert torch.equal(got[key], value), key


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- layouts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg_form", ["dict", "dictconfig"])
def test_fairseq_pretrain_student(tmp_path, cfg_form):
    written = ec.write_fairseq_pretrain(tmp_path / "EAT-tiny_pt.pt", cfg_form=cfg_form)
    state, config, info = load_eat_checkpoint(written.path)
    assert_same_tensors(state, written.student)
    assert (config.embed_dim, config.depth, config.num_heads, config.mlp_dim) == (128, 2, 2, 512)
    assert config.max_positions == 6144 and info["table_rows"] == 6144 and info["max_frames"] == 12288
    assert info["layout"] == "fairseq_pretrain" and info["dtype"] == "float16" and not info["use_ema"]
    assert info["model_name"] == "EAT-tiny_pt" and info["source_file"] == "EAT-tiny_pt.pt"
    assert info["source_sha256"] == sha256(written.path)
    assert info["cfg"] == written.cfg  # a pickled DictConfig comes back as the plain dict


def test_fairseq_pretrain_ema_teacher(tmp_path):
    written = ec.write_fairseq_pretrain(tmp_path / "pt.pt", cfg_form="dictconfig")
    state, _, info = load_eat_checkpoint(written.path, use_ema=True)
    assert_same_tensors(state, written.ema)
    assert not torch.equal(state["blocks.0.attn.qkv.weight"], written.student["blocks.0.attn.qkv.weight"])
    assert info["dtype"] == "float32" and info["use_ema"] and info["layout"] == "fairseq_pretrain+ema"


@pytest.mark.parametrize("cfg_form", ["dict", "dictconfig"])
def test_fairseq_finetune(tmp_path, cfg_form):
    written = ec.write_fairseq_finetune(tmp_path / "EAT-tiny_ft.pt", cfg_form=cfg_form)
    state, config, info = load_eat_checkpoint(written.path)
    assert_same_tensors(state, written.student)
    assert info["layout"] == "fairseq_finetune" and config.num_heads == 2
    assert info["cfg"]["model"]["prediction_mode"] == "CLS_TOKEN"
    with pytest.raises(ModelError, match=r"EAT-tiny_ft\.pt.*_ema"):
        load_eat_checkpoint(written.path, use_ema=True)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
@pytest.mark.parametrize("variant", ["pretrain", "finetune"])
def test_hugging_face_port(tmp_path, fmt, variant):
    written = ec.write_hf(tmp_path / f"EAT-tiny_{variant}", variant=variant, fmt=fmt)
    for source in (written.path.parent, written.path):  # the folder or the weights file
        state, config, info = load_eat_checkpoint(source)
        assert_same_tensors(state, written.student)
        assert info["layout"] == "hf" and info["model_name"] == f"EAT-tiny_{variant}"
        assert info["source_file"] == written.path.name and info["source_sha256"] == sha256(written.path)
        assert config.depth == 2 and info["dtype"] == "float32"
    with pytest.raises(ModelError, match="_ema"):
        load_eat_checkpoint(written.path.parent, use_ema=True)


def test_heads_come_from_the_cfg(tmp_path):
    # head_dim 32: the weights alone would suggest 1 head of 64
    pt = ec.write_fairseq_pretrain(tmp_path / "narrow.pt", size="narrow")
    hf = ec.write_hf(tmp_path / "narrow_hf", size="narrow")
    assert load_eat_checkpoint(pt.path)[1].num_heads == 2
    assert load_eat_checkpoint(hf.path)[1].num_heads == 2
    bare = tmp_path / "bare.pt"
    torch.save(OrderedDict((k, v) for k, v in load_torch_state(pt.path).items()), bare)
    config, info = inspect_eat_checkpoint(bare)
    assert info["layout"] == "fairseq_state_dict" and config.num_heads == 1  # embed_dim / 64


def load_torch_state(path: Path) -> dict:
    """The student tensors of a fairseq file, as torch tensors (read through the safe loader)."""
    root = load_torch_file(path)
    return {k: torch.from_numpy(v) for k, v in root["model"].items() if k != "_ema"}


def test_bare_state_dict_with_ema(tmp_path):
    written = ec.write_fairseq_pretrain(tmp_path / "pt.pt")
    root = load_torch_file(written.path)
    model = {k: (torch.from_numpy(v) if k != "_ema" else v) for k, v in root["model"].items()}
    model["_ema"] = {k: torch.from_numpy(v) for k, v in model["_ema"].items()}
    torch.save(model, tmp_path / "bare.pt")
    state, _, info = load_eat_checkpoint(tmp_path / "bare.pt")
    assert info["layout"] == "fairseq_state_dict"
    assert_same_tensors(state, written.student)
    assert_same_tensors(load_eat_checkpoint(tmp_path / "bare.pt", use_ema=True)[0], written.ema)


def test_legacy_512_row_table(tmp_path):
    written = ec.write_fairseq_pretrain(tmp_path / "old.pt", table_rows=512)
    state, config, info = load_eat_checkpoint(written.path)
    assert info["table_rows"] == 512 and config.max_frames == 1024
    assert torch.equal(state["positions"], written.student["positions"])
    model = EATEncoder.from_state_dict(state, config)
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 1024, 128)).shape == (1, 513, 128)
        with pytest.raises(ModelError, match="1040 frames exceeds the position table"):
            model(torch.zeros(1, 1, 1040, 128))


def test_large_layout_with_24_blocks(tmp_path):
    written = ec.write_fairseq_pretrain(tmp_path / "large.pt", size="tiny-large", cfg_form="dictconfig")
    state, config, _ = load_eat_checkpoint(written.path)
    assert config.depth == 24
    assert_same_tensors(state, written.student)


def test_canonical_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    written = ec.write_fairseq_pretrain(tmp_path / "pt.pt")
    save_file(written.student, str(tmp_path / "own.safetensors"))
    state, _, info = load_eat_checkpoint(tmp_path / "own.safetensors")
    assert info["layout"] == "canonical"
    assert_same_tensors(state, written.student)


def test_inspect_reads_no_tensor_data(tmp_path, monkeypatch):
    written = ec.write_fairseq_pretrain(tmp_path / "pt.pt")

    def refuse(self):
        raise AssertionError("tensor data read")

    monkeypatch.setattr(StoredTensor, "numpy", refuse)
    config, info = inspect_eat_checkpoint(written.path)
    assert config.depth == 2 and info["layout"] == "fairseq_pretrain" and "source_sha256" not in info


# --- files that do not fit --------------------------------------------------------------------------


def save_bare(tmp_path: Path, name: str, edit) -> Path:
    written = ec.write_fairseq_pretrain(tmp_path / "src.pt")
    state = load_torch_state(written.path)
    edit(state)
    torch.save(state, tmp_path / name)
    return tmp_path / name


def test_missing_key_is_named(tmp_path):
    path = save_bare(tmp_path, "missing.pt", lambda s: s.pop("blocks.1.mlp.fc2.bias"))
    with pytest.raises(ModelError, match=r"missing\.pt.*missing keys.*blocks\.1\.mlp\.fc2\.bias"):
        load_eat_checkpoint(path)


def test_unexpected_key_is_named(tmp_path):
    # a final LayerNorm (a pre-norm variant) must not be silently dropped
    path = save_bare(tmp_path, "extra.pt", lambda s: s.update({"norm.weight": torch.ones(128)}))
    with pytest.raises(ModelError, match=r"extra\.pt.*unexpected keys.*norm\.weight"):
        load_eat_checkpoint(path)


def test_wrong_shape_is_named(tmp_path):
    path = save_bare(tmp_path, "shape.pt", lambda s: s.update({"blocks.0.attn.qkv.bias": torch.zeros(100)}))
    with pytest.raises(ModelError, match=r"shape\.pt.*blocks\.0\.attn\.qkv\.bias \(100,\)"):
        load_eat_checkpoint(path)


def test_pre_norm_cfg_is_refused(tmp_path):
    written = ec.write_fairseq_pretrain(tmp_path / "pt.pt")
    root = load_torch_file(written.path)
    root["cfg"]["model"]["layer_norm_first"] = True
    root["model"] = {k: torch.from_numpy(v) for k, v in root["model"].items() if k != "_ema"}
    root["last_optimizer_state"] = None
    torch.save(root, tmp_path / "prenorm.pt")
    with pytest.raises(ModelError, match="layer_norm_first"):
        load_eat_checkpoint(tmp_path / "prenorm.pt")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_eat_checkpoint(tmp_path / "nothing.pt")
    with pytest.raises(ModelError, match="folder holds no"):
        load_eat_checkpoint(tmp_path)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ModelError, match=r"text\.pt.*not a torch\.save zip"):
        load_eat_checkpoint(tmp_path / "text.pt")
    torch.save({"a": torch.ones(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(ModelError, match="legacy"):
        load_eat_checkpoint(tmp_path / "legacy.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(ModelError, match="safetensors"):
        load_eat_checkpoint(tmp_path / "bad.safetensors")


def rewrite_zip(
    src: Path, dst: Path, replace: dict[str, bytes], compression: int = zipfile.ZIP_STORED
) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=compression) as zout:
        for name in zin.namelist():
            data = zin.read(name)
            for suffix, new in replace.items():
                if name.endswith(suffix):
                    data = new
            zout.writestr(name, data)
    return dst


def test_truncated_storage_is_an_error(tmp_path):
    torch.save({"a": torch.ones(1000)}, tmp_path / "ok.pt")
    path = rewrite_zip(tmp_path / "ok.pt", tmp_path / "cut.pt", {"/data/0": b"\0" * 10})
    with pytest.raises(ModelError, match="truncated"):
        load_torch_file(path)


# --- files built to exhaust the machine --------------------------------------------------------------


def hostile_pickles() -> dict[str, tuple[bytes, str]]:
    """Hand-written ``data.pkl`` streams, each small, with what loading one must say."""
    two_million = b"J" + (2_000_000).to_bytes(4, "little")
    return {
        "huge list": (
            b"\x80\x02c__builtin__\nlist\nc__builtin__\nrange\n" + two_million + b"\x85R\x85R.",
            "builds a range of 2000000 items",
        ),
        "huge bytearray": (
            b"\x80\x02c__builtin__\nbytearray\n" + two_million + b"\x85R.",
            "builds a bytearray of 2000000 items",
        ),
        "huge array": (
            b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
            + two_million
            + b"\x85U\x02f8\x87R.",
            r"builds a numpy array of shape \(2000000,\)",
        ),
        "many operations": (b"\x80\x02(" + b"N" * 600_000 + b"l.", "more than 500000 operations"),
    }


@pytest.mark.parametrize("kind", sorted(hostile_pickles()))
def test_pickles_that_would_exhaust_memory_are_refused(tmp_path, kind):
    payload, message = hostile_pickles()[kind]
    torch.save({"model": {"w": torch.ones(3)}}, tmp_path / "template.pt")
    path = rewrite_zip(tmp_path / "template.pt", tmp_path / "bomb.pt", {"/data.pkl": payload})
    assert path.stat().st_size < 700_000
    for load in (load_torch_file, inspect_eat_checkpoint):
        with pytest.raises(ModelError, match=rf"bomb\.pt: .*{message}"):
            load(path)


def test_a_hostile_checkpoint_is_one_line_from_the_command(tmp_path):
    payload, message = hostile_pickles()["huge list"]
    torch.save({"model": {"w": torch.ones(3)}}, tmp_path / "template.pt")
    path = rewrite_zip(tmp_path / "template.pt", tmp_path / "bomb.pt", {"/data.pkl": payload})
    done = subprocess.run(
        [sys.executable, "-m", "frozenasd", "export", str(path), "-o", str(tmp_path / "out.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "bomb.pt" in lines[0] and message in lines[0], done.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_inflating_records_are_read_no_further_than_they_can_need(tmp_path):
    torch.save({"model": {"w": torch.ones(1000)}}, tmp_path / "ok.pt")
    big_pickle = pickle.dumps(bytes(4 << 20), protocol=4)  # 4 MiB of pickle, a few KB deflated
    path = rewrite_zip(
        tmp_path / "ok.pt", tmp_path / "pkl.pt", {"/data.pkl": big_pickle}, zipfile.ZIP_DEFLATED
    )
    assert path.stat().st_size < 50_000
    with pytest.raises(
        ModelError, match=r"pkl\.pt: member '.*data\.pkl': 4194\d+ bytes .*more than the 2097152"
    ):
        load_torch_file(path)
    path = rewrite_zip(
        tmp_path / "ok.pt", tmp_path / "rec.pt", {"/data/0": bytes(8 << 20)}, zipfile.ZIP_DEFLATED
    )
    with pytest.raises(ModelError, match=r"rec\.pt: member '.*data/0': 8388608 bytes .*more than the 4000"):
        load_torch_file(path)


def test_storage_records_that_inflate_like_a_bomb_are_refused(tmp_path):
    torch.save({"w": torch.zeros(1 << 20)}, tmp_path / "zeros.pt")  # 4 MiB of zeros
    path = rewrite_zip(tmp_path / "zeros.pt", tmp_path / "bomb.pt", {}, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 50_000
    with pytest.raises(ModelError, match=r"bomb\.pt: member '.*data/0': inflates \d+x, more than the 20x"):
        load_torch_file(path)


def test_tensors_that_repeat_their_storage_are_refused(tmp_path):
    torch.save({"x": torch.zeros(1).expand(1000, 1000)}, tmp_path / "stride0.pt")
    with pytest.raises(ModelError, match=r"stride0\.pt: .*shape \(1000, 1000\) repeats storage '0'"):
        load_torch_file(tmp_path / "stride0.pt")
    torch.save({"x": torch.zeros(10).as_strided((5, 5), (1, 1))}, tmp_path / "overlap.pt")
    with pytest.raises(ModelError, match=r"overlap\.pt: .*shape \(5, 5\) needs more elements than storage"):
        load_torch_file(tmp_path / "overlap.pt")


def test_shared_parts_cannot_multiply_the_work(tmp_path):
    node: list = [torch.ones(1)]
    for _ in range(19):  # 19 pickled lists, 2**19 paths through them
        node = [node, node]
    torch.save({"model": {"w": torch.ones(2)}, "extra_state": node}, tmp_path / "dag.pt")
    with pytest.raises(ModelError, match=r"dag\.pt: .*more than 200000 parts"):
        load_torch_file(tmp_path / "dag.pt")


def test_deeply_nested_cfg_is_a_clear_error(tmp_path, monkeypatch):
    deep: dict = {}
    inner = deep
    for _ in range(1000):
        inner["a"] = {}
        inner = inner["a"]
    monkeypatch.setattr(sys, "getrecursionlimit", sys.getrecursionlimit)  # restored after the test
    sys.setrecursionlimit(10_000)  # only for torch.save's pickler
    torch.save(
        {"model": {ec.IMAGE + "extra_tokens": torch.zeros(1, 1, 4)}, "cfg": deep}, tmp_path / "deep.pt"
    )
    sys.setrecursionlimit(1000)
    with pytest.raises(ModelError, match=r"deep\.pt: cfg: .*nested more than 100 levels deep"):
        inspect_eat_checkpoint(tmp_path / "deep.pt")


def test_deeply_nested_config_json_is_a_clear_error(tmp_path):
    written = ec.write_hf(tmp_path / "hf")
    (tmp_path / "hf" / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match=r"config\.json: unreadable config\.json \(nested too deeply\)"):
        inspect_eat_checkpoint(written.path)


def test_budgets_leave_ten_times_the_largest_layout(tmp_path):
    """EAT-large's pre-training layout with an omegaconf cfg; tiny-large has its every key and record, so
    its pickle has the same operations (and a few bytes less per tensor for the smaller shapes)."""
    from frozenasd.safe_pickle import pickle_globals as pg

    written = ec.write_fairseq_pretrain(tmp_path / "large.pt", size="tiny-large", cfg_form="dictconfig")
    with zipfile.ZipFile(written.path) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))
    ops = sum(1 for _ in pickletools.genops(data))
    assert 10 * len(data) <= pg.MAX_PICKLE_BYTES and 10 * ops <= pg.MAX_PICKLE_OPS
    _, info = inspect_eat_checkpoint(written.path)  # walks the cfg within the budgets
    assert info["cfg"]["model"]["depth"] == 24


# --- the restricted unpickler ---------------------------------------------------------------------------


def test_plain_data_round_trips(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {
        "transposed": base.t(),  # a strided view of its storage
        "slice": base[1:, 2:],  # a view with an offset
        "half": base.half(),
        "bf16": (base / 7).bfloat16(),
        "ints": torch.arange(5),
        "mask": torch.tensor([True, False]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "param": torch.nn.Parameter(torch.ones(2)),
        "np": [
            np.float64(1.25),
            np.int32(7),
            np.arange(6).reshape(2, 3),
            np.array(["a", "bc"]),
            np.array([1, "x"], dtype=object),
        ],
        "plain": (b"\x00\xffbytes", {1, 2}, frozenset({"a"}), 2 + 3j, None, slice(1, 5, 2)),
        "ns": argparse.Namespace(lr=0.1, name="eat"),
    }
    torch.save(obj, tmp_path / "data.pt")
    back = load_torch_file(tmp_path / "data.pt")
    for key in ("transposed", "slice", "half", "ints", "mask", "scalar", "empty"):
        assert back[key].dtype == obj[key].numpy().dtype and np.array_equal(back[key], obj[key].numpy()), key
    assert np.array_equal(back["bf16"], obj["bf16"].float().numpy()) and back["bf16"].dtype == np.float32
    assert np.array_equal(back["param"], np.ones(2, dtype=np.float32))
    for got, want in zip(back["np"], obj["np"], strict=True):
        assert type(got) is type(want) and np.array_equal(got, want)
    assert back["plain"] == obj["plain"]
    assert back["ns"].state == {"lr": 0.1, "name": "eat"}


def evil_pickles(marker: Path) -> dict[str, bytes]:
    """Pickle streams, named by the global they call, that create ``marker`` when unpickled normally."""
    cmd = f"touch {marker}".encode()

    class Reduce:
        def __init__(self, func, *args):
            self.func, self.args = func, args

        def __reduce__(self):
            return self.func, self.args

    code = f"open({str(marker)!r}, 'w').write('x')"
    return {
        # hand-written protocol 2: GLOBAL 'os system', then call it
        "os.system": b"\x80\x02cos\nsystem\nX" + len(cmd).to_bytes(4, "little") + cmd + b"\x85R.",
        # protocol 4 reaches globals through STACK_GLOBAL
        "builtins.eval": pickle.dumps({"model": Reduce(eval, code)}, protocol=4),
        # protocol 2 spells these the Python 2 way (__builtin__.exec, commands.Popen)
        "builtins.exec": pickle.dumps([1, Reduce(exec, code)], protocol=2),
        "subprocess.Popen": pickle.dumps(Reduce(subprocess.Popen, ["touch", str(marker)]), protocol=2),
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen"])
def test_malicious_pickle_is_refused_without_side_effect(tmp_path, name):
    marker = tmp_path / "pwned"
    torch.save({"model": {"w": torch.ones(3)}}, tmp_path / "template.pt")
    payload = evil_pickles(marker)[name]
    path = rewrite_zip(tmp_path / "template.pt", tmp_path / "evil.pt", {"/data.pkl": payload})
    for load in (load_torch_file, load_eat_checkpoint, inspect_eat_checkpoint):
        with pytest.raises(UnsafeCheckpointError) as err:
            load(path)
        assert f"'{name}'" in str(err.value) and "evil.pt" in str(err.value)
        assert isinstance(err.value, ModelError)
    assert not marker.exists()
    # the stream is live: a plain unpickler does create the file, so the test is meaningful
    if name == "os.system":
        pickle.loads(payload)
        assert marker.exists()


def test_payload_hidden_among_tensors_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"model": {"a": torch.ones(2)}, "extra_state": {"x": Evil()}}, tmp_path / "hidden.pt")
    with pytest.raises(UnsafeCheckpointError, match=f"{os.system.__module__}.system"):
        load_eat_checkpoint(tmp_path / "hidden.pt")
    assert not marker.exists()


def test_unknown_global_is_named(tmp_path):
    torch.save({"model": {"a": torch.ones(2)}, "when": datetime.datetime(2024, 4, 1)}, tmp_path / "date.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"date\.pt.*'datetime\.datetime'"):
        load_torch_file(tmp_path / "date.pt")


def test_parsing_and_inspecting_need_no_torch(tmp_path):
    written = ec.write_fairseq_pretrain(tmp_path / "pt.pt", cfg_form="dictconfig")
    script = (
        "import sys\n"
        "import frozenasd, frozenasd.embed.encoders, frozenasd.backbones.eat_export\n"
        "from frozenasd.backbones.eat_export import checkpoint\n"
        "import frozenasd.safe_pickle\n"
        "from frozenasd.safe_pickle import load_torch_file, to_plain\n"
        f"root = load_torch_file({str(written.path)!r})\n"
        "assert to_plain(root['cfg'])['model']['depth'] == 2\n"
        "assert root['model']['blocks.0.norm1.weight'].dtype.name == 'float16'\n"
        f"config, info = checkpoint.inspect_eat_checkpoint({str(written.path)!r})\n"
        "assert (config.depth, config.num_heads, info['layout']) == (2, 2, 'fairseq_pretrain')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'omegaconf' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_stub_pickle_matches_dictconfig_state_shape(tmp_path):
    """The stand-in cfg pickles with omegaconf's globals and DictConfig's state keys."""
    import pickletools

    written = ec.write_fairseq_pretrain(tmp_path / "pt.pt", cfg_form="dictconfig")
    with zipfile.ZipFile(written.path) as z:
        stream = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    text = io.StringIO()
    pickletools.dis(stream, out=text)
    listing = text.getvalue()
    for global_name in (
        "omegaconf.dictconfig DictConfig",
        "omegaconf.listconfig ListConfig",
        "omegaconf.nodes AnyNode",
        "omegaconf.base ContainerMetadata",
        "omegaconf.base Metadata",
        "typing Any",
        "collections defaultdict",
    ):
        assert f"'{global_name}'" in listing, global_name
    for key in ("_metadata", "_parent", "_content", "_val", "resolver_cache", "element_type"):
        assert f"'{key}'" in listing, key
    assert "'_flags_cache'" not in listing  # dropped by omegaconf's __getstate__


# 6 encoder-level keys + 2 per decoder layer + decoder.proj (2) + 12 per block; EAT-large's appendix counts
# (302 and 294) hold for tiny-large, which has its 24 blocks and 3 decoder layers
@pytest.mark.parametrize(("size", "student_keys", "ema_keys"), [("tiny", 44, 30), ("tiny-large", 302, 294)])
def test_written_files_have_the_appendix_layout(tmp_path, size, student_keys, ema_keys):
    """The helper's files carry the spec appendix's key counts, dtypes and top-level entries."""
    ec.write_fairseq_pretrain(tmp_path / "pt.pt", size=size)
    root = load_torch_file(tmp_path / "pt.pt")
    assert list(root) == [
        "args",
        "cfg",
        "model",
        "criterion",
        "optimizer_history",
        "task_state",
        "extra_state",
        "last_optimizer_state",
    ]
    model = root["model"]
    student = [k for k in model if k != "_ema"]
    assert len(student) == student_keys and list(model)[-1] == "_ema"
    assert {model[k].dtype.name for k in student} == {"float16"}
    assert len(model["_ema"]) == ema_keys and {v.dtype.name for v in model["_ema"].values()} == {"float32"}
    assert not any("decoder" in k for k in model["_ema"])
    assert student[0] == "modality_encoders.IMAGE.extra_tokens" and student[-1].startswith("blocks.")
