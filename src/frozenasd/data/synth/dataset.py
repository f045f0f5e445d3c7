"""Clip identity, random streams, rendering and writing of the synthetic DCASE-layout data set."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from frozenasd.data.dcase import DOMAINS
from frozenasd.data.synth import bearing, fan, valve
from frozenasd.data.synth._dsp import _background, _db
from frozenasd.data.synth._model import ClipSpec
from frozenasd.errors import LayoutError

MACHINES = ("fan", "bearing", "valve")
SEVERITY_NAMES = {1: "subtle", 2: "medium", 3: "strong"}

_MODELS = {"fan": fan.MODEL, "bearing": bearing.MODEL, "valve": valve.MODEL}
_SPLITS = ("train", "test")
_LABELS = ("normal", "anomaly")
_PEAK_LIMIT = 0.95  # safety ceiling; the output gains of the models keep clips well under it


def _check_identity(machine: str, domain: str, split: str, label: str) -> None:
    for name, value, allowed in (
        ("machine", machine, MACHINES),
        ("domain", domain, DOMAINS),
        ("split", split, _SPLITS),
        ("label", label, _LABELS),
    ):
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")


def clip_rng(seed: int, machine: str, domain: str, split: str, label: str, index: int) -> np.random.Generator:
    """The random stream of one clip, independent of every other clip and of the data-set size."""
    _check_identity(machine, domain, split, label)
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got {seed} and {index}")
    key = [seed, zlib.crc32(machine.encode()), DOMAINS.index(domain), _SPLITS.index(split)]
    return np.random.default_rng(np.random.SeedSequence(key + [_LABELS.index(label), index]))


def draw_spec(
    rng: np.random.Generator,
    machine: str,
    domain: str,
    split: str,
    label: str,
    index: int,
    subtle_fraction: float = 0.4,
) -> ClipSpec:
    """Draw a clip's operating attributes (and fault kind and severity for an anomaly) from ``rng``.

    A share ``subtle_fraction`` of anomalies is subtle; the rest is split evenly between medium and strong.
    """
    _check_identity(machine, domain, split, label)
    model = _MODELS[machine]
    attributes = tuple(
        (key, values[rng.integers(len(values))]) for key, values in model.attributes[domain].items()
    )
    if label == "normal":
        return ClipSpec(machine, domain, split, label, index, attributes)
    fault = model.faults[rng.integers(len(model.faults))]
    u = rng.random()
    severity = 1 if u < subtle_fraction else 2 if u < (1.0 + subtle_fraction) / 2 else 3
    return ClipSpec(machine, domain, split, label, index, attributes, fault, severity)


def render(
    spec: ClipSpec, rng: np.random.Generator, *, duration_s: float = 10.0, sample_rate: int = 16000
) -> np.ndarray:
    """The clip's waveform (float64, |x| < 1): machine plus factory background, at a realistic level.

    Levels are not normalised per clip: loudness follows speed, fault and background; a small random
    microphone gain (+-1.5 dB) is added. Only a clip that would exceed the safety ceiling is scaled down.
    """
    if spec.machine not in _MODELS:
        raise ValueError(f"unknown machine {spec.machine!r}; supported: {', '.join(MACHINES)}")
    if spec.fault is not None and spec.fault not in _MODELS[spec.machine].faults:
        raise ValueError(f"unknown fault {spec.fault!r} for machine {spec.machine!r}")
    n = int(round(duration_s * sample_rate))
    model = _MODELS[spec.machine]
    # Draw order: microphone gain, background, machine (whose fault-specific draws come last).
    mic_gain = _db(rng.uniform(-1.5, 1.5))
    background = _background(rng, spec.attr("noise"), n, sample_rate)
    machine = model.render(rng, spec, n, sample_rate)
    x = model.gain * mic_gain * (machine + background).astype(np.float64)
    peak = float(np.max(np.abs(x))) if n else 0.0
    if peak > _PEAK_LIMIT:
        x *= _PEAK_LIMIT / peak
    return x


def normal_wave(
    machine: str,
    index: int,
    *,
    seed: int = 0,
    split: str = "train",
    duration_s: float = 10.0,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Normal source-domain clip ``index`` of ``machine`` rendered in memory (float32), no file written."""
    rng = clip_rng(seed, machine, "source", split, "normal", index)
    spec = draw_spec(rng, machine, "source", split, "normal", index)
    return render(spec, rng, duration_s=duration_s, sample_rate=sample_rate).astype(np.float32)


def _plan(
    machine: str, seed: int, n_train_source: int, n_train_target: int, n_test_per_cell: int, subtle: float
) -> Iterable[tuple[ClipSpec, np.random.Generator]]:
    cells = [("source", "train", "normal", n_train_source), ("target", "train", "normal", n_train_target)]
    cells += [(d, "test", lab, n_test_per_cell) for d in DOMAINS for lab in _LABELS]
    for domain, split, label, count in cells:
        for index in range(count):
            rng = clip_rng(seed, machine, domain, split, label, index)
            yield draw_spec(rng, machine, domain, split, label, index, subtle), rng


def _write_wav(path: Path, x: np.ndarray, sample_rate: int) -> None:
    pcm = np.round(x * 32767.0).astype(np.int16)  # quantise here, not in libsndfile: exact and stable
    sf.write(path, pcm, sample_rate, subtype="PCM_16", format="WAV")


def synthesize(
    out_dir: str | os.PathLike[str],
    machines: Iterable[str] = MACHINES,
    *,
    seed: int = 0,
    n_train_source: int = 990,
    n_train_target: int = 10,
    n_test_per_cell: int = 50,
    duration_s: float = 10.0,
    sample_rate: int = 16000,
    subtle_fraction: float = 0.4,
    progress: bool = False,
) -> list[Path]:
    """Write a synthetic DCASE-layout data set and return the paths written, in generation order.

    Per machine: ``train/`` holds ``n_train_source`` source and ``n_train_target`` target normal clips;
    ``test/`` holds ``n_test_per_cell`` clips of each (source|target) x (normal|anomaly) cell. Existing
    files of the same name are overwritten; any other audio file in those folders raises LayoutError.
    """
    machines = tuple(machines)
    for machine in machines:
        if machine not in _MODELS:
            raise ValueError(f"unknown machine {machine!r}; supported: {', '.join(MACHINES)}")
    counts = {"n_train_source": n_train_source, "n_train_target": n_train_target}
    counts["n_test_per_cell"] = n_test_per_cell
    for name, value in counts.items():
        if not 0 <= value <= 9999:
            raise ValueError(f"{name} must be between 0 and 9999, got {value}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if not duration_s > 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if sample_rate < 16000:
        raise ValueError(
            f"sample_rate must be at least 16000 Hz (resonances reach 5.5 kHz), got {sample_rate}"
        )
    if not 0.0 <= subtle_fraction <= 1.0:
        raise ValueError(f"subtle_fraction must be in [0, 1], got {subtle_fraction}")

    root = Path(out_dir).expanduser()
    plans = {
        m: list(_plan(m, seed, n_train_source, n_train_target, n_test_per_cell, subtle_fraction))
        for m in machines
    }
    for machine, plan in plans.items():
        planned = {spec.filename for spec, _ in plan}
        for split in _SPLITS:
            folder = root / machine / split
            stale = (
                sorted(p.name for p in folder.glob("*.wav") if p.name not in planned)
                if folder.is_dir()
                else []
            )
            if stale:
                raise LayoutError(
                    f"{folder}: holds {len(stale)} audio file(s) this data set would not write "
                    f"(e.g. {stale[0]}); use an empty folder"
                )
        for split in _SPLITS:
            (root / machine / split).mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    total = sum(len(p) for p in plans.values())
    with tqdm(total=total, disable=not progress, desc="synthesize", unit="clip") as bar:
        for machine, plan in plans.items():
            for spec, rng in plan:
                path = root / machine / spec.split / spec.filename
                _write_wav(
                    path, render(spec, rng, duration_s=duration_s, sample_rate=sample_rate), sample_rate
                )
                written.append(path)
                bar.update()
    return written


def describe() -> dict[str, dict[str, object]]:
    """What each synthetic machine is: summary, fault kinds, attribute values per domain, key constants."""
    return {
        name: {
            "summary": model.summary,
            "faults": list(model.faults),
            "severities": dict(SEVERITY_NAMES),
            "attributes": {
                d: {k: list(v) for k, v in attrs.items()} for d, attrs in model.attributes.items()
            },
            "constants": dict(model.constants),
        }
        for name, model in _MODELS.items()
    }
