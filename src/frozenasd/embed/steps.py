"""The per-clip steps every executor runs the same way, so that they give the same answers.

Reading a clip and computing its model input (:func:`clip_features`), embedding a batch of inputs with
a clip-by-clip retry when the batch fails (:func:`embed_or_reasons`), and putting the per-clip results
together into an :class:`Embedded` with the same warnings
(:func:`assemble`). A clip that cannot be used gives a reason (text) instead of a result; the reasons
and the messages built from them are identical whichever executor, and whichever process, ran the step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from frozenasd.data.audio import load_audio, load_audio_bytes, samples_at
from frozenasd.data.dcase import Clip
from frozenasd.data.file_bytes import BytesClip
from frozenasd.data.waveforms import WaveClip, read_wave
from frozenasd.embed.cache import clip_identity
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.embed.encoders.pooling import pad_rows
from frozenasd.errors import FrozenASDError, ModelError

__all__ = [
    "ClipLimits",
    "Embedded",
    "Featured",
    "assemble",
    "clip_features",
    "embed_or_reasons",
    "reason_of",
    "skip_message",
]

TOO_LARGE_TO_LOAD = "too large to load into memory"
TOO_LARGE_TO_EMBED = "too large for the encoder to embed in the memory available"


@dataclass
class Embedded:
    """Embeddings of the clips that could be used, and the ones skipped with the reason."""

    clips: list[Clip]
    embeddings: np.ndarray
    skipped: list[tuple[Clip, str]] = field(default_factory=list)
    cut: list[Clip] = field(default_factory=list)  # longer than the encoder takes: only their start is used
    frame_dim: int | None = None  # values per frame (the extractor's frame_dim_), for frame detectors


@dataclass(frozen=True)
class ClipLimits:
    """The lengths an extractor takes: its rate, the fewest samples and the most it embeds (None: all)."""

    sample_rate: int
    shortest: int
    longest: int | None

    @classmethod
    def of(cls, extractor: ONNXFeatureExtractor) -> ClipLimits:
        return cls(
            extractor.frontend_["sample_rate"], extractor.shortest_samples(), extractor.longest_samples()
        )

    @property
    def most_seconds(self) -> float | None:
        """Seconds read of a clip: a second more than the encoder takes also tells a longer clip apart."""
        return None if self.longest is None else self.longest / self.sample_rate + 1.0

    def file_is_cut(self, path: str | os.PathLike) -> bool:
        """True when the file is longer than the encoder takes (from its header; for cached clips)."""
        return self.longest is not None and samples_at(path, self.sample_rate) > self.longest


@dataclass
class Featured:
    """A clip's model input, and whether it is longer than the encoder takes (only its start is used)."""

    features: np.ndarray
    cut: bool


def reason_of(exc: BaseException, where: object) -> str:
    """The reason an exception gives for skipping a clip, without the leading ``<where>: ``."""
    if isinstance(exc, MemoryError):  # one huge file must not end the run
        return TOO_LARGE_TO_LOAD
    return str(exc).removeprefix(f"{where}: ")


def skip_message(clip_path: object, reason: str) -> str:
    """The warning every executor gives for a skipped clip."""
    return f"skipped {clip_path}: {reason}"


def take_cached(
    clips: Sequence[Clip],
    cached: dict[str, np.ndarray] | None,
    limits: ClipLimits,
    skip: Callable[[int, str], None],
) -> tuple[dict[int, np.ndarray], set[int], dict[int, str]]:
    """What the cache holds of ``clips``: ``(found, cut, keys)``, the embeddings found by clip index,
    the found clips longer than the encoder's input, and the cache key of every clip still to embed.

    Without a cache (``cached`` None) no clip is found and the keys are empty. A clip whose file cannot
    be identified is reported through ``skip``.
    """
    found: dict[int, np.ndarray] = {}
    cut: set[int] = set()
    keys: dict[int, str] = {}
    for i, clip in enumerate(clips):
        try:
            key = clip_identity(clip.path) if cached is not None else ""
        except FrozenASDError as exc:
            skip(i, reason_of(exc, clip.path))
            continue
        if cached is not None and key in cached:
            found[i] = cached[key]
            if limits.file_is_cut(clip.path):
                cut.add(i)
        else:
            keys[i] = key
    return found, cut, keys


def clip_features(
    extractor: ONNXFeatureExtractor, clip: Clip | str | os.PathLike, limits: ClipLimits
) -> Featured | str:
    """Read ``clip`` (a clip record or a file path) and compute its model input, or the reason it cannot be.

    Needs only the extractor's frontend (an extractor unpickled without its session will do).
    """
    path = clip.path if isinstance(clip, Clip) else clip
    bounds = {"min_samples": limits.shortest, "max_seconds": limits.most_seconds}
    try:
        if isinstance(clip, WaveClip):
            wave = read_wave(clip, limits.sample_rate, **bounds)
        elif isinstance(clip, BytesClip):
            wave = load_audio_bytes(clip.data, path, limits.sample_rate, **bounds)
        else:
            wave = load_audio(path, limits.sample_rate, **bounds)
        features = extractor.features(wave, limits.sample_rate)
    except (FrozenASDError, ValueError, OSError, MemoryError) as exc:
        return reason_of(exc, path)
    return Featured(features, limits.longest is not None and wave.size > limits.longest)


def embed_or_reasons(
    extractor: ONNXFeatureExtractor, features: Sequence[np.ndarray]
) -> list[np.ndarray | str]:
    """Per clip its embedding, or the reason the encoder could not embed it.

    The clips are embedded in one call; when that fails, one clip may be the cause and the others
    must not pay for it: each is embedded again on its own.
    """
    try:
        return list(extractor.embed_features(features))
    except (ModelError, MemoryError):
        pass
    out: list[np.ndarray | str] = []
    for item in features:
        try:
            out.append(extractor.embed_features([item])[0])
        except MemoryError:
            out.append(TOO_LARGE_TO_EMBED)
        except ModelError as exc:
            out.append(str(exc).removeprefix(f"{extractor.model_path}: "))
    return out


def assemble(
    extractor: ONNXFeatureExtractor,
    clips: Sequence[Clip],
    found: dict[int, np.ndarray],
    skipped: dict[int, str],
    cut: set[int],
    limits: ClipLimits,
    warn: Callable[[str], None],
) -> Embedded:
    """The executor's answer from results by clip index: clips in order, one warning for the cut ones."""
    machine, split = (clips[0].machine, clips[0].split) if clips else ("", "")
    long_clips = [clips[i] for i in sorted(cut) if i not in skipped]
    if long_clips:
        seconds = limits.longest / limits.sample_rate
        warn(
            f"{len(long_clips)} {machine} {split} clip(s) longer than {seconds:.2f} s, the encoder's "
            f"longest input: only their first {seconds:.2f} s are embedded (e.g. {long_clips[0].path})"
        )
    order = sorted(found)
    # ``frames`` pooling: rows of clips of other lengths differ in width, NaN-padded to the widest
    embeddings = pad_rows([found[i] for i in order]) if order else np.empty((0, 0), dtype=np.float32)
    return Embedded(
        [clips[i] for i in order],
        embeddings,
        [(clips[i], skipped[i]) for i in sorted(skipped)],
        long_clips,
        getattr(extractor, "frame_dim_", None),
    )
