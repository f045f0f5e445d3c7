"""Synthetic machine sounds in the DCASE Task 2 layout, for the offline demo and the tests.

Three machine types are modelled from simple physics, each heard through a microphone in a factory:

- ``fan``: a rotor with ``FAN_BLADES`` blades; tonal blade-pass noise plus broadband turbulence.
  Faults: ``imbalance``, ``blade`` (one damaged blade), ``clog`` (throttled flow, rotating stall).
- ``bearing``: a rolling-element bearing of geometry ``BEARING``; shaft harmonics and rolling noise.
  Faults: ``outer`` / ``inner`` race and ``ball`` defects, i.e. impulse trains at the defect frequencies
  that ring the housing resonances.
- ``valve``: a solenoid valve cycling open/closed; clicks at each transition, flow noise while open.
  Faults: ``leak`` (hiss while closed), ``clog`` (weak, slow flow), ``sticky`` (irregular timing).

File names follow the 2021+ convention with attributes, e.g.
``section_00_source_train_normal_0000_speed_1200_noise_A.wav`` and
``section_00_target_test_anomaly_0003_speed_1900_noise_B_fault_blade_sev_2.wav``.
The ``noise`` attribute names the factory background (:data:`BACKGROUNDS`). Anomalies carry
``fault_<kind>_sev_<1|2|3>`` (1 subtle, 2 medium, 3 strong). The target domain is a shifted operating
condition: faster fans, a different (louder, 60 Hz) factory for the bearing, slower valve cycles.

Every clip is generated from its own random stream, derived from ``(seed, machine, domain, split, label,
index)``, so a smaller data set holds exactly the same clips as the first ones of a larger one. Within a
clip all scalar parameters are drawn before any fault-specific choice, so a normal and an anomalous
:class:`ClipSpec` rendered with equally seeded generators differ only by the fault.

The package is split by concern: ``_dsp`` (signal building blocks and the factory background), ``fan``,
``bearing`` and ``valve`` (each machine's physical model, fault severities and attribute ranges) and
``dataset`` (clip identity, random streams, rendering and the data set on disk).
"""

from __future__ import annotations

from frozenasd.data.synth._dsp import BACKGROUNDS, Background
from frozenasd.data.synth._model import ClipSpec
from frozenasd.data.synth.bearing import BEARING, BearingGeometry
from frozenasd.data.synth.dataset import (
    MACHINES,
    SEVERITY_NAMES,
    clip_rng,
    describe,
    draw_spec,
    render,
    synthesize,
)
from frozenasd.data.synth.fan import FAN_BLADES

__all__ = [
    "BACKGROUNDS",
    "BEARING",
    "FAN_BLADES",
    "MACHINES",
    "SEVERITY_NAMES",
    "Background",
    "BearingGeometry",
    "ClipSpec",
    "clip_rng",
    "describe",
    "draw_spec",
    "render",
    "synthesize",
]
