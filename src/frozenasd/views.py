"""Views of a clip fused into one score: the branches a fusion fits, and the named presets.

A branch is one view of a clip (an encoder or ``logmel``, a pooling, a waveform normalisation) and
the detector fitted on it. A fusion (``frozenasd.detectors.fusion``) z-normalises each branch's
scores by its own cross-fitted training scores and combines them without labels. On the command
line a branch is written ``MODEL:POOLING:DETECTOR`` with an optional ``:NORMALISE``
(``logmel:max:mahalanobis``, ``aisfx:mean:mahalanobis:rms``) and branches are joined by ``+``.
"""

from __future__ import annotations

from dataclasses import dataclass

from frozenasd.detectors.fusion import RULES
from frozenasd.embed.encoders.pooling import NORMALISATIONS, POOLINGS

FUSION_RULES = RULES  # how a fusion may combine its branches' z-scores


@dataclass(frozen=True)
class Branch:
    """One view (model, pooling, normalise) and the detector fitted on it."""

    model: str
    pooling: str = "mean"
    detector: str = "mahalanobis"
    normalise: str = "none"

    @property
    def view(self) -> tuple[str, str, str]:
        """What the embedding depends on: branches with the same view share its embeddings."""
        return (self.model, self.pooling, self.normalise)

    def spec(self) -> str:
        """The branch as written on the command line."""
        tail = "" if self.normalise == "none" else f":{self.normalise}"
        return f"{self.model}:{self.pooling}:{self.detector}{tail}"


@dataclass(frozen=True)
class Preset:
    """A named fusion: its branches, its rule and what it is for."""

    branches: tuple[Branch, ...]
    rule: str
    summary: str


PRESETS: dict[str, Preset] = {
    "robust": Preset(
        (Branch("logmel", "max", "mahalanobis"), Branch("aisfx", "mean", "mahalanobis", "peak")),
        "max",
        "log-mel bands max-pooled over time (short clicks and impacts) + aiSFX's mean embedding of "
        "peak-normalised clips (the sound's character), each with Mahalanobis; the larger z-score",
    ),
    "spectral": Preset(
        (Branch("logmel", "max", "mahalanobis", "rms"), Branch("logmel", "quantiles", "mahalanobis")),
        "max",
        "no pre-trained model: log-mel bands max-pooled (RMS-normalised clips), and their median, "
        "90th percentile and maximum over time, each with Mahalanobis; the larger z-score",
    ),
    "robust-yamnet": Preset(
        (Branch("logmel", "max", "mahalanobis"), Branch("yamnet", "mean", "mahalanobis", "peak")),
        "max",
        "as robust, with YAMNet's mean embedding in place of aiSFX's",
    ),
    "robust-eat": Preset(
        (Branch("logmel", "max", "mahalanobis"), Branch("eat-base", "mean", "mahalanobis", "peak")),
        "max",
        "as robust, with EAT-base's mean patch token in place of aiSFX's (needs the EAT export)",
    ),
}


def parse_branch(text: str) -> Branch:
    """``MODEL:POOLING:DETECTOR[:NORMALISE]`` → a Branch; ValueError naming what is wrong.

    The model may itself hold colons (a path): fields are read from the right.
    """
    from frozenasd.detectors.pipeline import DETECTORS

    parts = text.strip().split(":")
    normalise = "none"
    if len(parts) >= 4 and parts[-1] in NORMALISATIONS and parts[-2] in DETECTORS:
        normalise = parts.pop()
    if len(parts) < 3 or not all(parts[-3:]):
        raise ValueError(
            f"branch {text!r}: write MODEL:POOLING:DETECTOR[:NORMALISE], e.g. logmel:max:mahalanobis"
        )
    model, pooling, detector = ":".join(parts[:-2]), parts[-2], parts[-1]
    if pooling not in POOLINGS or pooling == "frames":
        raise ValueError(f"branch {text!r}: pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
    if detector not in DETECTORS:
        raise ValueError(
            f"branch {text!r}: detector {detector!r} is not one of {', '.join(sorted(DETECTORS))}"
        )
    if getattr(DETECTORS[detector].cls, "_scales_itself", False):
        raise ValueError(f"branch {text!r}: {detector} cannot be a fusion branch (it needs one row per clip)")
    return Branch(model, pooling, detector, normalise)


def parse_fusion(text: str) -> tuple[Branch, ...]:
    """Branches joined by ``+`` → a tuple of at least one Branch."""
    pieces = [p for p in text.split("+") if p.strip()]
    if not pieces:
        raise ValueError("give at least one branch, e.g. logmel:max:mahalanobis+aisfx:mean:mahalanobis")
    return tuple(parse_branch(p) for p in pieces)


def preset(name: str) -> Preset:
    """The preset called ``name``; ValueError naming the presets for an unknown one."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


DEFAULT_PRESET = "robust"  # the best worst case over real and synthetic machines (BENCHMARKS.md)
NO_MODEL_PRESET = "spectral"  # the default's fallback when aiSFX is not installed


def default_preset() -> tuple[str, str | None]:
    """The preset ``run`` and ``fit`` use without ``--model``, and a note when it had to fall back."""
    from frozenasd.backbones import status

    aisfx = status().get("aisfx")
    if aisfx is not None and aisfx.ready:
        return DEFAULT_PRESET, None
    why = aisfx.detail if aisfx is not None else "aisfx is not a known backbone"
    return NO_MODEL_PRESET, f"using the {NO_MODEL_PRESET} preset (no pre-trained model): {why}"
