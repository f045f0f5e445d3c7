"""``--executor`` and the Ray options without a cluster, and ``frozenasd embed`` with the local executor."""

from __future__ import annotations

import sys

import numpy as np

import frozenasd.embed.steps as steps_module
from frozenasd.cli import main
from frozenasd.settings import RunSettings
from frozenasd.workflows.run import run


def test_executor_ray_without_ray_says_how_to_install_it(tiny_dataset, patch_encoder, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code = main(["run", "--data", str(tiny_dataset), "--model", str(patch_encoder), "--executor", "ray"])
    assert code == 2
    assert "pip install 'frozenasd[ray]'" in capsys.readouterr().err


def test_ray_options_need_the_ray_executor(tiny_dataset, patch_encoder, capsys):
    args = [
        "fit",
        "--data",
        str(tiny_dataset),
        "--machine",
        "fan",
        "--model",
        str(patch_encoder),
        "-o",
        "x.npz",
    ]
    assert main([*args, "--workers", "2", "--ray-address", "auto"]) == 2
    assert "--ray-address, --workers: only with --executor ray" in capsys.readouterr().err


def test_embed_fills_the_cache_a_run_then_reads(tiny_dataset, patch_encoder, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    args = ["embed", "--data", str(tiny_dataset), "--model", str(patch_encoder), "--no-progress"]
    assert main([*args, "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "fan train  20 of 21 clips embedded, 1 skipped" in out
    assert "fan test   40 of 41 clips embedded, 1 skipped" in out
    loads = []
    real = steps_module.load_audio
    monkeypatch.setattr(
        steps_module, "load_audio", lambda path, *a, **k: loads.append(path) or real(path, *a, **k)
    )
    settings = RunSettings(model_path=patch_encoder, progress=False, cache_dir=cache)
    result = run(tiny_dataset, ["fan"], tmp_path / "out", settings)
    assert result.metrics["fan"]["auc"] > 0.9
    assert loads and all("9999" in str(p) for p in loads)  # only the two unusable clips are read again
    assert main([*args, "--no-cache"]) == 2
    assert "embed only fills the embedding cache" in capsys.readouterr().err
    assert np.isfinite(result.metrics["fan"]["auc"])
