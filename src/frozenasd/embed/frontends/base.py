"""The frontend interface and the checks every frontend shares.

`Frontend.resolve` checks a metadata parameter dict against the frontend's definition and
`Frontend.input_layout` checks it against the model's input shape; both raise
:class:`~frozenasd.errors.ModelError` naming the file, so that a model that does not fit is refused
before any audio is read.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from frozenasd.embed.fbank import check_waveform
from frozenasd.errors import ModelError

# How a model's input holds one example (named in the model's metadata, ``input.layout``).
LAYOUT_BTF = "BTF"  # (batch, time, mel): the example as it is, no channel axis
LAYOUT_B1TF = "B1TF"  # (batch, 1, time, mel): EAT's native layout, YAMNet's patches
LAYOUT_B3FT = "B3FT"  # (batch, 3, mel, time): the mel channel replicated, the seed's EAT interface


# Frames per spectrogram chunk: a long recording's float64 intermediates stay at tens of megabytes.
FRAME_CHUNK = 4096

# A clip shorter than one analysis frame of this length is refused by every frontend.
SHORTEST_MS = 25.0


def in_frame_chunks(frames: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``compute`` (frames → one row per frame) applied ``FRAME_CHUNK`` frames at a time, stacked."""
    parts = [compute(frames[start : start + FRAME_CHUNK]) for start in range(0, len(frames), FRAME_CHUNK)]
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


def _fits(dim: Any, value: int) -> bool:
    """A model dimension fits ``value`` when it equals it or is symbolic (a name or unknown)."""
    return not isinstance(dim, int) or dim == value


def _as_waveform(waveform: np.ndarray) -> np.ndarray:
    """A finite, real, non-empty 1-D array as float32; ValueError otherwise."""
    x = check_waveform(waveform).astype(np.float32, copy=False)
    if not np.isfinite(x).all():  # float64 samples beyond float32's range
        raise ValueError("waveform contains samples too large for float32")
    return x


def _coerce_like(default: Any, value: Any) -> Any:
    """``value`` converted to the type of ``default`` when it means the same, else ``None``."""
    if isinstance(default, (bool, str)):
        return value if type(value) is type(default) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if isinstance(default, int):
        return int(value) if float(value).is_integer() else None
    return float(value)


class Frontend(ABC):
    """One model family's input definition; instances are stateless and shared through `FRONTENDS`."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: Every parameter with its default; a metadata dict may override them (and only them).
    defaults: ClassVar[Mapping[str, Any]]
    #: Parameters whose value is part of the definition: a model may only repeat the default.
    fixed: ClassVar[frozenset[str]] = frozenset()
    #: Whether the extractor's ``target_frames`` option applies to this frontend.
    accepts_target_frames: ClassVar[bool] = False
    #: Of a longer clip only the first this many seconds are embedded (None: the whole clip).
    longest_seconds: ClassVar[float | None] = None

    # ------------------------------------------------------------ parameters
    def resolve(self, given: Mapping[str, Any] | None, source: object) -> dict[str, Any]:
        """The defaults updated with ``given`` (a metadata ``frontend`` dict), checked; ModelError if not."""
        params = dict(self.defaults)
        for key, value in (given or {}).items():
            if key == "name":
                continue
            if key not in self.defaults:
                raise ModelError(
                    f"{source}: frontend {self.name!r} has no parameter {key!r}; "
                    f"its parameters are {sorted(self.defaults)}"
                )
            params[key] = self._coerce(key, value, source)
        self.check(params, source)
        return params

    def _coerce(self, key: str, value: Any, source: object) -> Any:
        default = self.defaults[key]
        coerced = _coerce_like(default, value)
        if coerced is None:
            raise ModelError(
                f"{source}: frontend {self.name!r} parameter {key!r} must be a {type(default).__name__}, "
                f"got {value!r}"
            )
        if key in self.fixed and coerced != default:
            raise ModelError(
                f"{source}: frontend {self.name!r} parameter {key!r} is {value!r}, but this frontend is "
                f"defined only for {default!r}"
            )
        return coerced

    def _require(self, condition: bool, source: object, message: str) -> None:
        if not condition:
            raise ModelError(f"{source}: frontend {self.name!r}: {message}")

    def check(self, params: dict[str, Any], source: object) -> None:
        """Check the parameter values together; ModelError naming ``source`` if they are unusable."""
        self._require(
            params["sample_rate"] > 0, source, f"sample_rate must be positive, got {params['sample_rate']}"
        )

    # ------------------------------------------------------------ model interface
    @abstractmethod
    def input_layout(
        self,
        params: dict[str, Any],
        shape: Sequence[Any],
        input_name: str,
        declared: str | None,
        source: object,
    ) -> str:
        """The layout of a model input of ``shape`` fed by this frontend; ModelError if it does not fit."""

    @abstractmethod
    def features(
        self, waveform: np.ndarray, params: dict[str, Any], *, target_frames: int | None = None
    ) -> np.ndarray:
        """The model input of one clip sampled at ``params['sample_rate']``; ValueError on bad audio."""

    def examples(self, features: np.ndarray) -> np.ndarray:
        """The clip's features as a stack of examples ``(n_examples, *example_shape)``."""
        return features

    def longest_samples(self, params: dict[str, Any]) -> int | None:
        """The most samples of a clip the features hold when the whole clip is asked for (None: all)."""
        if self.longest_seconds is None:
            return None
        return int(self.longest_seconds * params["sample_rate"])

    def shortest_samples(self, params: dict[str, Any]) -> int:
        """The fewest samples of a clip that are embedded: one 25 ms frame (truncated as Kaldi does)."""
        return max(1, int(params["sample_rate"] * SHORTEST_MS * 0.001))

    def _usable(self, waveform: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """The waveform as float32, cut to ``longest_samples``; ValueError if shorter than one frame."""
        x = _as_waveform(waveform)
        shortest = self.shortest_samples(params)
        if x.size < shortest:
            raise ValueError(
                f"waveform has {x.size} samples, fewer than one {SHORTEST_MS:g} ms frame ({shortest})"
            )
        longest = self.longest_samples(params)
        return x if longest is None else x[:longest]

    def frame_hop_seconds(self, params: dict[str, Any], tokens: bool) -> float | None:
        """Seconds between the starts of successive frames of a clip (``frames`` pooling).

        A frame is one model-input example when the output is one vector per example (``tokens``
        false), else one time step of the tokens of a clip's single example. ``None``: no regular hop.
        """
        return None

    @abstractmethod
    def model_input(self, batch: np.ndarray, layout: str) -> np.ndarray:
        """A stack of examples ``(B, *example_shape)`` as the model's input tensor in ``layout``."""
