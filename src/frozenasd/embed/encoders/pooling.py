"""Pooling: a clip's frame vectors (tokens, patches or blocks) → one fixed-size embedding.

A pooling name is a statistic, optionally prefixed by ``bands-`` (EAT: the statistic is taken over
time separately for each frequency band of patch tokens, and the bands are concatenated):

- ``mean``: the per-dimension mean over the clip's frames (``dim`` values);
- ``max``: the per-dimension maximum, which keeps short events a mean dilutes (``dim``);
- ``meanstd``: the mean, then the standard deviation (``2 · dim``);
- ``quantiles``: the median, the 90th percentile, then the maximum (``3 · dim``).

``bands`` is the older name of ``bands-mean``; ``none`` is for an output that is already one vector
per example and averages the examples as ``mean`` does.

``frames`` pools nothing: a clip's "embedding" is its frame vectors flattened row-major,
``n_frames · frame_dim`` values (for EAT, one frame is one time step of the band-keeping layout,
``bands · dim`` values). Clips of different lengths give rows of different widths; ``pad_rows``
stacks them, right-padded with NaN (whole NaN frames), for the frame detectors
(:mod:`frozenasd.detectors.frame_bank`).

The waveform itself may be normalised before the frontend (``normalise_waveform``): ``rms`` or
``peak`` level, so that a view compares the sound of clips rather than their recording level.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STATISTICS = ("mean", "max", "meanstd", "quantiles")
QUANTILES = (0.5, 0.9, 1.0)  # the quantiles of ``quantiles``, in output order
BAND_PREFIX = "bands-"
FRAMES = "frames"  # no pooling: the clip's frames, flattened
POOLINGS = (*STATISTICS, *(BAND_PREFIX + s for s in STATISTICS), "bands", "none", FRAMES)
NORMALISATIONS = ("none", "rms", "peak")
RMS_TARGET = 0.1  # ``rms`` scales a clip to this RMS (-20 dBFS)
PEAK_TARGET = 1.0  # ``peak`` scales a clip's largest absolute sample to this
_ALIASES = {"bands": "bands-mean", "none": "mean"}


def parse_pooling(name: str) -> tuple[str, bool]:
    """``(statistic, keep_bands)`` of a pooling name; ValueError naming the choices for an unknown one."""
    if name not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {name!r}")
    name = _ALIASES.get(name, name)
    keep_bands = name.startswith(BAND_PREFIX)
    return name.removeprefix(BAND_PREFIX), keep_bands


def canonical_pooling(name: str) -> str:
    """The pooling name without aliases (``bands`` → ``bands-mean``; ``none`` stays: it checks the output)."""
    statistic, keep_bands = parse_pooling(name)
    return name if name == "none" else (BAND_PREFIX if keep_bands else "") + statistic


def pooled_size(dim: int, statistic: str) -> int:
    """Values a statistic gives for ``dim``-dimensional frames."""
    return dim * {"mean": 1, "max": 1, "meanstd": 2, "quantiles": len(QUANTILES)}[statistic]


def pool_frames(frames: np.ndarray, statistic: str) -> np.ndarray:
    """One clip's frames ``(n_frames, dim)`` pooled by ``statistic`` into a float32 vector."""
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty (frames, dim) array, got shape {x.shape}")
    if statistic == FRAMES:
        out = x.reshape(-1)
    elif statistic == "mean":
        out = x.mean(axis=0)
    elif statistic == "max":
        out = x.max(axis=0)
    elif statistic == "meanstd":
        out = np.concatenate([x.mean(axis=0), x.std(axis=0)])
    elif statistic == "quantiles":
        out = np.quantile(x, QUANTILES, axis=0).reshape(-1)
    else:
        raise ValueError(f"unknown pooling statistic {statistic!r}; choose one of {(*STATISTICS, FRAMES)}")
    return out.astype(np.float32)


def pad_rows(rows: Sequence[np.ndarray]) -> np.ndarray:
    """1-D rows stacked into ``(n, widest)`` float32, the shorter ones right-padded with NaN.

    Rows of one width are stacked as they are (``np.stack``); only ``frames`` pooling gives others.
    """
    widths = {np.shape(r)[0] for r in rows}
    if len(widths) <= 1:
        return np.stack(rows)
    out = np.full((len(rows), max(widths)), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def normalise_waveform(waveform: np.ndarray, mode: str) -> np.ndarray:
    """``waveform`` scaled to RMS ``RMS_TARGET`` (``rms``) or peak ``PEAK_TARGET`` (``peak``), or as is.

    A silent clip (no level to scale) and a non-numeric one are returned unchanged; the frontend
    judges them.
    """
    if mode == "none":
        return waveform
    if mode not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {mode!r}")
    x = np.asarray(waveform)
    if x.size == 0 or not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
        return waveform
    x64 = x.astype(np.float64)
    level = np.sqrt(np.mean(x64**2)) if mode == "rms" else np.max(np.abs(x64))
    if not level > 0.0:
        return waveform
    target = RMS_TARGET if mode == "rms" else PEAK_TARGET
    return (x64 * (target / level)).astype(np.float32)
