"""Solenoid valve: transition clicks and flow noise while open; faults ``leak``, ``clog``, ``sticky``."""

from __future__ import annotations

import numpy as np

from frozenasd.data.synth._dsp import (
    _band_shape,
    _frac,
    _harmonics,
    _impulses,
    _ring,
    _shaped_noise,
    _smooth,
    _tone_turns,
)
from frozenasd.data.synth._model import ClipSpec, MachineModel

_VALVE_SEVERITY = {
    "leak": (0.005, 0.012, 0.04),  # RMS of the hiss through the closed seat (flow noise is ~0.3)
    "clog": (0.15, 0.35, 0.6),  # fraction of the flow lost
    "sticky": (0.03, 0.1, 0.3),  # mean extra delay of each movement, as a fraction of the cycle
}


def _render_valve(rng: np.random.Generator, spec: ClipSpec, n: int, sr: int) -> np.ndarray:
    """Solenoid valve cycling every ``cycle`` ms: a click when it opens and a harder one when it shuts,
    band-limited flow noise and a faint solenoid buzz while open.
    """
    period = float(spec.attr("cycle")) / 1000.0
    duty = rng.uniform(0.38, 0.45)  # fraction of the cycle the valve stays open
    n_cycles = int(n / sr / period) + 2
    starts = rng.uniform(-period, 0.0) + period * np.arange(n_cycles)
    t_open = starts + rng.normal(0.0, 0.001, n_cycles)
    t_close = starts + duty * period + rng.normal(0.0, 0.001, n_cycles)
    click_freqs = np.array([1800.0, 4300.0, 220.0]) * rng.uniform(0.95, 1.05, 3)
    open_amp = 1.0 * rng.lognormal(0.0, 0.1, n_cycles)
    close_amp = 1.4 * rng.lognormal(0.0, 0.1, n_cycles)
    flow_level = 0.3 * rng.lognormal(0.0, 0.1)
    buzz_level = 0.01 * rng.lognormal(0.0, 0.3)
    delays = rng.exponential(1.0, (2, n_cycles))  # only used by a sticky valve
    bounce = rng.random(n_cycles)
    bounce_delay = rng.uniform(0.01, 0.03, n_cycles)
    s = _VALVE_SEVERITY[spec.fault][spec.severity - 1] if spec.fault else 0.0
    clog = s if spec.fault == "clog" else 0.0

    if spec.fault == "sticky":
        # The plunger hesitates before moving: random extra delays, and it sometimes bounces on its seat.
        t_open = t_open + s * period * delays[0]
        t_close = np.maximum(t_close + s * period * delays[1], t_open + 0.02)
        t_open[1:] = np.maximum(t_open[1:], t_close[:-1] + 0.02)
        t_close = np.maximum(t_close, t_open + 0.02)
    i_open = np.round(t_open * sr).astype(np.int64)
    i_close = np.round(t_close * sr).astype(np.int64)
    open_amp = open_amp * (1.0 - 0.6 * clog)  # a clogged valve opens against debris: softer click
    clicks = _impulses(n, i_open, open_amp) + _impulses(n, i_close, close_amp)
    if spec.fault == "sticky":
        hit = bounce < 3.0 * s
        clicks += _impulses(n, i_close[hit] + np.round(bounce_delay[hit] * sr).astype(np.int64), 0.5)
    ring = (
        _ring(clicks, sr, click_freqs[0], 0.004)
        + 0.6 * _ring(clicks, sr, click_freqs[1], 0.002)
        + 0.8 * _ring(clicks, sr, click_freqs[2], 0.012)
    )

    command = np.zeros(n + 1)
    np.add.at(command, np.clip(i_open, 0, n), 1.0)
    np.add.at(command, np.clip(i_close, 0, n), -1.0)
    gate_step = np.clip(np.cumsum(command)[:n], 0.0, 1.0)
    gate = _smooth(gate_step, sr, 0.005 + 0.12 * clog).astype(np.float32)  # clogged: flow builds up slowly

    flow = _shaped_noise(rng, n, _band_shape(n, sr, 700.0, 6000.0, 1.5)) * np.float32(
        flow_level * (1 - 0.7 * clog)
    )
    buzz = _harmonics(_frac(_tone_turns(n, sr, 100.0)), [buzz_level, 0.5 * buzz_level], [0.0, 1.0])
    inside = flow + buzz
    if clog:  # the throttled jet whistles
        inside += np.float32(0.3 * clog) * _shaped_noise(rng, n, _band_shape(n, sr, 2600.0, 3400.0, 3.0))
    out = (0.5 * ring).astype(np.float32) + inside * gate
    if spec.fault == "leak":  # gas hisses through the closed seat
        out += np.float32(s) * _shaped_noise(rng, n, _band_shape(n, sr, 3000.0, 7500.0, 2.0)) * (1 - gate)
    return out


MODEL = MachineModel(
    _render_valve,
    ("leak", "clog", "sticky"),
    {
        "source": {"cycle": ("300", "400", "500"), "noise": ("A", "B")},
        "target": {"cycle": ("700", "800", "900"), "noise": ("A", "B")},
    },
    0.16,
    "solenoid valve; target domain cycles more slowly",
    {"cycle": "open/close period in ms"},
)
