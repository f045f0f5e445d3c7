"""``aisfx_mel``: aiSFX's mel blocks, ``(n_blocks, 100, 96)``.

Centred frames of 2048 samples every 1024 at 44.1 kHz, symmetric Hann window, power spectrum summed
by unit-sum HTK triangles (built in float32 as the original spectrogram code does),
``log10(1 + 10000 E)`` scaled by the training maximum, cut into 100-frame blocks every 50 frames (an
incomplete last block dropped unless it is the only one, which is zero-padded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from frozenasd.embed.frontends.base import LAYOUT_BTF, Frontend, _as_waveform, _fits, in_frame_chunks
from frozenasd.errors import ModelError


def _hz_to_mel_f32(hz: np.float32) -> np.float32:
    """HTK mel ``2595 log10(1 + f / 700)`` computed in double, rounded to float32."""
    return np.float32(2595.0 * math.log10(float(hz) / 700.0 + 1.0))


def _mel_to_hz_f32(mel: np.float32) -> np.float32:
    return np.float32(700.0 * (10.0 ** (float(mel) / 2595.0) - 1.0))


@lru_cache(maxsize=16)
def aisfx_mel_bank(
    mel_bands: int, spectrum_size: int, sample_rate: float, low_hz: float, high_hz: float
) -> np.ndarray:
    """Unit-sum HTK mel triangles ``(mel_bands, spectrum_size)``, float32, read-only; ValueError if unusable.

    The band edges are ``mel_bands + 2`` points equally spaced in HTK mel over [low_hz, high_hz],
    accumulated in float32; a triangle's weights are linear in mel over the bins from ceil(left) to
    floor(right), each row divided by its sum. Every step is rounded to float32 as in the original
    float32 implementation, so that bins that fall on a band edge are assigned the same way.
    """
    f32 = np.float32
    low, high = _hz_to_mel_f32(f32(low_hz)), _hz_to_mel_f32(f32(high_hz))
    step = (high - low) / f32(mel_bands + 1)
    edges, mel = [], low
    for _ in range(mel_bands + 2):
        edges.append(_mel_to_hz_f32(mel))
        mel = f32(mel + step)
    scale = f32(float(f32(sample_rate)) / 2.0 / (spectrum_size - 1))
    bank = np.zeros((mel_bands, spectrum_size), dtype=f32)
    for i in range(mel_bands):
        left, center, right = edges[i], edges[i + 1], edges[i + 2]
        rise = _hz_to_mel_f32(center) - _hz_to_mel_f32(left)
        fall = _hz_to_mel_f32(right) - _hz_to_mel_f32(center)
        first, last = int(math.ceil(left / scale)), int(math.floor(right / scale))
        if last >= spectrum_size:
            raise ValueError(f"mel band {i} reaches {right} Hz, above the Nyquist frequency")
        total = f32(0.0)
        for j in range(first, last + 1):
            freq = f32(j * scale)
            if freq < center:
                w = (_hz_to_mel_f32(freq) - _hz_to_mel_f32(left)) / rise
            else:
                w = (_hz_to_mel_f32(right) - _hz_to_mel_f32(freq)) / fall
            bank[i, j] = w
            total = f32(total + w)
        if total == 0:
            raise ValueError(f"mel band {i} covers no spectrum bin; too many bands for the FFT size")
        bank[i, first : last + 1] /= total
    bank.setflags(write=False)
    return bank


def _centred_frames(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    """Frames ``(n, size)`` whose first is centred on sample 0, zero-padded at both ends.

    Frame k starts at ``k * hop - (size + 1) // 2``; frames are emitted up to and including the first
    one whose centre ``start + size // 2`` reaches the end of the signal, never one starting past it.
    """
    first_start = -((size + 1) // 2)
    first_centre = first_start + size // 2
    n_centre = max(0, -(-(x.size - first_centre) // hop)) + 1
    n_start = max(0, -(-(x.size - first_start) // hop))
    n = min(n_centre, n_start)
    left = -first_start
    right = max(0, (n - 1) * hop + first_start + size - x.size)
    padded = np.concatenate([np.zeros(left, x.dtype), x, np.zeros(right, x.dtype)])
    return sliding_window_view(padded, size)[::hop][:n]


def aisfx_mel_spectrogram(waveform: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Normalised log mel spectrogram ``(frames, mel_bands)`` float32 of a waveform at 44.1 kHz.

    Frames of digital silence stay silent; the original adds -100 dB noise to them, which changes
    the normalised values by less than 2e-5.
    """
    size, hop = params["frame_size"], params["hop_size"]
    x = _as_waveform(waveform)
    n = np.arange(size, dtype=np.float64)
    hann = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / (size - 1))).astype(np.float32)  # symmetric
    bank = aisfx_mel_bank(
        params["mel_bands"],
        size // 2 + 1,
        float(params["sample_rate"]),
        params["mel_min_hz"],
        params["mel_max_hz"],
    ).T.astype(np.float64)
    low, span = params["norm_min"], params["norm_max"] - params["norm_min"]

    def log_mel(frames: np.ndarray) -> np.ndarray:
        spectrum = np.fft.rfft((frames * hann).astype(np.float64), axis=1)
        energies = (spectrum.real**2 + spectrum.imag**2) @ bank
        return ((np.log10(params["log_scale"] * energies + 1.0) - low) / span).astype(np.float32)

    return in_frame_chunks(_centred_frames(x, size, hop), log_mel)


def aisfx_blocks(spectrogram: np.ndarray, block: int, hop: int, drop_partial: bool = True) -> np.ndarray:
    """Blocks ``(n, block, bands)`` of ``block`` frames every ``hop``, zero-padded past the end.

    ``n = ceil((T - block) / hop + 1)``, less one when the last block would be incomplete and
    ``drop_partial`` is set, and at least one.
    """
    t = spectrogram.shape[0]
    n = int(math.ceil((t - block) / hop + 1))
    if drop_partial and (t - block) % hop != 0:
        n -= 1
    n = max(n, 1)
    padded = np.concatenate([spectrogram, np.zeros((block, spectrogram.shape[1]), spectrogram.dtype)])
    return np.ascontiguousarray(sliding_window_view(padded, block, axis=0)[::hop][:n].transpose(0, 2, 1))


class AisfxMel(Frontend):
    """aiSFX's normalised log-mel blocks ``(n_blocks, 100, 96)`` of one clip at 44.1 kHz."""

    name = "aisfx_mel"
    description = "aiSFX mel blocks: 96 HTK mel 0-22050 Hz, 2048 / 1024 at 44.1 kHz, 100-frame blocks"
    longest_seconds = 600.0
    defaults = {
        "sample_rate": 44100,
        "frame_size": 2048,
        "hop_size": 1024,
        "mel_bands": 96,
        "mel_min_hz": 0.0,
        "mel_max_hz": 22050.0,
        "log_scale": 10000.0,
        "norm_min": 0.0,
        "norm_max": 9.457798957824707,
        "block_frames": 100,
        "block_hop": 50,
        "drop_partial_block": True,
    }

    def check(self, params: dict[str, Any], source: object) -> None:
        super().check(params, source)
        size, hop = params["frame_size"], params["hop_size"]
        self._require(size >= 2 and size % 2 == 0, source, f"frame_size must be even and >= 2, got {size}")
        self._require(1 <= hop <= size, source, f"hop_size must be between 1 and frame_size, got {hop}")
        lo, hi = params["mel_min_hz"], params["mel_max_hz"]
        self._require(
            0.0 <= lo < hi <= params["sample_rate"] / 2,
            source,
            f"mel range {lo}-{hi} Hz must lie within 0-{params['sample_rate'] / 2} Hz",
        )
        self._require(params["log_scale"] > 0, source, "log_scale must be positive")
        self._require(params["norm_max"] > params["norm_min"], source, "norm_max must exceed norm_min")
        self._require(params["block_frames"] >= 1, source, "block_frames must be positive")
        self._require(params["block_hop"] >= 1, source, "block_hop must be positive")
        self._require(params["mel_bands"] >= 1, source, "mel_bands must be positive")
        try:
            aisfx_mel_bank(params["mel_bands"], size // 2 + 1, float(params["sample_rate"]), lo, hi)
        except ValueError as exc:
            raise ModelError(f"{source}: frontend {self.name!r}: {exc}") from exc

    def input_layout(
        self,
        params: dict[str, Any],
        shape: Sequence[Any],
        input_name: str,
        declared: str | None,
        source: object,
    ) -> str:
        frames, mel = params["block_frames"], params["mel_bands"]
        fits = len(shape) == 3 and _fits(shape[1], frames) and _fits(shape[2], mel)
        if not fits or declared not in (None, LAYOUT_BTF):
            raise ModelError(
                f"{source}: input {input_name!r} has shape {list(shape)}; frontend {self.name!r} with these "
                f"parameters gives (batch, {frames}, {mel})"
            )
        return LAYOUT_BTF

    def features(
        self, waveform: np.ndarray, params: dict[str, Any], *, target_frames: int | None = None
    ) -> np.ndarray:
        spectrogram = aisfx_mel_spectrogram(self._usable(waveform, params), params)
        return aisfx_blocks(
            spectrogram, params["block_frames"], params["block_hop"], params["drop_partial_block"]
        )

    def frame_hop_seconds(self, params: dict[str, Any], tokens: bool) -> float | None:
        return None if tokens else params["block_hop"] * params["hop_size"] / params["sample_rate"]

    def model_input(self, batch: np.ndarray, layout: str) -> np.ndarray:
        return np.ascontiguousarray(batch)
