"""Shared fixtures: small encoders built in the test, never downloaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from frozenasd.data.synth.dataset import normal_wave
from frozenasd.embed.encoders.patch_encoder import build_patch_encoder


@pytest.fixture(scope="session")
def patch_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ONNX encoder with the seed's interface: input (batch, 3, 128, time), output emb."""
    return build_patch_encoder(tmp_path_factory.mktemp("model") / "encoder.onnx", embed_dim=24, seed=3)


def synthetic_clips(n: int = 4, seconds: float = 2.0, rate: int = 16000) -> list[np.ndarray]:
    """Normal synthetic machine sounds (fan and valve), rendered in memory."""
    return [
        normal_wave(("fan", "valve")[i % 2], i, seed=7, split="test", duration_s=seconds, sample_rate=rate)
        for i in range(n)
    ]


def clip_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b``."""
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _machine_sound(rng: np.random.Generator, anomalous: bool, seconds: float = 1.0) -> np.ndarray:
    """A hum with harmonics in noise; an anomaly adds a strong high whine and a rattle."""
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 100.0 * (1 + 0.02 * rng.standard_normal())
    x = sum(
        a * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
        for k, a in [(1, 0.3), (2, 0.2), (3, 0.1)]
    )
    x = x + 0.02 * rng.standard_normal(t.size)
    if anomalous:
        x = (
            x
            + 0.2 * np.sin(2 * np.pi * 3100 * t)
            + 0.1 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 7 * t) > 0)
        )
    return (0.5 * x).astype(np.float32)


def write_tiny_dataset(
    root: Path, machine: str = "fan", n_train: int = 20, n_test: int = 10, seed: int = 0
) -> Path:
    """A DCASE-layout dataset of 1 s clips with clearly anomalous test clips, plus two broken files."""
    rng = np.random.default_rng(seed)
    train, test = root / machine / "train", root / machine / "test"
    train.mkdir(parents=True)
    test.mkdir(parents=True)
    for i in range(n_train):
        domain = "target" if i < 2 else "source"
        sf.write(
            train / f"section_00_{domain}_train_normal_{i:04d}_speed_{i % 3}.wav",
            _machine_sound(rng, False),
            16000,
        )
    for domain in ("source", "target"):
        for label in ("normal", "anomaly"):
            for i in range(n_test):
                name = f"section_00_{domain}_test_{label}_{i:04d}_noAttribute.wav"
                sf.write(test / name, _machine_sound(rng, label == "anomaly"), 16000)
    (test / "section_00_source_test_normal_9999_noAttribute.wav").write_bytes(b"RIFF broken")
    sf.write(train / "section_00_source_train_normal_9999_noAttribute.wav", np.zeros(200, np.float32), 16000)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/fan/{train,test}``: 20 + 1 too-short training clips, 40 + 1 unreadable test clips."""
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "dataset")


@pytest.fixture(scope="module", autouse=True)
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Module-scoped fixtures (set up before any test's own) cache in a fresh folder too, never in $HOME."""
    folder = tmp_path_factory.mktemp("module_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FROZENASD_CACHE", str(folder))
        yield folder


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and the processes it starts) caches embeddings in a fresh folder, never in $HOME."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("FROZENASD_CACHE", str(folder))
    return folder


@pytest.fixture(scope="session")
def logmel_fan_fitted(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fan.npz``: the log-mel view with a Mahalanobis detector, fitted on the tiny fan's training clips
    (read only: the watch tests share it)."""
    from frozenasd import ScoringModel

    path = tmp_path_factory.mktemp("fitted") / "fan.npz"
    model = ScoringModel.fit(tiny_dataset / "fan" / "train", "logmel", detector="mahalanobis", machine="fan")
    model.save(path)
    return path
