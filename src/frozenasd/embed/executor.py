"""How clips are embedded: the :class:`Executor` interface and the in-process :class:`LocalExecutor`.

An executor is asked "embed these clips with this extractor" and answers with the embeddings of the
clips that could be used and the ones skipped with the reason (:class:`Embedded`). It reads what the
cache holds and stores what it computes there, so that another executor (one spreading the clips over
workers that each hold an ONNX session, say) plugs into the same stage and leaves the same cache.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Protocol, TypeVar

import numpy as np
from tqdm import tqdm

from frozenasd.cores import one_blas_thread, usable_cores
from frozenasd.data.dcase import Clip
from frozenasd.data.file_bytes import held_in_memory
from frozenasd.embed.cache import EmbeddingCache
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.embed.steps import (  # Embedded is defined there, beside the steps that build it
    ClipLimits,
    Embedded,
    Featured,
    assemble,
    clip_features,
    embed_or_reasons,
    skip_message,
    take_cached,
)
from frozenasd.text import printable

__all__ = ["CHUNK", "Embedded", "Executor", "LocalExecutor", "embed_clips"]

CHUNK = 16  # clips read before they are embedded (and cached) together
MAX_READERS = 4


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
    """Embeds in this process: reads ``CHUNK`` clips, embeds them in one batch, stores them in the cache.

    ``read_threads``: threads reading and featurising the next clips while the encoder runs (default:
    :func:`default_read_threads`; 0 reads in the calling thread).
    """

    def __init__(self, read_threads: int | None = None) -> None:
        self.read_threads = read_threads

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
        return embed_clips(
            extractor,
            clips,
            cache=cache,
            progress=progress,
            desc=desc,
            warn=warn,
            read_threads=self.read_threads,
        )

    def __repr__(self) -> str:
        given = "" if self.read_threads is None else f"read_threads={self.read_threads}"
        return f"LocalExecutor({given})"


def default_read_threads() -> int:
    """Threads that read clips ahead of the encoder by default: one per core, at most ``MAX_READERS``.

    Measured on 2 cores (32 ten-second clips): two readers embed aiSFX 6 %, YAMNet 8 % and the
    log-mel view 39 % faster than reading in turn with the encoder, and one reader only 2-3 %: the
    frontends are single-threaded, and two of them fill what the encoder's threads leave idle.
    """
    return min(MAX_READERS, usable_cores())


def embed_clips(
    extractor: ONNXFeatureExtractor,
    clips: Sequence[Clip],
    *,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    desc: str = "clips",
    warn: Callable[[str], None] | None = None,
    read_threads: int | None = None,
) -> Embedded:
    """Load, featurise and embed ``clips``, taking what ``cache`` holds from it and adding the rest.

    A bad clip is skipped and reported through ``warn``: one that cannot be read, and one the encoder
    fails on (a batch that fails is embedded again clip by clip). ``clips`` are of one machine and
    split; a ``WaveClip`` or ``BytesClip`` is embedded from the audio it holds (and never cached).
    Clips longer than the encoder's longest input are listed in ``cut`` and reported once. ``read_threads``
    threads read and featurise up to ``CHUNK`` clips ahead while the encoder runs (default:
    :func:`default_read_threads`); the results and warnings come in the clips' order either way.
    """
    warn = warn or default_warn
    if not hasattr(extractor, "session_"):
        extractor.fit()
    limits = ClipLimits.of(extractor)
    machine, split = (clips[0].machine, clips[0].split) if clips else ("", "")
    if any(map(held_in_memory, clips)):
        cache = None  # clips held in memory have no file to identify them by
    skipped: dict[int, str] = {}
    pending: list[tuple[int, str, np.ndarray]] = []
    bar = tqdm(total=len(clips), desc=desc, unit="clip", disable=not progress, file=sys.stderr)

    def skip(i: int, reason: str) -> None:
        warn(skip_message(clips[i].path, reason))
        skipped[i] = reason

    def flush() -> None:  # the bar counts a clip once it is embedded, not when it is read
        if not pending:
            return
        results = embed_or_reasons(extractor, [f for _, _, f in pending])
        kept = []
        for (i, key, _), result in zip(pending, results, strict=True):
            if isinstance(result, str):
                skip(i, result)
            else:
                found[i] = result
                kept.append((key, result))
        if cache:
            cache.store(machine, split, kept)
        bar.update(len(pending))
        pending.clear()

    with bar, one_blas_thread():  # the frontend's products on one thread: the encoder has the cores
        found, cut, keys = take_cached(clips, cache.load(machine, split) if cache else None, limits, skip)
        bar.update(len(found) + len(skipped))
        todo = [i for i in range(len(clips)) if i not in found and i not in skipped]
        threads = default_read_threads() if read_threads is None else read_threads

        def read(i: int) -> Featured | str:
            return clip_features(extractor, clips[i], limits)

        for i, featured in read_ahead(read, todo, threads, CHUNK):
            key = keys.get(i, "")
            if isinstance(featured, str):
                skip(i, featured)
                bar.update()
                continue
            if featured.cut:
                cut.add(i)
            pending.append((i, key, featured.features))
            if len(pending) >= CHUNK:
                flush()
        flush()
    return assemble(extractor, clips, found, skipped, cut, limits, warn)


def default_warn(message: str) -> None:
    """Print a warning above the progress bars."""
    tqdm.write(printable(message), file=sys.stderr)


T = TypeVar("T")


def read_ahead(
    compute: Callable[[int], T], indices: Iterable[int], threads: int, ahead: int
) -> Iterator[tuple[int, T]]:
    """``(i, compute(i))`` for each index in order; with ``threads``, computed that many at a time on
    a pool, up to ``ahead`` indices beyond the one the caller holds, while the caller works on it."""
    if threads < 1:
        for i in indices:
            yield i, compute(i)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="frozenasd-read")
    upcoming = iter(indices)
    queue = deque((i, pool.submit(compute, i)) for i in islice(upcoming, max(ahead, 1)))
    try:
        while queue:
            i, future = queue.popleft()
            following = next(upcoming, None)
            if following is not None:
                queue.append((following, pool.submit(compute, following)))
            yield i, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
