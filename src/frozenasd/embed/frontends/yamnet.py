"""``yamnet_logmel``: YAMNet's log-mel patches, ``(n_patches, 96, 64)``.

|STFT| with a periodic Hann window, HTK mel weights built in mel space without the DC bin,
``log(mel + 0.001)``, 0.96 s patches every 0.48 s, the waveform zero-padded to a whole number of
patches (at least one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from frozenasd.embed.frontends.base import LAYOUT_B1TF, Frontend, _as_waveform, _fits, in_frame_chunks
from frozenasd.errors import ModelError


def _stft_sizes(params: Mapping[str, Any]) -> tuple[int, int, int]:
    """``(window, hop, n_fft)`` in samples, rounded as YAMNet does; n_fft is the next power of two."""
    window = int(round(params["sample_rate"] * params["stft_window_seconds"]))
    hop = int(round(params["sample_rate"] * params["stft_hop_seconds"]))
    n_fft = 2 ** int(math.ceil(math.log2(window))) if window > 0 else 0
    return window, hop, n_fft


def _patch_sizes(params: Mapping[str, Any]) -> tuple[int, int]:
    """``(patch_frames, patch_hop_frames)`` in STFT frames."""
    _, hop, _ = _stft_sizes(params)
    frame_rate = params["sample_rate"] / hop
    return (
        int(round(frame_rate * params["patch_window_seconds"])),
        int(round(frame_rate * params["patch_hop_seconds"])),
    )


@lru_cache(maxsize=16)
def yamnet_mel_weights(
    num_mel_bins: int, num_spectrogram_bins: int, sample_rate: float, lower_hz: float, upper_hz: float
) -> np.ndarray:
    """YAMNet's mel weights ``(num_spectrogram_bins, num_mel_bins)``, float32, read-only.

    HTK mel scale ``1127 ln(1 + f / 700)``; the bins are spread linearly over [0, Nyquist] and mapped
    to mel; band ``m`` is a triangle in mel from edge ``m`` to edge ``m + 2`` of ``num_mel_bins + 2``
    equally spaced mel edges over [lower_hz, upper_hz], peak 1; the DC bin gets no weight.
    """

    def to_mel(hz: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)

    bins_mel = to_mel(np.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins)[1:])[:, None]
    edges = np.linspace(to_mel(lower_hz), to_mel(upper_hz), num_mel_bins + 2)
    lower, center, upper = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights = np.zeros((num_spectrogram_bins, num_mel_bins), dtype=np.float32)
    weights[1:] = np.maximum(0.0, np.minimum(rising, falling))
    weights.setflags(write=False)
    return weights


def yamnet_pad(waveform: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Zero-pad at the end to one patch at least, then to a whole number of patch hops."""
    sr = params["sample_rate"]
    window_s, hop_s = params["stft_window_seconds"], params["stft_hop_seconds"]
    # Sample counts are rounded to float32 before truncation, as the reference computes them.
    min_samples = int(np.float32((params["patch_window_seconds"] + window_s - hop_s) * sr))
    hop_samples = int(np.float32(params["patch_hop_seconds"] * sr))
    n = max(waveform.size, min_samples)
    hops = -(-(n - min_samples) // hop_samples)
    total = min_samples + hops * hop_samples
    if total == waveform.size:
        return waveform
    return np.concatenate([waveform, np.zeros(total - waveform.size, dtype=waveform.dtype)])


def yamnet_log_mel(waveform: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Log-mel spectrogram ``(frames, mel_bands)`` float32 of complete STFT frames (no padding here)."""
    window, hop, n_fft = _stft_sizes(params)
    x = _as_waveform(waveform).astype(np.float64)
    if x.size < window:
        raise ValueError(f"waveform has {x.size} samples, shorter than one STFT window ({window})")
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(window) / window)  # periodic
    weights = yamnet_mel_weights(
        params["mel_bands"],
        n_fft // 2 + 1,
        float(params["sample_rate"]),
        params["mel_min_hz"],
        params["mel_max_hz"],
    ).astype(np.float64)

    def log_mel(frames: np.ndarray) -> np.ndarray:
        magnitude = np.abs(np.fft.rfft(frames * hann, n=n_fft, axis=1))
        return np.log(magnitude @ weights + params["log_offset"]).astype(np.float32)

    return in_frame_chunks(sliding_window_view(x, window)[::hop], log_mel)


class YAMNetLogMel(Frontend):
    """YAMNet's log-mel patches ``(n_patches, 96, 64)`` of one clip (0.96 s every 0.48 s)."""

    name = "yamnet_logmel"
    description = "YAMNet log-mel patches: 64 mel 125-7500 Hz, 25 ms / 10 ms, 0.96 s every 0.48 s"
    longest_seconds = 600.0
    defaults = {
        "sample_rate": 16000,
        "stft_window_seconds": 0.025,
        "stft_hop_seconds": 0.010,
        "mel_bands": 64,
        "mel_min_hz": 125.0,
        "mel_max_hz": 7500.0,
        "log_offset": 0.001,
        "patch_window_seconds": 0.96,
        "patch_hop_seconds": 0.48,
    }

    def check(self, params: dict[str, Any], source: object) -> None:
        super().check(params, source)
        window, hop, _ = _stft_sizes(params)
        self._require(window >= 2, source, f"STFT window of {window} samples is too short")
        self._require(hop >= 1, source, f"STFT hop of {hop} samples is too short")
        self._require(
            params["mel_bands"] >= 1, source, f"mel_bands must be positive, got {params['mel_bands']}"
        )
        lo, hi = params["mel_min_hz"], params["mel_max_hz"]
        self._require(
            0.0 <= lo < hi <= params["sample_rate"] / 2,
            source,
            f"mel range {lo}-{hi} Hz must lie within 0-{params['sample_rate'] / 2} Hz",
        )
        self._require(
            params["log_offset"] > 0, source, f"log_offset must be positive, got {params['log_offset']}"
        )
        frames, hop_frames = _patch_sizes(params)
        self._require(
            frames >= 1 and hop_frames >= 1, source, "patch window and hop must be at least one frame"
        )
        self._require(
            int(np.float32(params["patch_hop_seconds"] * params["sample_rate"])) >= 1,
            source,
            "patch hop must be at least one sample",
        )

    def shortest_samples(self, params: dict[str, Any]) -> int:
        return _stft_sizes(params)[0]

    def input_layout(
        self,
        params: dict[str, Any],
        shape: Sequence[Any],
        input_name: str,
        declared: str | None,
        source: object,
    ) -> str:
        frames, _ = _patch_sizes(params)
        mel = params["mel_bands"]
        fits = len(shape) == 4 and shape[1] == 1 and _fits(shape[2], frames) and _fits(shape[3], mel)
        if not fits or declared not in (None, LAYOUT_B1TF):
            raise ModelError(
                f"{source}: input {input_name!r} has shape {list(shape)}; frontend {self.name!r} with these "
                f"parameters gives (batch, 1, {frames}, {mel})"
            )
        return LAYOUT_B1TF

    def features(
        self, waveform: np.ndarray, params: dict[str, Any], *, target_frames: int | None = None
    ) -> np.ndarray:
        log_mel = yamnet_log_mel(yamnet_pad(self._usable(waveform, params), params), params)
        frames, hop_frames = _patch_sizes(params)
        patches = sliding_window_view(log_mel, frames, axis=0)[::hop_frames]  # (n, mel, frames)
        return np.ascontiguousarray(patches.transpose(0, 2, 1))

    def frame_hop_seconds(self, params: dict[str, Any], tokens: bool) -> float | None:
        if tokens:
            return None
        _, stft_hop, _ = _stft_sizes(params)
        return _patch_sizes(params)[1] * stft_hop / params["sample_rate"]

    def model_input(self, batch: np.ndarray, layout: str) -> np.ndarray:
        return np.ascontiguousarray(batch[:, None])
