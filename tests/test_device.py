"""--device: which ONNX Runtime provider an encoder asks for, the fallback to the CPU, and the records."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest

from frozenasd.cli import build_parser, main
from frozenasd.embed.encoders import device as device_module
from frozenasd.embed.encoders.device import CPU, CUDA, open_session, providers_for
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.errors import SettingsError
from frozenasd.outputs.names import RUN_JSON, machine_dir_name
from frozenasd.scoring.model import ScoringModel
from frozenasd.settings import RunSettings


class FakeSession:
    """Stands for an InferenceSession: records the providers asked for, runs on ``runs_on``."""

    asked: list[list[str]] = []
    runs_on = CPU

    def __init__(self, path, options=None, providers=None) -> None:
        FakeSession.asked.append(list(providers))
        self._providers = [FakeSession.runs_on, CPU] if FakeSession.runs_on != CPU else [CPU]

    def get_providers(self) -> list[str]:
        return self._providers


@pytest.fixture
def gpu_build(monkeypatch):
    """An onnxruntime that offers CUDA (as onnxruntime-gpu does), with fake sessions."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    FakeSession.asked = []
    FakeSession.runs_on = CPU
    device_module._told.clear()
    return FakeSession


def test_cpu_asks_for_the_cpu_only(gpu_build):
    session, used = open_session("m.onnx", None, "cpu")
    assert gpu_build.asked == [[CPU]] and used == CPU


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_cuda_is_used_when_the_gpu_build_finds_a_gpu(gpu_build, device, capsys):
    gpu_build.runs_on = CUDA
    _, used = open_session("m.onnx", None, device)
    assert gpu_build.asked == [[CUDA, CPU]] and used == CUDA
    assert capsys.readouterr().err == ""


def test_gpu_build_without_a_usable_gpu_falls_back(gpu_build, capsys):
    gpu_build.runs_on = CPU  # ONNX Runtime could not start CUDA
    assert open_session("m.onnx", None, "auto")[1] == CPU
    assert capsys.readouterr().err == ""  # auto: silently
    assert open_session("m.onnx", None, "cuda")[1] == CPU
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "running on the CPU" in err and "could not start CUDA" in err
    open_session("m.onnx", None, "cuda")
    assert capsys.readouterr().err == ""  # told once, not per session


def test_hidden_gpus_are_not_asked_for(gpu_build, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    providers, reason = providers_for("cuda")
    assert providers == [CPU] and "CUDA_VISIBLE_DEVICES" in reason


def test_cpu_only_onnxruntime_says_to_install_the_gpu_extra(monkeypatch, capsys):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["AzureExecutionProvider", CPU])
    device_module._told.clear()
    providers, reason = providers_for("auto")
    assert providers == [CPU] and "onnxruntime-gpu" in reason and "frozenasd[gpu]" in reason
    warned: list[str] = []
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    FakeSession.runs_on = CPU
    assert open_session("m.onnx", None, "cuda", warn=warned.append)[1] == CPU
    assert len(warned) == 1 and "onnxruntime-gpu" in warned[0]


def test_unknown_devices_are_refused(patch_encoder):
    with pytest.raises(SettingsError, match="cpu, cuda, auto"):
        RunSettings(model_path=patch_encoder, device="gpu")
    with pytest.raises(ValueError, match="device"):
        ONNXFeatureExtractor(patch_encoder, device="tpu").fit()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["score", "x.wav", "--fitted", "f.npz", "--device", "gpu"])


@pytest.mark.parametrize("command", ["run", "fit", "score", "demo"])
def test_every_embedding_command_takes_device(command):
    required = {
        "run": ["--data", "d"],
        "fit": ["--data", "d", "--out", "f.npz"],
        "score": ["x.wav", "--fitted", "f.npz"],
        "demo": [],
    }[command]
    args = build_parser().parse_args([command, *required])
    assert args.device == "auto"
    assert build_parser().parse_args([command, *required, "--device", "cuda"]).device == "cuda"


def test_the_provider_used_is_recorded(tiny_dataset, patch_encoder, tmp_path):
    """run.json's views and a fitted file's info name the provider the encoder ran on."""
    out = tmp_path / "results"
    code = main(
        ["run", "--data", str(tiny_dataset), "--model", str(patch_encoder), "--device", "cpu",
         "--out", str(out), "--no-progress", "--no-cache"]
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / machine_dir_name("fan") / RUN_JSON).read_text())
    assert [v["provider"] for v in record["views"]] == [CPU]
    assert record["settings"]["device"] == "cpu"
    model = ScoringModel.fit(sorted((tiny_dataset / "fan" / "train").glob("*normal*.wav"))[:12],
                             patch_encoder, detector="mahalanobis", device="cpu")  # fmt: skip
    assert model.info["providers"] == [CPU]
    saved = model.save(tmp_path / "fan.npz")
    assert saved["providers"] == [CPU]


def test_embeddings_from_a_gpu_are_cached_apart_from_the_cpus(tmp_path):
    from types import SimpleNamespace

    from frozenasd.embed import open_cache

    def extractor(provider):
        facts = {"frontend_": {"name": "logmel"}, "output_name_": "emb", "pooling_": "mean"}
        path = tmp_path / "model.onnx"
        path.write_bytes(b"the same model file")
        return SimpleNamespace(
            model_path=path, normalise=None, target_frames=None, provider_=provider, **facts
        )

    settings = SimpleNamespace(cache_dir=tmp_path / "cache")
    cpu, gpu, again = (open_cache(settings, extractor(p)) for p in (CPU, CUDA, CPU))
    assert cpu.folder == again.folder and gpu.folder != cpu.folder
