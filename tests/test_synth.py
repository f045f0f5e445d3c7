"""Tests of the synthetic DCASE data generator: layout, names, determinism, format and physics."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, hilbert, sosfiltfilt
from sklearn.metrics import roc_auc_score

from frozenasd.data import synth
from frozenasd.errors import LayoutError

SR = 16000
NAME = re.compile(
    r"^section_(?P<section>\d{2})_(?P<domain>source|target)_(?P<split>train|test)_(?P<label>normal|anomaly)"
    r"_(?P<index>\d{4})(?P<attrs>(?:_[A-Za-z0-9]+_[A-Za-z0-9]+)+)\.wav$"
)
SIZES = dict(n_train_source=6, n_train_target=2, n_test_per_cell=3)


def parse(path: Path) -> dict:
    """Split a file name into its DCASE fields and an attribute dict (independent of the generator)."""
    match = NAME.match(path.name)
    assert match, f"bad name {path.name}"
    fields = match.groupdict()
    tokens = fields.pop("attrs").strip("_").split("_")
    fields["attrs"] = dict(zip(tokens[::2], tokens[1::2], strict=True))
    fields["index"] = int(fields["index"])
    return fields


def spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed magnitude spectrum and its frequencies."""
    return np.fft.rfftfreq(x.size, 1 / SR), np.abs(np.fft.rfft(x * np.hanning(x.size)))


def read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float64")[0]


def blade_pass_peak(x: np.ndarray, expected: float) -> tuple[float, float]:
    """Strongest line within +-10 % of ``expected`` Hz and its prominence over the window's median."""
    freqs, mag = spectrum(x)
    window = (freqs > 0.9 * expected) & (freqs < 1.1 * expected)
    k = np.argmax(mag[window])
    return freqs[window][k], mag[window][k] / np.median(mag[window])


def envelope_spectrum(x: np.ndarray, lo: float = 2000.0, hi: float = 6500.0) -> tuple[np.ndarray, np.ndarray]:
    """Spectrum of the Hilbert envelope of the band ``lo``-``hi`` Hz (classic bearing diagnosis)."""
    band = sosfiltfilt(butter(4, [lo, hi], btype="bandpass", fs=SR, output="sos"), x)
    env = np.abs(hilbert(band))
    return spectrum(env - env.mean())


def line_prominence(freqs: np.ndarray, mag: np.ndarray, f0: float, tol: float) -> float:
    """Largest magnitude within ``tol`` Hz of ``f0``, over the median of the 10-400 Hz range."""
    near = np.abs(freqs - f0) <= tol
    ref = (freqs > 10) & (freqs < 400)
    return mag[near].max() / np.median(mag[ref])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("synth")
    return root, synth.synthesize(root, seed=3, duration_s=2.0, **SIZES)


# ------------------------------------------------------------------------------------------------ layout


def test_layout_counts_and_names(dataset):
    root, written = dataset
    on_disk = sorted(root.glob("*/*/*.wav"))
    assert sorted(written) == on_disk
    assert sorted(p.name for p in root.iterdir()) == sorted(synth.MACHINES)
    info = synth.describe()
    for machine in synth.MACHINES:
        for split in ("train", "test"):
            files = sorted((root / machine / split).glob("*.wav"))
            parsed = [parse(p) for p in files]
            assert all(f["split"] == split and f["section"] == "00" for f in parsed)
            cells = {}
            for f in parsed:
                cells.setdefault((f["domain"], f["label"]), []).append(f["index"])
            if split == "train":
                expected = {("source", "normal"): 6, ("target", "normal"): 2}
            else:
                expected = {(d, lab): 3 for d in ("source", "target") for lab in ("normal", "anomaly")}
            assert {k: sorted(v) for k, v in cells.items()} == {
                k: list(range(n)) for k, n in expected.items()
            }
            for f in parsed:
                keys = list(f["attrs"])
                base = [k for k in keys if k not in ("fault", "sev")]
                assert base == list(info[machine]["attributes"][f["domain"]]), f
                for key in base:
                    assert f["attrs"][key] in info[machine]["attributes"][f["domain"]][key]
                if f["label"] == "anomaly":
                    assert keys[-2:] == ["fault", "sev"]
                    assert f["attrs"]["fault"] in info[machine]["faults"]
                    assert f["attrs"]["sev"] in {"1", "2", "3"}
                else:
                    assert "fault" not in keys and "sev" not in keys


def test_total_test_clips_with_default_cell_size_formula(tmp_path):
    written = synth.synthesize(
        tmp_path, machines=("valve",), n_train_source=1, n_train_target=1, n_test_per_cell=4, duration_s=0.1
    )
    assert len(list((tmp_path / "valve" / "test").glob("*.wav"))) == 2 * 2 * 4
    assert len(written) == 2 + 16


def test_audio_format(dataset):
    _, written = dataset
    for path in written:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (SR, 1, "PCM_16", "WAV")
        assert info.frames == 2 * SR


def test_no_clipping_and_levels_not_normalised(dataset):
    root, written = dataset
    for path in written:
        pcm, _ = sf.read(path, dtype="int16")
        assert np.abs(pcm.astype(np.int32)).max() < 32767 * 0.96
        assert np.abs(pcm).max() > 100  # not silent
    peaks_db = [20 * np.log10(np.abs(read(p)).max()) for p in (root / "fan" / "train").glob("*.wav")]
    assert np.ptp(peaks_db) > 1.0  # clips are not all scaled to one peak
    # Fans are louder when they run faster (the target domain): levels follow the physics.
    rms = {d: [] for d in ("source", "target")}
    for path in (root / "fan").glob("*/*normal*.wav"):
        rms[parse(path)["domain"]].append(np.sqrt(np.mean(read(path) ** 2)))
    assert np.mean(rms["target"]) > 1.5 * np.mean(rms["source"])


# ------------------------------------------------------------------------------------------ reproducibility


def _by_identity(paths: list[Path]) -> dict[tuple, bytes]:
    out = {}
    for p in paths:
        f = parse(p)
        out[(p.parent.parent.name, f["domain"], f["split"], f["label"], f["index"])] = p
    return out


def test_same_seed_gives_identical_bytes(tmp_path, dataset):
    _, first = dataset
    again = synth.synthesize(tmp_path, seed=3, duration_s=2.0, **SIZES)
    assert [p.name for p in again] == [p.name for p in first]
    for a, b in zip(first, again, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_other_seed_gives_other_clips(tmp_path, dataset):
    _, first = dataset
    other = synth.synthesize(tmp_path, seed=4, duration_s=2.0, **SIZES)
    a, b = _by_identity(first), _by_identity(other)
    assert a.keys() == b.keys()
    for key in a:
        x, y = read(a[key]), read(b[key])
        assert not np.array_equal(x, y), key


def test_subset_gives_identical_clips(tmp_path):
    small = synth.synthesize(
        tmp_path / "s", n_train_source=5, n_train_target=1, n_test_per_cell=2, duration_s=0.5, seed=9
    )
    large = synth.synthesize(
        tmp_path / "l", n_train_source=10, n_train_target=3, n_test_per_cell=4, duration_s=0.5, seed=9
    )
    big = _by_identity(large)
    assert len(big) == len(large) > len(small)
    for path in small:
        twin = big[next(k for k, v in _by_identity([path]).items())]
        assert twin.name == path.name
        assert twin.read_bytes() == path.read_bytes()


def test_subtle_fraction_sets_severity_only(tmp_path):
    kw = dict(machines=("fan",), n_train_source=2, n_train_target=1, n_test_per_cell=12, duration_s=0.2)
    subtle = _by_identity(synth.synthesize(tmp_path / "a", subtle_fraction=1.0, **kw))
    strong = _by_identity(synth.synthesize(tmp_path / "b", subtle_fraction=0.0, **kw))
    for key, path in subtle.items():
        f, g = parse(path), parse(strong[key])
        if f["label"] == "normal":
            assert path.read_bytes() == strong[key].read_bytes()
        else:
            assert f["attrs"]["sev"] == "1" and g["attrs"]["sev"] in {"2", "3"}
            assert f["attrs"]["fault"] == g["attrs"]["fault"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown machine 'pump'"):
        synth.synthesize(tmp_path, machines=("pump",))
    with pytest.raises(ValueError, match="subtle_fraction"):
        synth.synthesize(tmp_path, subtle_fraction=1.5)
    stale = tmp_path / "fan" / "train"
    stale.mkdir(parents=True)
    (stale / "section_00_source_train_normal_0099_speed_1_noise_A.wav").write_bytes(b"")
    with pytest.raises(LayoutError, match=str(stale)):
        synth.synthesize(tmp_path, machines=("fan",), n_train_source=1, n_train_target=0, n_test_per_cell=0)


# ------------------------------------------------------------------------------------------------- physics


def test_fan_blade_pass_frequency_follows_speed_attribute(dataset):
    root, _ = dataset
    peaks = {"source": [], "target": []}
    for path in sorted((root / "fan").glob("*/*.wav")):
        f = parse(path)
        bpf = synth.FAN_BLADES * int(f["attrs"]["speed"]) / 60
        peak, prominence = blade_pass_peak(read(path), bpf)
        assert abs(peak - bpf) <= 0.015 * bpf + 0.5, (path.name, peak, bpf)
        assert prominence > 8, path.name
        peaks[f["domain"]].append(peak)
    # Target domain: a faster fan, so every target clip has a higher blade-pass line than any source clip.
    assert min(peaks["target"]) > max(peaks["source"])


def bearing_clip(fault: str | None, speed: int = 1680, seed: int = 0, severity: int = 3) -> np.ndarray:
    spec = synth.ClipSpec(
        "bearing",
        "source",
        "test",
        "anomaly" if fault else "normal",
        0,
        (("speed", str(speed)), ("noise", "B")),
        fault,
        severity if fault else 0,
    )
    return synth.render(spec, np.random.default_rng(seed), duration_s=2.0)


def geometry_frequencies(rpm: float) -> dict[str, float]:
    g = synth.BEARING
    fr = rpm / 60
    ratio = g.ball_mm / g.pitch_mm * np.cos(np.deg2rad(g.contact_deg))
    return {"fr": fr, "bpfo": g.n_balls / 2 * fr * (1 - ratio), "bpfi": g.n_balls / 2 * fr * (1 + ratio)}


@pytest.mark.parametrize("speed", [1320, 2160])
def test_bearing_outer_race_fault_shows_bpfo_in_envelope_spectrum(speed):
    expected = geometry_frequencies(speed)["bpfo"]
    freqs, mag = envelope_spectrum(bearing_clip("outer", speed))
    search = (freqs > 10) & (freqs < 400)
    peak = freqs[search][np.argmax(mag[search])]
    # Slip puts the real line up to 1 % below the geometric one; 2 s clips resolve 0.5 Hz.
    assert expected * 0.985 - 0.5 <= peak <= expected + 0.5
    assert line_prominence(freqs, mag, expected, 0.02 * expected) > 10
    normal = envelope_spectrum(bearing_clip(None, speed))
    assert line_prominence(*normal, expected, 0.02 * expected) < 5


def test_bearing_inner_race_fault_is_modulated_at_shaft_rate():
    f = geometry_frequencies(1920)
    freqs, mag = envelope_spectrum(bearing_clip("inner", 1920, seed=1))
    assert line_prominence(freqs, mag, f["bpfi"], 0.02 * f["bpfi"]) > 10
    # Load-zone modulation: a line at the shaft rate and sidebands at BPFI +- shaft rate.
    assert line_prominence(freqs, mag, f["fr"], 1.0) > 5
    assert line_prominence(freqs, mag, f["bpfi"] - f["fr"], 0.02 * f["bpfi"]) > 5
    # and nothing at the outer-race frequency
    assert line_prominence(freqs, mag, f["bpfo"], 1.0) < 5


def test_bearing_target_domain_is_a_60_hz_factory(dataset):
    root, _ = dataset
    ratios = {"source": [], "target": []}
    for path in (root / "bearing").glob("*/*normal*.wav"):
        freqs, mag = spectrum(read(path))

        def line(f0, freqs=freqs, mag=mag):
            return mag[np.abs(freqs - f0) <= 0.5].max()

        ratios[parse(path)["domain"]].append(np.log10(line(60.0) / line(50.0)))
    assert np.mean(ratios["target"]) > 0.3  # mains hum at 60 Hz dominates 50 Hz by > 6 dB on average
    assert np.mean(ratios["source"]) < -0.3


def valve_period(x: np.ndarray) -> float:
    """Lag (s) of the strongest repetition of the high-band envelope, between 0.15 s and half the clip."""
    band = sosfiltfilt(butter(4, 1000, btype="highpass", fs=SR, output="sos"), x)
    hop = SR // 200
    env = np.sqrt(np.mean(band[: band.size // hop * hop].reshape(-1, hop) ** 2, axis=1))
    env -= env.mean()
    ac = np.correlate(env, env, mode="full")[env.size - 1 :]
    lo, hi = int(0.15 * 200), env.size // 2
    return (lo + np.argmax(ac[lo:hi])) / 200


def test_valve_transients_repeat_at_cycle_attribute(tmp_path):
    written = synth.synthesize(
        tmp_path, machines=("valve",), n_train_source=4, n_train_target=4, n_test_per_cell=0, duration_s=4.0
    )
    periods = {"source": [], "target": []}
    for path in written:
        f = parse(path)
        period = int(f["attrs"]["cycle"]) / 1000
        assert valve_period(read(path)) == pytest.approx(period, rel=0.03, abs=0.006), path.name
        periods[f["domain"]].append(period)
    assert min(periods["target"]) > max(periods["source"])  # target domain: slower cycles


def test_valve_leak_hisses_while_closed():
    attrs = (("cycle", "400"), ("noise", "A"))
    normal = synth.ClipSpec("valve", "source", "test", "normal", 0, attrs)
    leak = dataclasses.replace(normal, label="anomaly", fault="leak", severity=3)
    x, y = (synth.render(s, np.random.default_rng(5), duration_s=2.0) for s in (normal, leak))
    hp = butter(4, 3500, btype="highpass", fs=SR, output="sos")
    frames = [np.sqrt(np.mean(sosfiltfilt(hp, v).reshape(-1, 80) ** 2, axis=1)) for v in (x, y)]
    quiet = frames[0] < np.quantile(frames[0], 0.3)  # the closed phases of the normal valve
    assert np.median(frames[1][quiet]) > 2 * np.median(frames[0][quiet])


def test_fan_imbalance_raises_shaft_rate_line():
    attrs = (("speed", "1500"), ("noise", "A"))
    normal = synth.ClipSpec("fan", "source", "test", "normal", 0, attrs)
    faulty = dataclasses.replace(normal, label="anomaly", fault="imbalance", severity=3)
    mags = []
    for spec in (normal, faulty):
        freqs, mag = spectrum(synth.render(spec, np.random.default_rng(2), duration_s=2.0))
        bpf = synth.FAN_BLADES * 25.0
        mags.append((mag[np.abs(freqs - 25.0) <= 1].max(), mag[np.abs(freqs - (bpf + 25.0)) <= 1].max()))
    assert mags[1][0] > 3 * mags[0][0]  # 1x line
    assert mags[1][1] > 3 * mags[0][1]  # upper sideband of the blade-pass line


# ---------------------------------------------------------------------------------------------- difficulty


def band_feature(x: np.ndarray, nfft: int = 1024, n_bands: int = 48) -> np.ndarray:
    """Mean log power in log-spaced bands: a deliberately simple clip descriptor."""
    frames = np.lib.stride_tricks.sliding_window_view(x, nfft)[:: nfft // 2] * np.hanning(nfft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    edges = np.unique(np.geomspace(2, nfft // 2, n_bands + 1).astype(int))
    return np.log(np.add.reduceat(power, edges[:-1], axis=1) + 1e-12).mean(axis=0)


def _clip(machine, domain, split, label, index, severity=None):
    rng = synth.clip_rng(11, machine, domain, split, label, index)
    spec = synth.draw_spec(rng, machine, domain, split, label, index)
    if severity is not None:
        spec = dataclasses.replace(spec, severity=severity)
    return band_feature(synth.render(spec, rng, duration_s=2.0))


def test_strong_anomalies_separable_subtle_ones_not_trivial():
    subtle_aucs = []
    for machine in synth.MACHINES:
        train = np.array([_clip(machine, "source", "train", "normal", i) for i in range(30)])
        mu, sd = train.mean(0), train.std(0) + 1e-6

        def score(v, train=train, mu=mu, sd=sd):
            return np.min(np.linalg.norm((train - mu) / sd - (v - mu) / sd, axis=1))

        normals = [score(_clip(machine, "source", "test", "normal", i)) for i in range(15)]
        # The same anomalous clips, rendered once subtle and once strong.
        strong = [score(_clip(machine, "source", "test", "anomaly", i, 3)) for i in range(15)]
        subtle = [score(_clip(machine, "source", "test", "anomaly", i, 1)) for i in range(15)]
        y = [0] * len(normals) + [1] * len(strong)
        auc_strong = roc_auc_score(y, normals + strong)
        auc_subtle = roc_auc_score(y, normals + subtle)
        assert auc_strong > 0.7, (machine, auc_strong)
        assert auc_strong >= auc_subtle, machine
        subtle_aucs.append(auc_subtle)
    assert np.mean(subtle_aucs) < 0.9


def test_describe_matches_constants():
    info = synth.describe()
    assert tuple(info) == synth.MACHINES
    assert info["fan"]["constants"]["n_blades"] == synth.FAN_BLADES
    assert info["bearing"]["constants"]["bpfo_per_shaft_hz"] == pytest.approx(
        geometry_frequencies(60)["bpfo"]
    )


def test_fault_impacts_ring_the_housing_resonances():
    """Equally seeded normal and faulty renders differ only by the fault: here, ringing at a few kHz."""
    normal = bearing_clip(None, 1680, seed=7)
    faulty = bearing_clip("ball", 1680, seed=7)
    freqs, mag = spectrum(faulty - normal)
    band = (freqs > 2000) & (freqs < 6500)
    assert np.sum(mag[band] ** 2) > 0.9 * np.sum(mag**2)
    assert np.sqrt(np.mean((faulty - normal) ** 2)) > 0.2 * np.sqrt(np.mean(normal**2))
