"""Rolling-element bearing: shaft harmonics and rolling noise; race and ball defects ring the housing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from frozenasd.data.synth._dsp import (
    _TWO_PI,
    _band_shape,
    _event_indices,
    _frac,
    _harmonics,
    _impulses,
    _ring,
    _shaft_turns,
    _shaped_noise,
)
from frozenasd.data.synth._model import ClipSpec, MachineModel


@dataclass(frozen=True)
class BearingGeometry:
    """Rolling-element bearing geometry, which fixes the defect frequencies for a shaft rate ``fr`` (Hz).

    ``n_balls``: number of rolling elements; ``ball_mm``: ball diameter d; ``pitch_mm``: pitch diameter D
    (the circle through the ball centres); ``contact_deg``: contact angle phi of the load line.
    """

    n_balls: int = 9
    ball_mm: float = 7.94
    pitch_mm: float = 39.04
    contact_deg: float = 0.0

    @property
    def _ratio(self) -> float:
        return self.ball_mm / self.pitch_mm * float(np.cos(np.deg2rad(self.contact_deg)))

    def bpfo(self, fr: float) -> float:
        """Ball-pass frequency, outer race: balls rolling over a fixed outer-race defect per second."""
        return self.n_balls / 2 * fr * (1 - self._ratio)

    def bpfi(self, fr: float) -> float:
        """Ball-pass frequency, inner race: balls rolling over a defect on the rotating inner race."""
        return self.n_balls / 2 * fr * (1 + self._ratio)

    def bsf(self, fr: float) -> float:
        """Ball spin frequency: turns of one ball per second (a ball defect strikes twice per turn)."""
        return self.pitch_mm / (2 * self.ball_mm) * fr * (1 - self._ratio**2)

    def ftf(self, fr: float) -> float:
        """Fundamental train (cage) frequency: turns of the cage, which carries the balls, per second."""
        return fr / 2 * (1 - self._ratio)


BEARING = BearingGeometry()


_BEARING_SEVERITY = {  # amplitude of each defect impact relative to the rolling noise
    "outer": (0.3, 0.8, 2.0),
    "inner": (0.4, 1.0, 2.5),
    "ball": (0.4, 1.0, 2.5),
}


def _render_bearing(rng: np.random.Generator, spec: ClipSpec, n: int, sr: int) -> np.ndarray:
    """Rolling-element bearing at ``speed`` rpm: shaft harmonics, rolling noise that excites the housing
    resonances, random micro-impacts; a defect adds impacts at its defect frequency, each ringing the
    housing (a decaying sinusoid at a few kHz).
    """
    rpm = float(spec.attr("speed"))
    speed = rpm / 1500.0
    turns = _shaft_turns(rng, n, sr, rpm / 60.0, wander=0.002)
    res1 = 3000.0 * rng.uniform(0.95, 1.05)  # housing resonances (Hz), vary from unit to unit
    res2 = 5200.0 * rng.uniform(0.95, 1.05)
    shaft_amp = np.array([0.08, 0.04, 0.02]) * rng.lognormal(0.0, 0.3, 3)
    shaft_phase = rng.uniform(0, _TWO_PI, 3)
    rolling_level = 0.25 * rng.lognormal(0.0, 0.1) * speed
    slip = rng.uniform(0.0, 0.01)  # balls skid a little: defect rates fall 0-1 % below the geometric ones
    load_turn, cage_turn = rng.random(2)
    n_micro = rng.poisson(40.0 * n / sr)  # dust and lubricant make small impacts without periodicity
    micro_idx = rng.integers(0, n, n_micro)
    micro_amp = rng.exponential(0.12, n_micro) * speed

    shaft = _harmonics(_frac(turns), shaft_amp, shaft_phase)
    rolling = np.float32(rolling_level) * _shaped_noise(rng, n, _band_shape(n, sr, 1500.0, 7000.0, 2.0))
    impacts = _impulses(n, micro_idx, micro_amp)
    if spec.fault:
        per_turn = {"outer": BEARING.bpfo(1.0), "inner": BEARING.bpfi(1.0), "ball": 2.0 * BEARING.bsf(1.0)}
        idx = _event_indices(rng, turns * per_turn[spec.fault] * (1.0 - slip), jitter=0.01)
        amp = _BEARING_SEVERITY[spec.fault][spec.severity - 1] * speed * rng.lognormal(0.0, 0.15, idx.size)
        if spec.fault == "inner":
            # The defect turns with the shaft and is struck hard only inside the load zone.
            amp *= 0.15 + 0.85 * np.maximum(0.0, np.cos(_TWO_PI * (turns[idx] - load_turn))) ** 1.5
        elif spec.fault == "ball":
            # The defective ball enters the load zone once per cage turn.
            cage = turns[idx] * BEARING.ftf(1.0) - cage_turn
            amp *= 0.2 + 0.8 * np.maximum(0.0, np.cos(_TWO_PI * cage)) ** 1.5
        impacts += _impulses(n, idx, amp)
    ringing = _ring(impacts, sr, res1, 1.2e-3) + 0.5 * _ring(impacts, sr, res2, 0.6e-3)
    return shaft + rolling + ringing.astype(np.float32)


MODEL = MachineModel(
    _render_bearing,
    ("outer", "inner", "ball"),
    {
        "source": {"speed": ("1320", "1680", "1920", "2160"), "noise": ("A", "B")},
        "target": {"speed": ("1320", "1680", "1920", "2160"), "noise": ("C",)},
    },
    0.08,
    "rolling-element bearing; target domain is a louder factory with 60 Hz mains",
    {
        "n_balls": BEARING.n_balls,
        "ball_mm": BEARING.ball_mm,
        "pitch_mm": BEARING.pitch_mm,
        "contact_deg": BEARING.contact_deg,
        "bpfo_per_shaft_hz": BEARING.bpfo(1.0),
        "bpfi_per_shaft_hz": BEARING.bpfi(1.0),
    },
)
