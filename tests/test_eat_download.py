"""Downloading EAT weights from a hub: real HTTP against a local stand-in of the Hugging Face hub."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path

import pytest

from frozenasd import backbones
from frozenasd.backbones import BACKBONES, FAIRSEQ_CHECKPOINTS, MANUAL_DOWNLOAD_HELP, get_backbone
from frozenasd.backbones.eat_export import download as hub_download
from frozenasd.errors import ModelError

pytest.importorskip("torch", reason="writing test checkpoints needs PyTorch (the export extra)")
from eat_checkpoints import write_hf  # noqa: E402 - needs torch
from hub_server import FakeHub  # noqa: E402

pytestmark = pytest.mark.torch

VARIANTS = {name: b for name, b in BACKBONES.items() if b.source == "hub"}
BASE = VARIANTS["eat-base"].repo_id
BASE_FT = VARIANTS["eat-base-ft"].repo_id


def download_weights(name: str, **kw) -> Path:
    """The weights of the registry's hub backbone ``name``, fetched and checked."""
    return hub_download.download_weights(get_backbone(name).repo_id, **kw)


@pytest.fixture(autouse=True)
def hub_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No telemetry, no token, not offline, a private HF_HOME; huggingface_hub reads some at import."""
    from huggingface_hub import constants

    for key in ("HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub():
    with FakeHub() as server:
        yield server


def _repo(tmp_path: Path, name: str, variant: str = "pretrain", fmt: str = "safetensors") -> Path:
    folder = tmp_path / "repos" / name
    write_hf(folder, variant=variant, fmt=fmt, size="tiny", table_rows=512)
    return folder


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blobs(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("models--*/blobs/*") if not p.name.endswith(".incomplete"))


# ----------------------------------------------------------------------------- variants
def test_variants_name_the_published_repos_and_fairseq_files():
    assert {v.repo_id for v in VARIANTS.values()} == {
        "worstchan/EAT-base_epoch30_pretrain",
        "worstchan/EAT-base_epoch30_finetune_AS2M",
        "worstchan/EAT-large_epoch20_pretrain",
        "worstchan/EAT-large_epoch20_finetune_AS2M",
    }
    assert set(FAIRSEQ_CHECKPOINTS) == {
        "EAT-base_epoch30_pt.pt",
        "EAT-base_epoch30_ft.pt",
        "EAT-large_epoch20_pt.pt",
        "EAT-large_epoch20_ft.pt",
    }
    for name in FAIRSEQ_CHECKPOINTS:
        assert name in MANUAL_DOWNLOAD_HELP
    assert get_backbone(" EAT-Base ").repo_id == BASE
    assert set(VARIANTS) == {"eat-base", "eat-base-ft", "eat-large", "eat-large-ft"}
    for b in VARIANTS.values():
        assert b.fairseq_file in b.install and b.hub_url == f"https://huggingface.co/{b.repo_id}"


def test_unknown_variant_lists_the_known_ones(hub: FakeHub, tmp_path: Path):
    with pytest.raises(ModelError) as err:
        backbones.download("eat-huge", cache_dir=tmp_path / "cache", endpoint=hub.endpoint)
    message = str(err.value)
    assert "eat-huge" in message
    for name in VARIANTS:
        assert name in message
    assert hub.requests == []


# ----------------------------------------------------------------------------- downloads
@pytest.mark.parametrize("redirect", [False, True], ids=["direct", "cdn-redirect"])
def test_download_safetensors_then_cache_hit(hub: FakeHub, tmp_path: Path, redirect: bool):
    hub.redirect_lfs = redirect
    source = _repo(tmp_path, "base")
    hub.add_repo(BASE, source)
    cache = tmp_path / "cache"

    path = download_weights("eat-base", cache_dir=cache, endpoint=hub.endpoint)

    assert path.name == "model.safetensors"
    assert path.is_relative_to(cache)
    assert path.read_bytes() == (source / "model.safetensors").read_bytes()
    assert json.loads((path.parent / "config.json").read_text()) == json.loads(
        (source / "config.json").read_text()
    )
    assert hub.downloads("model.safetensors") == 1
    assert hub.downloads("config.json") == 1
    # the LFS blob is stored under the sha256 the hub announced
    assert path.resolve().name == _sha256((source / "model.safetensors").read_bytes())

    again = download_weights("eat-base", cache_dir=cache, endpoint=hub.endpoint)
    assert again == path
    assert hub.downloads("model.safetensors") == 1  # no second GET of the weights
    assert hub.downloads("config.json") == 1


def test_download_bin_repo_without_safetensors(hub: FakeHub, tmp_path: Path):
    source = _repo(tmp_path, "ft", variant="finetune", fmt="bin")
    assert not (source / "model.safetensors").exists()
    hub.add_repo(BASE_FT, source)

    path = download_weights("eat-base-ft", cache_dir=tmp_path / "cache", endpoint=hub.endpoint)

    assert path.name == "pytorch_model.bin"
    assert path.read_bytes() == (source / "pytorch_model.bin").read_bytes()
    assert hub.downloads("pytorch_model.bin") == 1
    assert hub.count(path_contains="model.safetensors") == 0  # chosen from the listing, not by trying


def test_safetensors_preferred_when_both_exist(hub: FakeHub, tmp_path: Path):
    source = _repo(tmp_path, "both")
    write_hf(tmp_path / "bin", fmt="bin", size="tiny", table_rows=512)
    (source / "pytorch_model.bin").write_bytes((tmp_path / "bin" / "pytorch_model.bin").read_bytes())
    hub.add_repo(BASE, source)

    path = download_weights("eat-base", cache_dir=tmp_path / "cache", endpoint=hub.endpoint)

    assert path.name == "model.safetensors"
    assert hub.downloads("pytorch_model.bin") == 0


def test_endpoint_and_cache_come_from_the_environment_at_call_time(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    hub.add_repo(BASE, _repo(tmp_path, "base"))
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))

    path = download_weights("eat-base")

    assert path.is_relative_to(tmp_path / "home" / "hub")
    assert hub.downloads("model.safetensors") == 1


def test_revision_is_passed_to_the_hub(hub: FakeHub, tmp_path: Path):
    repo = hub.add_repo(BASE, _repo(tmp_path, "base"))

    path = download_weights(
        "eat-base", cache_dir=tmp_path / "cache", endpoint=hub.endpoint, revision=repo.commit
    )
    assert path.parent.name == repo.commit

    with pytest.raises(ModelError, match="no revision 'v9'"):
        download_weights("eat-base", cache_dir=tmp_path / "cache", endpoint=hub.endpoint, revision="v9")


def test_cached_files_are_used_when_the_hub_is_gone(tmp_path: Path):
    cache = tmp_path / "cache"
    with FakeHub() as server:
        server.add_repo(BASE, _repo(tmp_path, "base"))
        first = download_weights("eat-base", cache_dir=cache, endpoint=server.endpoint)
        endpoint = server.endpoint
    assert download_weights("eat-base", cache_dir=cache, endpoint=endpoint) == first


# ----------------------------------------------------------------------------- failures
def test_damaged_transfer_is_detected_and_removed(hub: FakeHub, tmp_path: Path):
    """Same size, other bytes: huggingface_hub accepts it; the sha256 check does not."""
    source = _repo(tmp_path, "base")
    hub.add_repo(BASE, source)
    good = (source / "model.safetensors").read_bytes()
    hub.serve_instead(BASE, "model.safetensors", good[:-64] + bytes(64))
    cache = tmp_path / "cache"

    with pytest.raises(ModelError) as err:
        download_weights("eat-base", cache_dir=cache, endpoint=hub.endpoint)
    message = str(err.value)
    assert "model.safetensors" in message and "sha256" in message and "run the command again" in message
    assert _sha256(good) in message
    assert not any(p.name == _sha256(good) for p in _blobs(cache))
    assert not list(cache.glob("models--*/snapshots/*/model.safetensors"))

    hub.clear_faults()
    path = download_weights("eat-base", cache_dir=cache, endpoint=hub.endpoint)
    assert path.read_bytes() == good
    assert hub.downloads("model.safetensors") == 2


def test_truncated_transfer_gives_a_clear_error(hub: FakeHub, tmp_path: Path):
    source = _repo(tmp_path, "base")
    hub.add_repo(BASE, source)
    good = (source / "model.safetensors").read_bytes()
    hub.serve_instead(BASE, "model.safetensors", good[: len(good) // 2])
    cache = tmp_path / "cache"

    with pytest.raises(ModelError) as err:
        download_weights("eat-base", cache_dir=cache, endpoint=hub.endpoint)
    message = str(err.value)
    assert "model.safetensors" in message and "run the command again" in message
    assert str(len(good)) in message  # the size the hub announced
    assert not any(p.name == _sha256(good) for p in _blobs(cache))

    hub.clear_faults()
    assert download_weights("eat-base", cache_dir=cache, endpoint=hub.endpoint).read_bytes() == good


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_damaged_file_on_the_hub_fails_the_load_check_and_is_removed(hub: FakeHub, tmp_path: Path, fmt: str):
    """The hub itself holds a cut file (its sha256 matches): only loading it shows the damage."""
    source = _repo(tmp_path, fmt, fmt=fmt)
    name = "model.safetensors" if fmt == "safetensors" else "pytorch_model.bin"
    data = (source / name).read_bytes()
    (source / name).write_bytes(data[: len(data) * 2 // 3])
    hub.add_repo(BASE, source)
    cache = tmp_path / "cache"

    with pytest.raises(ModelError) as err:
        download_weights("eat-base", cache_dir=cache, endpoint=hub.endpoint)
    assert name in str(err.value) and "run the command again" in str(err.value)
    assert not list(cache.glob(f"models--*/snapshots/*/{name}"))
    assert not any(p.name == _sha256(data[: len(data) * 2 // 3]) for p in _blobs(cache))


def test_config_that_contradicts_the_weights_is_rejected(hub: FakeHub, tmp_path: Path):
    source = _repo(tmp_path, "base")
    config = json.loads((source / "config.json").read_text())
    config["depth"] = config["depth"] + 1
    (source / "config.json").write_text(json.dumps(config))
    hub.add_repo(BASE, source)

    with pytest.raises(ModelError, match="depth"):
        download_weights("eat-base", cache_dir=tmp_path / "cache", endpoint=hub.endpoint)


def test_broken_config_is_rejected_and_removed(hub: FakeHub, tmp_path: Path):
    source = _repo(tmp_path, "base")
    (source / "config.json").write_text('{"model_type": "eat", "embed_dim": ')
    hub.add_repo(BASE, source)
    cache = tmp_path / "cache"

    with pytest.raises(ModelError, match=r"config\.json.*not valid JSON"):
        download_weights("eat-base", cache_dir=cache, endpoint=hub.endpoint)
    assert not list(cache.glob("models--*/snapshots/*/config.json"))


def test_repo_without_weights_names_what_it_holds(hub: FakeHub, tmp_path: Path):
    hub.add_repo(BASE, {"config.json": b"{}", "modeling_eat.py": b"raise SystemExit"})

    with pytest.raises(ModelError) as err:
        download_weights("eat-base", cache_dir=tmp_path / "cache", endpoint=hub.endpoint)
    assert "model.safetensors" in str(err.value) and "modeling_eat.py" in str(err.value)
    assert hub.downloads("modeling_eat.py") == 0


def test_missing_repo(hub: FakeHub, tmp_path: Path):
    with pytest.raises(ModelError, match="not found"):
        download_weights("eat-large", cache_dir=tmp_path / "cache", endpoint=hub.endpoint)


def test_unreachable_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)

    started = time.monotonic()
    with pytest.raises(ModelError) as err:
        download_weights("eat-base", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert endpoint in message and "could not be reached" in message and "HF_ENDPOINT" in message
    assert time.monotonic() - started < 10  # no long retry loop


# ----------------------------------------------------------------------------- export
def test_download_and_export_records_the_weights_hash(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import onnx

    from frozenasd.embed.encoders.metadata import decode_metadata

    source = _repo(tmp_path, "base")
    hub.add_repo(BASE, source)
    monkeypatch.chdir(tmp_path)

    out = backbones.download("eat-base", cache_dir=tmp_path / "cache", endpoint=hub.endpoint)

    assert out == tmp_path / "eat-base.onnx" and out.is_file()
    assert backbones.resolve_model("eat-base") == out  # what `--model eat-base` then uses
    model = onnx.load(str(out), load_external_data=False)
    doc = decode_metadata({p.key: p.value for p in model.metadata_props})
    assert doc["model"]["source_sha256"] == _sha256((source / "model.safetensors").read_bytes())
    assert doc["model"]["source_file"] == "model.safetensors"
    assert doc["model"]["embed_dim"] == json.loads((source / "config.json").read_text())["embed_dim"]

    chosen = backbones.download(
        "eat-base", tmp_path / "out" / "x.onnx", cache_dir=tmp_path / "cache", endpoint=hub.endpoint
    )
    assert chosen == tmp_path / "out" / "x.onnx" and chosen.is_file()
    assert hub.downloads("model.safetensors") == 1
