"""Axial fan: blade-pass tones and turbulence; faults ``imbalance``, ``blade`` and ``clog``."""

from __future__ import annotations

import numpy as np

from frozenasd.data.synth._dsp import _TWO_PI, _band_shape, _frac, _harmonics, _shaft_turns, _shaped_noise
from frozenasd.data.synth._model import ClipSpec, MachineModel

FAN_BLADES = 7
"""Number of fan blades: the blade-pass frequency is ``FAN_BLADES * rpm / 60``."""

# Fault magnitude per severity (1 subtle, 2 medium, 3 strong); the meaning is given per fault.
_FAN_SEVERITY = {
    "imbalance": (0.08, 0.2, 0.45),  # extra depth of the once-per-turn modulation (and 1x tone)
    "blade": (0.08, 0.4, 1.0),  # relative pressure-pulse change of the one damaged blade
    "clog": (0.06, 0.25, 0.5),  # fraction of the flow lost to the obstruction
}


def _render_fan(rng: np.random.Generator, spec: ClipSpec, n: int, sr: int) -> np.ndarray:
    """Axial fan at ``speed`` rpm: blade-pass tone at ``FAN_BLADES * rpm/60`` with harmonics, shaft-rate
    line from residual imbalance, turbulence whose level and centre frequency grow with speed.
    """
    rpm = float(spec.attr("speed"))
    turns = _shaft_turns(rng, n, sr, rpm / 60.0, wander=0.003)
    harmonics = np.array([1.0, 0.55, 0.32, 0.2, 0.12]) * rng.lognormal(0.0, 0.2, 5)  # unit-to-unit spread
    harm_phase = rng.uniform(0, _TWO_PI, 5)
    residual_1x = 0.02 * rng.lognormal(0.0, 0.3)  # no rotor is perfectly balanced
    residual_am = 0.03 * rng.lognormal(0.0, 0.3)
    am_phase, stall_phase = rng.uniform(0, _TWO_PI, 2)
    bump_turn = rng.random()  # angular position of the damaged blade
    turb_level = 0.35 * rng.lognormal(0.0, 0.1)
    stall_ratio = rng.uniform(0.35, 0.55)  # rotating-stall cells turn slower than the rotor
    s = _FAN_SEVERITY[spec.fault][spec.severity - 1] if spec.fault else 0.0
    imbalance = s if spec.fault == "imbalance" else 0.0
    blade = s if spec.fault == "blade" else 0.0
    clog = s if spec.fault == "clog" else 0.0

    # A throttled flow unloads the fundamental and spreads energy into higher blade-pass harmonics.
    harmonics[0] *= 1.0 - 0.8 * clog
    harmonics[1:] *= 1.0 + 1.0 * clog
    harmonics[2:] *= 1.0 + 0.8 * blade  # a bent blade tip sharpens its pressure pulse
    bpf_cycle = _frac(FAN_BLADES * turns)
    shaft_cycle = _frac(turns)
    once_per_turn = np.sin(np.float32(_TWO_PI) * shaft_cycle + np.float32(am_phase))
    tonal = _harmonics(bpf_cycle, 0.25 * harmonics, harm_phase)
    tonal *= 1.0 + np.float32(residual_am + imbalance) * once_per_turn
    shaft = np.float32(residual_1x + 0.3 * imbalance) * once_per_turn

    fc = 500.0 * (rpm / 1500.0) * (1.0 - 0.8 * clog)  # turbulence peak moves down as the flow drops
    turb = _shaped_noise(rng, n, _band_shape(n, sr, fc / 2.5, fc * 6.0, 1.0))
    chop = _harmonics(bpf_cycle, [0.15], harm_phase[:1])  # the blades chop the flow
    turb *= np.float32(turb_level * (1.0 - 0.8 * clog)) * (1.0 + chop)
    out = tonal + shaft + turb
    if blade:
        # The damaged blade passes once per turn: its pulse (a narrow bump of shaft angle) is stronger and
        # sheds more vortex noise, which puts shaft-rate sidebands around every blade-pass harmonic.
        bump = np.exp(np.float32(16.0) * (np.cos(np.float32(_TWO_PI) * (shaft_cycle - bump_turn)) - 1.0))
        out += np.float32(1.5 * blade) * bump * tonal + np.float32(1.0 * blade) * bump * turb
    if clog:
        # Rotating stall: cells of separated flow turn at a fraction of the rotor speed.
        stall = np.sin(np.float32(_TWO_PI) * _frac(stall_ratio * turns) + np.float32(stall_phase))
        out += np.float32(1.2 * clog) * stall * turb + np.float32(0.25 * clog) * stall
    return np.float32((rpm / 1500.0) ** 2) * out


MODEL = MachineModel(
    _render_fan,
    ("imbalance", "blade", "clog"),
    {
        "source": {"speed": ("1100", "1200", "1300", "1400", "1500"), "noise": ("A", "B")},
        "target": {"speed": ("1800", "1900", "2000", "2100", "2200"), "noise": ("A", "B")},
    },
    0.07,
    f"{FAN_BLADES}-blade axial fan; target domain runs faster",
    {"n_blades": FAN_BLADES, "blade_pass_hz": f"{FAN_BLADES} * speed / 60"},
)
