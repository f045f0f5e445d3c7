"""How clips are embedded: the :class:`Executor` interface and the in-process :class:`LocalExecutor`.

An executor is asked "embed these clips with this extractor" and answers with the embeddings of the
clips that could be used and the ones skipped with the reason (:class:`Embedded`). It reads what the
cache holds and stores what it computes there, so that another executor (one spreading the clips over
workers that each hold an ONNX session, say) plugs into the same stage and leaves the same cache.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm import tqdm

from frozenasd.data.audio import load_audio, samples_at
from frozenasd.data.dcase import Clip
from frozenasd.data.waveforms import WaveClip, read_wave
from frozenasd.embed.cache import EmbeddingCache, clip_identity
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.embed.encoders.pooling import pad_rows
from frozenasd.errors import FrozenASDError, ModelError
from frozenasd.text import printable

__all__ = ["CHUNK", "Embedded", "Executor", "LocalExecutor", "embed_clips"]

CHUNK = 16  # clips read before they are embedded (and cached) together


@dataclass
class Embedded:
    """Embeddings of the clips that could be used, and the ones skipped with the reason."""

    clips: list[Clip]
    embeddings: np.ndarray
    skipped: list[tuple[Clip, str]] = field(default_factory=list)
    cut: list[Clip] = field(default_factory=list)  # longer than the encoder takes: only their start is used
    frame_dim: int | None = None  # values per frame (the extractor's frame_dim_), for frame detectors


class Executor(Protocol):
    """Embeds the clips of one machine and split with one extractor (one view)."""

    def embed(
        self,
        extractor: ONNXFeatureExtractor,
        clips: Sequence[Clip],
        *,
        cache: EmbeddingCache | None = None,
        progress: bool = True,
        desc: str = "clips",
        warn: Callable[[str], None] | None = None,
    ) -> Embedded:
        """The embeddings of the usable ``clips`` in their order, the others skipped with the reason.

        What ``cache`` holds is taken from it and the rest added to it; each unusable clip is reported
        through ``warn``.
        """
        ...


class LocalExecutor:
    """Embeds in this process: reads ``CHUNK`` clips, embeds them in one batch, stores them in the cache."""

    def embed(
        self,
        extractor: ONNXFeatureExtractor,
        clips: Sequence[Clip],
        *,
        cache: EmbeddingCache | None = None,
        progress: bool = True,
        desc: str = "clips",
        warn: Callable[[str], None] | None = None,
    ) -> Embedded:
        """See :func:`embed_clips`."""
        return embed_clips(extractor, clips, cache=cache, progress=progress, desc=desc, warn=warn)

    def __repr__(self) -> str:
        return "LocalExecutor()"


def embed_clips(
    extractor: ONNXFeatureExtractor,
    clips: Sequence[Clip],
    *,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    desc: str = "clips",
    warn: Callable[[str], None] | None = None,
) -> Embedded:
    """Load, featurise and embed ``clips``, taking what ``cache`` holds from it and adding the rest.

    A bad clip is skipped and reported through ``warn``: one that cannot be read, and one the encoder
    fails on (a batch that fails is embedded again clip by clip). ``clips`` are of one machine and
    split; a ``WaveClip`` is embedded from the samples it holds (and never cached). Clips longer
    than the encoder's longest input are listed in ``cut`` and reported once.
    """
    warn = warn or (lambda message: tqdm.write(printable(message), file=sys.stderr))
    if not hasattr(extractor, "session_"):
        extractor.fit()
    sample_rate = extractor.frontend_["sample_rate"]
    longest = extractor.longest_samples()
    shortest = extractor.shortest_samples()
    # Of a longer clip only the start is embedded: reading a second more than that also tells it apart.
    most_seconds = None if longest is None else longest / sample_rate + 1.0
    cut: list[Clip] = []
    machine, split = (clips[0].machine, clips[0].split) if clips else ("", "")
    if any(isinstance(c, WaveClip) for c in clips):
        cache = None  # waveforms in memory have no file to identify them by
    cached = cache.load(machine, split) if cache else {}
    found: dict[int, np.ndarray] = {}
    skipped: list[tuple[Clip, str]] = []
    pending: list[tuple[int, str, np.ndarray]] = []
    bar = tqdm(total=len(clips), desc=desc, unit="clip", disable=not progress, file=sys.stderr)

    def skip(clip: Clip, reason: str) -> None:
        warn(f"skipped {clip.path}: {reason}")
        skipped.append((clip, reason))

    def keep(items: list[tuple[int, str, np.ndarray]], emb: np.ndarray) -> None:
        found.update(zip((i for i, _, _ in items), emb, strict=True))
        if cache:
            cache.store(machine, split, zip((key for _, key, _ in items), emb, strict=True))

    def flush() -> None:  # the bar counts a clip once it is embedded, not when it is read
        if not pending:
            return
        try:
            keep(pending, extractor.embed_features([f for _, _, f in pending]))
        except (ModelError, MemoryError):  # one clip may be the cause: the others must not pay for it
            for item in pending:
                try:
                    keep([item], extractor.embed_features([item[2]]))
                except MemoryError:
                    skip(clips[item[0]], "too large for the encoder to embed in the memory available")
                except ModelError as exc:
                    skip(clips[item[0]], str(exc).removeprefix(f"{extractor.model_path}: "))
        bar.update(len(pending))
        pending.clear()

    with bar:
        for i, clip in enumerate(clips):
            try:
                key = clip_identity(clip.path) if cache else ""
                if key in cached:
                    found[i] = cached[key]
                    if longest is not None and samples_at(clip.path, sample_rate) > longest:
                        cut.append(clip)
                    bar.update()
                    continue
                limits = {"min_samples": shortest, "max_seconds": most_seconds}
                if isinstance(clip, WaveClip):
                    wave = read_wave(clip, sample_rate, **limits)
                else:
                    wave = load_audio(clip.path, sample_rate, **limits)
                features = extractor.features(wave, sample_rate)
            except (FrozenASDError, ValueError, OSError, MemoryError) as exc:
                if isinstance(exc, MemoryError):  # one huge file must not end the run
                    skip(clip, "too large to load into memory")
                else:
                    skip(clip, str(exc).removeprefix(f"{clip.path}: "))
                bar.update()
                continue
            if longest is not None and wave.size > longest:
                cut.append(clip)
            pending.append((i, key, features))
            if len(pending) >= CHUNK:
                flush()
        flush()
    unusable = {c for c, _ in skipped}
    cut = [c for c in cut if c not in unusable]
    if cut:
        seconds = longest / sample_rate
        warn(
            f"{len(cut)} {machine} {split} clip(s) longer than {seconds:.2f} s, the encoder's longest input: "
            f"only their first {seconds:.2f} s are embedded (e.g. {cut[0].path})"
        )
    order = sorted(found)
    # ``frames`` pooling: rows of clips of other lengths differ in width, NaN-padded to the widest
    embeddings = pad_rows([found[i] for i in order]) if order else np.empty((0, 0), dtype=np.float32)
    frame_dim = getattr(extractor, "frame_dim_", None)
    return Embedded([clips[i] for i in order], embeddings, skipped, cut, frame_dim)
