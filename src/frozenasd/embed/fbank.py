"""Kaldi-compatible log-mel filterbank in numpy, and EAT's input normalisation.

`kaldi_fbank` reproduces ``torchaudio.compliance.kaldi.fbank`` with the options EAT uses
(``htk_compat=True, use_energy=False, window_type='hanning', dither=0.0, frame_shift=10``, all else
Kaldi defaults) without torch. `eat_features` is EAT's whole frontend for one clip.

Precision. The signal path (per-frame DC removal, pre-emphasis, window, FFT, power, mel sums, log)
runs in float64, the result is returned as float32. torchaudio runs it in float32; its rounding in the
FFT is what remains of the difference: the median is ~1e-7, but bins holding less than ~1e-8 of a
frame's peak energy (the lowest mel bins, which pre-emphasis empties, or bins far from a loud pure
tone) carry its rounding noise, up to a few 1e-4 (noise) or a few 1e-3 (loud pure tones). A float32
numpy path would not land closer, since its FFT rounds differently, and it drifts further from the
exact values. The mel filterbank is the exception: it is built in float32 with torchaudio's order of
operations and correctly rounded logarithms, which reproduces torchaudio's bank (bit for bit with
torch 2.x on x86-64; at most 1-ulp logarithm differences elsewhere). Its float32 rounding (up to
~1e-5 absolute, 1e-3 relative on small weights) is part of the features EAT was trained on.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "EAT_NORM_MEAN",
    "EAT_NORM_STD",
    "check_waveform",
    "eat_features",
    "eat_normalize",
    "frame_params",
    "kaldi_fbank",
    "mel_banks",
    "num_frames",
    "pad_or_trim",
]

EAT_NORM_MEAN = -4.268
EAT_NORM_STD = 4.569

# Floor of the mel energies before the log: float32 machine epsilon, as in Kaldi.
_LOG_FLOOR = float(np.finfo(np.float32).eps)


def frame_params(
    sample_rate: float, frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0
) -> tuple[int, int, int]:
    """Return ``(window_size, hop, n_fft)`` in samples, truncated as Kaldi does; n_fft is a power of 2."""
    if not (math.isfinite(sample_rate) and sample_rate > 0):
        raise ValueError(f"sample rate must be a positive number, got {sample_rate!r}")
    # Same expression order as torchaudio, so that the truncation to int agrees for every rate.
    window_size = int(sample_rate * frame_length_ms * 0.001)
    hop = int(sample_rate * frame_shift_ms * 0.001)
    if window_size < 2:
        raise ValueError(f"frame length {frame_length_ms} ms gives a window of {window_size} samples (< 2)")
    if hop < 1:
        raise ValueError(f"frame shift {frame_shift_ms} ms gives a hop of {hop} samples (< 1)")
    n_fft = 1 << (window_size - 1).bit_length()
    return window_size, hop, n_fft


def samples_for_frames(sample_rate: float, frames: int) -> int:
    """The fewest samples that give ``frames`` whole 25 ms frames every 10 ms (one frame: one window)."""
    window, hop, _ = frame_params(sample_rate)
    return (frames - 1) * hop + window


def num_frames(num_samples: int, window_size: int, hop: int) -> int:
    """Number of frames with Kaldi's snip_edges=True: only frames that fit entirely in the signal."""
    if num_samples < window_size:
        return 0
    return 1 + (num_samples - window_size) // hop


def _log_f32(x: np.ndarray) -> np.ndarray:
    """Correctly rounded float32 natural log (through float64), independent of the platform's libm."""
    return np.log(x.astype(np.float64)).astype(np.float32)


@lru_cache(maxsize=32)
def mel_banks(
    num_mel_bins: int, n_fft: int, sample_rate: float, low_freq: float = 20.0, high_freq: float = 0.0
) -> np.ndarray:
    """Kaldi triangular mel filterbank, shape ``(num_mel_bins, n_fft // 2 + 1)``, float32, read-only.

    ``high_freq <= 0`` is an offset from the Nyquist frequency (0 means Nyquist). The triangles are
    linear in mel and span ``[low_freq, high_freq]`` split into ``num_mel_bins + 1`` equal mel steps.
    The last column (the Nyquist FFT bin) is zero, as in Kaldi.
    """
    if num_mel_bins < 3:
        raise ValueError(f"need at least 3 mel bins, got {num_mel_bins}")
    if n_fft < 2 or n_fft % 2:
        raise ValueError(f"FFT size must be even and >= 2, got {n_fft}")
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(
            f"bad mel range: low_freq {low_freq} Hz, high_freq {high_freq} Hz, Nyquist {nyquist} Hz"
        )
    f32 = np.float32
    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    delta = f32((mel_high - mel_low) / (num_mel_bins + 1))
    # float32 arithmetic in torchaudio's order of operations (see module docstring).
    b = np.arange(num_mel_bins, dtype=f32)[:, None]
    left = f32(mel_low) + b * delta
    center = f32(mel_low) + (b + f32(1.0)) * delta
    right = f32(mel_low) + (b + f32(2.0)) * delta
    freqs = np.arange(n_fft // 2, dtype=f32) * f32(sample_rate / n_fft)
    mel = (f32(1127.0) * _log_f32(f32(1.0) + freqs / f32(700.0)))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    bank = np.zeros((num_mel_bins, n_fft // 2 + 1), dtype=f32)
    bank[:, :-1] = np.maximum(f32(0.0), np.minimum(up, down))
    bank.setflags(write=False)
    return bank


@lru_cache(maxsize=32)
def _hann_window(window_size: int) -> np.ndarray:
    """Symmetric Hann window 0.5 - 0.5 cos(2 pi n / (N - 1)), float64, read-only."""
    n = np.arange(window_size, dtype=np.float64)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / (window_size - 1))
    w.setflags(write=False)
    return w


def check_waveform(waveform: np.ndarray) -> np.ndarray:
    """Check that the waveform is a finite, real, 1-D array and return it as an ndarray."""
    x = np.asarray(waveform)
    if x.ndim != 1:
        raise ValueError(f"waveform must be 1-D (mono samples), got shape {x.shape}")
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"waveform must hold real numbers, got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError("waveform is empty")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise ValueError("waveform contains NaN or infinite samples")
    return x


def _frames(x: np.ndarray, window_size: int, hop: int) -> np.ndarray:
    """Read-only view ``(n_frames, window_size)`` of the frames Kaldi takes with snip_edges=True."""
    return sliding_window_view(x, window_size)[::hop]


def _prepare_frames(frames: np.ndarray, preemphasis: float) -> np.ndarray:
    """Per-frame DC removal then pre-emphasis, in float64 (a new array); the window comes after."""
    y = frames.astype(np.float64)
    y -= y.mean(axis=1, keepdims=True)
    if preemphasis != 0.0:
        # Kaldi's convention: the first sample of a frame is its own predecessor.
        y[:, 1:] -= preemphasis * y[:, :-1]
        y[:, 0] *= 1.0 - preemphasis
    return y


def _power_spectrum(windowed: np.ndarray, n_fft: int) -> np.ndarray:
    """|rfft|^2 of each frame, zero-padded to n_fft: shape ``(n_frames, n_fft // 2 + 1)``."""
    spec = np.fft.rfft(windowed, n=n_fft, axis=1)
    return spec.real**2 + spec.imag**2


def kaldi_fbank(
    waveform: np.ndarray,
    sample_rate: float = 16000,
    num_mel_bins: int = 128,
    *,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    preemphasis: float = 0.97,
) -> np.ndarray:
    """Kaldi log-mel filterbank of a mono waveform: float32 array ``(n_frames, num_mel_bins)``.

    Samples are used as given (no int16 rescaling). Frames are ``frame_length_ms`` long every
    ``frame_shift_ms`` (snip_edges=True); each frame has its mean removed, is pre-emphasised and
    Hann-windowed, zero-padded to the next power of two, and its power spectrum is summed by
    `mel_banks`; the result is ``log(max(E, float32 eps))``. Raises ValueError for input that is not
    1-D, empty, non-finite or shorter than one frame.
    """
    x = check_waveform(waveform)
    if not 0.0 <= preemphasis <= 1.0:
        raise ValueError(f"pre-emphasis coefficient must be in [0, 1], got {preemphasis}")
    window_size, hop, n_fft = frame_params(sample_rate, frame_length_ms, frame_shift_ms)
    if x.size < window_size:
        raise ValueError(
            f"waveform has {x.size} samples, shorter than one {frame_length_ms:g} ms frame "
            f"({window_size} samples at {sample_rate:g} Hz)"
        )
    bank = mel_banks(num_mel_bins, n_fft, float(sample_rate), float(low_freq), float(high_freq))
    windowed = _prepare_frames(_frames(x, window_size, hop), preemphasis)
    windowed *= _hann_window(window_size)
    power = _power_spectrum(windowed, n_fft)
    energies = power @ bank.T.astype(np.float64)
    return np.log(np.maximum(energies, _LOG_FLOOR)).astype(np.float32)


def eat_normalize(fbank: np.ndarray, mean: float = EAT_NORM_MEAN, std: float = EAT_NORM_STD) -> np.ndarray:
    """EAT's input normalisation ``(x - mean) / (2 * std)``, as float32."""
    return (np.asarray(fbank, dtype=np.float32) - np.float32(mean)) / np.float32(2.0 * std)


def pad_or_trim(fbank: np.ndarray, n_frames: int) -> np.ndarray:
    """Zero-pad at the end or keep the first frames (a view), so that exactly ``n_frames`` rows remain."""
    if n_frames < 1:
        raise ValueError(f"number of frames must be positive, got {n_frames}")
    have = fbank.shape[0]
    if have >= n_frames:
        return fbank[:n_frames]
    pad = np.zeros((n_frames - have, *fbank.shape[1:]), dtype=fbank.dtype)
    return np.concatenate([fbank, pad], axis=0)


def eat_features(
    waveform: np.ndarray,
    sample_rate: float = 16000,
    *,
    target_frames: int | None = None,
    frame_multiple: int = 16,
    max_frames: int = 12288,
    norm_mean: float = EAT_NORM_MEAN,
    norm_std: float = EAT_NORM_STD,
) -> np.ndarray:
    """EAT's frontend for one mono clip: normalised 128-bin fbank, float32 ``(T, 128)``.

    With ``target_frames=None`` the whole clip is kept and T is rounded up to a multiple of
    ``frame_multiple`` by zero frames at the end, then capped at ``max_frames`` (first frames kept).
    Otherwise T is exactly ``target_frames`` (a multiple of ``frame_multiple``), padded or trimmed.
    Padding is applied before normalisation, so a padded frame equals ``-norm_mean / (2 norm_std)``.
    """
    if frame_multiple < 1:
        raise ValueError(f"frame_multiple must be positive, got {frame_multiple}")
    if target_frames is not None and (target_frames < 1 or target_frames % frame_multiple):
        raise ValueError(
            f"target_frames must be a positive multiple of {frame_multiple}, got {target_frames}"
        )
    if target_frames is None and (max_frames < 1 or max_frames % frame_multiple):
        raise ValueError(f"max_frames must be a positive multiple of {frame_multiple}, got {max_frames}")
    x = check_waveform(waveform).astype(np.float32)
    # EAT removes the clip mean in float32 first. Per-frame DC removal cancels it mathematically; it is
    # kept so that the samples round exactly as in EAT.
    x = x - np.float32(x.mean(dtype=np.float64))
    # Frames past the limit would be dropped: a long recording is cut before its fbank is computed.
    window, hop, _ = frame_params(sample_rate)
    x = x[: ((max_frames if target_frames is None else target_frames) - 1) * hop + window]
    fbank = kaldi_fbank(x, sample_rate, 128)
    if target_frames is None:
        n = fbank.shape[0]
        target_frames = min(-(-n // frame_multiple) * frame_multiple, max_frames)
    return eat_normalize(pad_or_trim(fbank, target_frames), norm_mean, norm_std)
