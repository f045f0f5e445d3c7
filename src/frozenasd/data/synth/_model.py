"""Types shared by the machine models and the data-set code: a clip's identity and a machine's model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClipSpec:
    """Everything a clip's file name says: identity, operating attributes and (for anomalies) the fault."""

    machine: str
    domain: str
    split: str
    label: str
    index: int
    attributes: tuple[tuple[str, str], ...]
    fault: str | None = None
    severity: int = 0

    def attr(self, key: str) -> str:
        """The value of one operating attribute."""
        return dict(self.attributes)[key]

    @property
    def filename(self) -> str:
        """The DCASE 2021+ file name of the clip."""
        parts = ["section", "00", self.domain, self.split, self.label, f"{self.index:04d}"]
        for key, value in self.attributes:
            parts += [key, value]
        if self.fault is not None:
            parts += ["fault", self.fault, "sev", str(self.severity)]
        return "_".join(parts) + ".wav"


@dataclass(frozen=True)
class MachineModel:
    """One synthetic machine: its sound (float32, at nominal level, RMS of order 0.3-1) and its metadata."""

    render: Callable[[np.random.Generator, ClipSpec, int, int], np.ndarray]
    faults: tuple[str, ...]
    attributes: dict[str, dict[str, tuple[str, ...]]]  # domain -> attribute key -> values
    gain: float  # output gain: keeps the loudest clips well below full scale
    summary: str
    constants: dict[str, object]  # key constants reported by describe()
