"""Signal building blocks shared by the machine models, and the factory background.

Waveforms are float32 (fast SIMD sin/exp); phases are kept in turns (cycles) in float64 and wrapped to
[0, 1) before the float32 trigonometry, so long clips keep full phase accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy.signal import lfilter

_TWO_PI = 2.0 * np.pi


@lru_cache(maxsize=128)
def _band_shape(n: int, sr: int, lo: float, hi: float, order: float, color: float = 0.0) -> np.ndarray:
    """Magnitude spectrum (rfft bins of an ``n``-sample signal) of a Butterworth-like band-pass from ``lo``
    to ``hi`` Hz with slopes of ``order``, tilted so that power falls as ``1/f**color`` above ``lo``.
    """
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 1e-3)
    mag = 1.0 / np.sqrt((1.0 + (lo / f) ** (2 * order)) * (1.0 + (f / hi) ** (2 * order)))
    if color:
        mag *= np.maximum(f, lo) ** (-color / 2)
    mag = mag.astype(np.float32)
    mag.flags.writeable = False
    return mag


def _shaped_noise(rng: np.random.Generator, n: int, magnitude: np.ndarray) -> np.ndarray:
    """Gaussian noise of unit RMS whose magnitude spectrum is ``magnitude`` (see :func:`_band_shape`)."""
    spec = rng.standard_normal(2 * magnitude.size, dtype=np.float32).view(np.complex64)
    x = scipy.fft.irfft(spec * magnitude, n)
    return x / np.float32(np.sqrt(np.mean(x * x, dtype=np.float64)) + 1e-12)


def _shaft_turns(rng: np.random.Generator, n: int, sr: int, f0: float, wander: float) -> np.ndarray:
    """Angle, in turns, of a rotor turning at ``f0`` Hz whose speed wanders slowly.

    ``wander`` is the relative standard deviation of the speed, re-drawn every 0.25 s and interpolated
    (on a 64-sample grid, which is far finer than any speed change).
    """
    hop = 64
    m = -(-n // hop)
    spacing = max(1, int(0.25 * sr) // hop)
    nodes = m // spacing + 2
    speed = f0 * (1.0 + np.interp(np.arange(m), np.arange(nodes) * spacing, rng.normal(0.0, wander, nodes)))
    return rng.random() + np.cumsum(np.repeat(speed, hop)[:n]) / sr


def _frac(turns: np.ndarray) -> np.ndarray:
    """Position within the current turn, in [0, 1), as float32."""
    return (turns - np.floor(turns)).astype(np.float32)


def _tone_turns(n: int, sr: int, freq: float, offset: float = 0.0) -> np.ndarray:
    """Turns of a steady oscillator at ``freq`` Hz (float64)."""
    return offset + np.arange(n) * (freq / sr)


def _harmonics(cycle: np.ndarray, amps: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """``sum_h amps[h-1] * sin(2 pi h cycle + phases[h-1])`` for a fractional cycle position (float32)."""
    w = np.float32(_TWO_PI) * cycle
    out = np.zeros_like(cycle)
    for h, (a, ph) in enumerate(zip(amps, phases, strict=True), start=1):
        out += np.float32(a) * np.sin(np.float32(h) * w + np.float32(ph))
    return out


def _event_indices(rng: np.random.Generator, turns: np.ndarray, jitter: float) -> np.ndarray:
    """Sample indices where the turn counter ``turns`` passes an integer (one event per turn).

    Each event is moved by Gaussian jitter of ``jitter`` times the mean period (slip, small timing noise).
    """
    idx = np.flatnonzero(np.diff(np.floor(turns)) > 0) + 1
    if idx.size == 0:
        return idx
    period = turns.size / max(turns[-1] - turns[0], 1e-9)
    idx = idx + np.round(rng.normal(0.0, jitter * period, idx.size)).astype(np.int64)
    return idx[(idx >= 0) & (idx < turns.size)]


def _impulses(n: int, idx: np.ndarray, amp: np.ndarray | float) -> np.ndarray:
    """A signal of length ``n`` that is zero except for impulses of amplitude ``amp`` at ``idx``."""
    x = np.zeros(n)
    keep = (idx >= 0) & (idx < n)
    np.add.at(x, idx[keep], np.broadcast_to(amp, idx.shape)[keep])
    return x


def _ring(x: np.ndarray, sr: int, freq: float, decay_s: float) -> np.ndarray:
    """Pass ``x`` through a resonance: each unit impulse becomes ``exp(-t/decay_s) sin(2 pi freq t)``."""
    r = np.exp(-1.0 / (decay_s * sr))
    w = _TWO_PI * freq / sr
    return lfilter([np.sin(w)], [1.0, -2.0 * r * np.cos(w), r * r], x)


def _smooth(x: np.ndarray, sr: int, tau_s: float) -> np.ndarray:
    """First-order low-pass with time constant ``tau_s`` (a gate's opening/closing ramp)."""
    a = np.exp(-1.0 / (tau_s * sr))
    return lfilter([1.0 - a], [1.0, -a], x)


def _db(level_db: float) -> float:
    """Amplitude factor of a level in dB."""
    return 10.0 ** (level_db / 20.0)


@dataclass(frozen=True)
class Background:
    """A factory environment heard behind the machine (levels in dB re the machine's nominal level).

    ``color``: spectral slope of the noise floor (power ~ 1/f**color: 1 pink, 2 brown);
    ``level_db``: noise-floor level; ``mains_hz``/``hum_db``: frequency and level of the distant mains hum
    (with harmonics); ``knocks_per_s``: mean rate of distant knocks (short low-frequency thuds).
    """

    color: float
    level_db: float
    mains_hz: float
    hum_db: float
    knocks_per_s: float


BACKGROUNDS = {
    "A": Background(color=1.0, level_db=-24.0, mains_hz=50.0, hum_db=-32.0, knocks_per_s=0.3),
    "B": Background(color=1.6, level_db=-19.0, mains_hz=50.0, hum_db=-28.0, knocks_per_s=1.0),
    "C": Background(color=1.2, level_db=-15.0, mains_hz=60.0, hum_db=-24.0, knocks_per_s=0.6),
}


def _background(rng: np.random.Generator, kind: str, n: int, sr: int) -> np.ndarray:
    """Factory background: coloured noise floor, distant mains hum with harmonics, distant knocks."""
    bg = BACKGROUNDS[kind]
    floor = _shaped_noise(rng, n, _band_shape(n, sr, 20.0, 7000.0, 2.0, bg.color))
    weights = np.array([1.0, 0.6, 0.4, 0.25]) * rng.lognormal(0.0, 0.3, 4)
    mains = bg.mains_hz + rng.normal(0.0, 0.02)  # the grid frequency deviates slightly
    hum = _harmonics(_frac(_tone_turns(n, sr, mains, rng.random())), weights, rng.uniform(0, _TWO_PI, 4))
    hum *= np.float32(1.0 / np.sqrt(np.sum(weights**2) / 2))  # unit RMS
    n_knocks = rng.poisson(bg.knocks_per_s * n / sr)
    knock_idx = rng.integers(0, n, n_knocks)
    knock_amp = rng.lognormal(0.0, 0.5, n_knocks)
    knock_freq = rng.uniform(150, 500)
    out = np.float32(_db(bg.level_db)) * floor + np.float32(_db(bg.hum_db)) * hum
    if n_knocks:
        out += np.float32(0.3 * _db(bg.level_db)) * _ring(
            _impulses(n, knock_idx, knock_amp), sr, knock_freq, 0.03
        )
    return out
