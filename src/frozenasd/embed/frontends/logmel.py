"""``logmel``: EAT's Kaldi log-mel fbank frames, not padded, with three level statistics per frame.

The view that needs no pre-trained model: its ONNX graph (:mod:`frozenasd.backbones.logmel_onnx`)
passes the frames through as tokens, so every pooling applies to them. A frame is 131 values:

- 0–127: the 128-bin Kaldi log-mel fbank of :func:`frozenasd.embed.fbank.eat_features` (25 ms every 10 ms,
  EAT's mean/std normalisation), with the clip's frames only: no zero frames are added (EAT pads to a
  multiple of 16, which would corrupt ``max`` and ``quantiles`` pooling);
- 128: the frame's RMS level in dB (``10 log10(mean x² + 1e-10)``);
- 129: its peak level in dB (``10 log10(max x² + 1e-10)``);
- 130: its crest factor in dB (peak − RMS).

The levels are of the clip's samples with the clip's mean removed, in the fbank's frames, so after
pooling they are clip level statistics: ``mean`` gives the mean frame level, ``max`` the clip's peak
level and largest crest factor, ``meanstd`` and ``quantiles`` how the level varies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from frozenasd.embed.frontends.base import LAYOUT_BTF, Frontend, _fits, in_frame_chunks
from frozenasd.embed.frontends.eat import EAT_FRONTEND
from frozenasd.errors import ModelError

LEVEL_DIMS = 3  # RMS, peak and crest factor of each frame, in dB
_POWER_FLOOR = 1e-10  # -100 dB: the level of a silent frame


def frame_levels(waveform: np.ndarray, sample_rate: float) -> np.ndarray:
    """RMS level, peak level and crest factor (dB) of each Kaldi frame of ``waveform``: ``(T, 3)`` float32."""
    from frozenasd.embed.fbank import _frames, frame_params

    window, hop, _ = frame_params(sample_rate)
    x = np.asarray(waveform, dtype=np.float64)
    x = x - x.mean()

    def levels(frames: np.ndarray) -> np.ndarray:
        power = frames**2
        rms_db = 10.0 * np.log10(power.mean(axis=1) + _POWER_FLOOR)
        peak_db = 10.0 * np.log10(power.max(axis=1) + _POWER_FLOOR)
        return np.stack([rms_db, peak_db, peak_db - rms_db], axis=1)

    return in_frame_chunks(_frames(x, window, hop), levels).astype(np.float32)


class LogMel(Frontend):
    """EAT's log-mel fbank frames (not padded) and 3 frame levels; one ``(T, 131)`` example per clip."""

    name = "logmel"
    description = "Kaldi 128-bin log-mel fbank, 25 ms / 10 ms, EAT normalisation, no padding; frame levels"
    defaults = {
        **{k: v for k, v in EAT_FRONTEND.items() if k not in ("name", "frame_multiple")},
        "level_dims": LEVEL_DIMS,
    }
    fixed = frozenset({"num_mel_bins", "frame_length_ms", "frame_shift_ms", "window", "dither", "level_dims"})

    def check(self, params: dict[str, Any], source: object) -> None:
        super().check(params, source)
        self._require(params["norm_std"] > 0, source, f"norm_std must be positive, got {params['norm_std']}")
        self._require(
            params["max_frames"] >= 1, source, f"max_frames must be positive, got {params['max_frames']}"
        )

    def width(self, params: dict[str, Any]) -> int:
        """Values per frame: the mel bins, then the levels."""
        return params["num_mel_bins"] + params["level_dims"]

    def input_layout(
        self,
        params: dict[str, Any],
        shape: Sequence[Any],
        input_name: str,
        declared: str | None,
        source: object,
    ) -> str:
        width = self.width(params)
        if len(shape) != 3 or not _fits(shape[2], width) or declared not in (None, LAYOUT_BTF):
            raise ModelError(
                f"{source}: input {input_name!r} has shape {list(shape)}; expected (batch, frames, {width})"
            )
        return LAYOUT_BTF

    def features(
        self, waveform: np.ndarray, params: dict[str, Any], *, target_frames: int | None = None
    ) -> np.ndarray:
        from frozenasd.embed.fbank import eat_features

        x = self._usable(waveform, params)
        mel = eat_features(
            x,
            params["sample_rate"],
            frame_multiple=1,
            max_frames=params["max_frames"],
            norm_mean=params["norm_mean"],
            norm_std=params["norm_std"],
        )
        levels = frame_levels(x, params["sample_rate"])
        return np.concatenate([mel, levels[: len(mel)]], axis=1)

    def examples(self, features: np.ndarray) -> np.ndarray:
        return features[None]

    def frame_hop_seconds(self, params: dict[str, Any], tokens: bool) -> float | None:
        return params["frame_shift_ms"] / 1000.0 if tokens else None

    def longest_samples(self, params: dict[str, Any]) -> int | None:
        from frozenasd.embed.fbank import samples_for_frames

        return samples_for_frames(params["sample_rate"], params["max_frames"])

    def shortest_samples(self, params: dict[str, Any]) -> int:
        from frozenasd.embed.fbank import samples_for_frames

        return samples_for_frames(params["sample_rate"], 1)

    def model_input(self, batch: np.ndarray, layout: str) -> np.ndarray:
        return np.ascontiguousarray(batch, dtype=np.float32)
