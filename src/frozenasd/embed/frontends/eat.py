"""``eat_fbank``: EAT's Kaldi log-mel fbank, ``(T, 128)`` per clip (:mod:`frozenasd.embed.fbank`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from frozenasd.embed.frontends.base import LAYOUT_B1TF, LAYOUT_B3FT, Frontend, _as_waveform, _fits
from frozenasd.errors import ModelError

# EAT's frontend parameters as an export records them in the model's metadata.
EAT_FRONTEND: dict[str, Any] = {
    "name": "eat_fbank",
    "sample_rate": 16000,
    "num_mel_bins": 128,
    "frame_length_ms": 25.0,
    "frame_shift_ms": 10.0,
    "window": "hanning",
    "dither": 0.0,
    "norm_mean": -4.268,
    "norm_std": 4.569,
    "frame_multiple": 16,
    "max_frames": 12288,
}

PATCH_FRAMES = 16  # EAT's patches span 16 fbank frames in time


class EATFbank(Frontend):
    """EAT's Kaldi-compatible 128-bin log-mel fbank, normalised; one ``(T, 128)`` example per clip."""

    name = "eat_fbank"
    description = "Kaldi 128-bin log-mel fbank, 25 ms / 10 ms, EAT normalisation"
    defaults = {k: v for k, v in EAT_FRONTEND.items() if k != "name"}
    fixed = frozenset({"num_mel_bins", "frame_length_ms", "frame_shift_ms", "window", "dither"})
    accepts_target_frames = True

    def check(self, params: dict[str, Any], source: object) -> None:
        super().check(params, source)
        self._require(params["norm_std"] > 0, source, f"norm_std must be positive, got {params['norm_std']}")
        multiple, most = params["frame_multiple"], params["max_frames"]
        self._require(multiple >= 1, source, f"frame_multiple must be positive, got {multiple}")
        self._require(
            most >= multiple and most % multiple == 0,
            source,
            f"max_frames must be a positive multiple of frame_multiple ({multiple}), got {most}",
        )

    def input_layout(
        self,
        params: dict[str, Any],
        shape: Sequence[Any],
        input_name: str,
        declared: str | None,
        source: object,
    ) -> str:
        mel = params["num_mel_bins"]
        layout = None
        if len(shape) == 4 and isinstance(shape[1], int):
            if shape[1] == 3 and _fits(shape[2], mel):
                layout = LAYOUT_B3FT
            elif shape[1] == 1 and _fits(shape[3], mel):
                layout = LAYOUT_B1TF
        if layout is None or (declared is not None and declared != layout):
            raise ModelError(
                f"{source}: input {input_name!r} has shape {list(shape)}; expected "
                f"(batch, 3, {mel}, time) or (batch, 1, time, {mel})"
            )
        return layout

    def features(
        self, waveform: np.ndarray, params: dict[str, Any], *, target_frames: int | None = None
    ) -> np.ndarray:
        from frozenasd.embed.fbank import eat_features

        return eat_features(
            _as_waveform(waveform),
            params["sample_rate"],
            target_frames=target_frames,
            frame_multiple=params["frame_multiple"],
            max_frames=params["max_frames"],
            norm_mean=params["norm_mean"],
            norm_std=params["norm_std"],
        )

    def examples(self, features: np.ndarray) -> np.ndarray:
        return features[None]

    def frame_hop_seconds(self, params: dict[str, Any], tokens: bool) -> float | None:
        # one time step of patch tokens (all frequency bands) covers PATCH_FRAMES fbank frames
        return PATCH_FRAMES * params["frame_shift_ms"] / 1000.0 if tokens else None

    def longest_samples(self, params: dict[str, Any]) -> int | None:
        from frozenasd.embed.fbank import samples_for_frames

        return samples_for_frames(params["sample_rate"], params["max_frames"])

    def shortest_samples(self, params: dict[str, Any]) -> int:
        from frozenasd.embed.fbank import samples_for_frames

        return samples_for_frames(params["sample_rate"], 1)

    def model_input(self, batch: np.ndarray, layout: str) -> np.ndarray:
        if layout == LAYOUT_B3FT:  # (B, 3, mel, T), the mel channel replicated
            return np.ascontiguousarray(np.repeat(batch.transpose(0, 2, 1)[:, None], 3, axis=1))
        return np.ascontiguousarray(batch[:, None])
