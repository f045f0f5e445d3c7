"""The embedding stage: a run's views opened once, each clip embedded in every view, the views joined.

:class:`Views` holds one extractor and cache per distinct view and an ``Executor`` (see
:mod:`frozenasd.embed.executor`) that does the embedding, in this process by default: a workflow asks for
"these clips, embedded" and gets arrays or failures, whichever executor runs them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from frozenasd.data.dcase import Clip
from frozenasd.embed.cache import EmbeddingCache
from frozenasd.embed.encoders.device import CPU
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.embed.executor import Embedded, Executor, LocalExecutor
from frozenasd.hashing import file_sha256
from frozenasd.text import printable

if TYPE_CHECKING:
    from frozenasd.settings import RunSettings

__all__ = ["Views", "open_cache"]


def open_cache(settings: RunSettings, extractor: ONNXFeatureExtractor) -> EmbeddingCache | None:
    """The cache for this model and these embedding settings; ``None`` when caching is off."""
    if settings.cache_dir is None:
        return None
    shaping = {
        "frontend": extractor.frontend_,
        "output": extractor.output_name_,
        "pooling": extractor.pooling_,
        "normalise": extractor.normalise,
        "target_frames": extractor.target_frames,
    }
    provider = getattr(extractor, "provider_", CPU)
    if provider != CPU:  # another provider's numbers differ slightly: its own entries (CPU keys as before)
        shaping["provider"] = provider
    return EmbeddingCache(settings.cache_dir, file_sha256(extractor.model_path), shaping)


@dataclass
class Views:
    """The embedding views of a run, opened: one extractor and cache per distinct view.

    ``branch_views`` gives, per branch (one for a single-view run), the view it reads; branches
    with the same view share its embeddings. ``executor`` embeds the clips (default: in this process).
    """

    extractors: list[ONNXFeatureExtractor]
    caches: list[EmbeddingCache | None]
    branch_views: list[int]
    labels: list[str]
    executor: Executor = field(default_factory=LocalExecutor)

    @classmethod
    def open(cls, settings: RunSettings, executor: Executor | None = None) -> Views:
        """Open every view's model (a model that does not load stops here, before any audio)."""
        executor = executor or LocalExecutor()
        if not settings.branches:
            extractor = settings.extractor().fit()
            return cls([extractor], [open_cache(settings, extractor)], [0], [""], executor)
        seen: dict[tuple[str, str, str], int] = {}
        extractors, caches, labels = [], [], []
        for branch in settings.branches:
            if branch.view not in seen:
                seen[branch.view] = len(extractors)
                extractor = settings.extractor(branch).fit()
                extractors.append(extractor)
                caches.append(open_cache(settings, extractor))
                labels.append(f"{branch.model} {branch.pooling}")
        return cls(extractors, caches, [seen[b.view] for b in settings.branches], labels, executor)

    def without_cache(self) -> Views:
        """The same views reading and writing no cache."""
        return Views(
            self.extractors, [None] * len(self.extractors), self.branch_views, self.labels, self.executor
        )

    def embed(
        self, clips: Sequence[Clip], *, progress: bool = True, desc: str = "clips"
    ) -> tuple[Embedded, tuple[int, ...]]:
        """Embed ``clips`` in every view; the clips usable in all, each branch's columns side by side.

        Returns the joined embeddings and the column bounds of the branches (branch ``k`` reads
        ``bounds[k]:bounds[k + 1]``). A clip unusable in any view is skipped, with that view's reason;
        each reason is reported once.
        """
        told: set[str] = set()

        def warn_once(message: str) -> None:
            if message not in told:
                told.add(message)
                tqdm.write(printable(message), file=sys.stderr)

        per_view = [
            self.executor.embed(
                extractor,
                clips,
                cache=cache,
                progress=progress,
                desc=f"{desc} {label}".rstrip(),
                warn=warn_once,
            )
            for extractor, cache, label in zip(self.extractors, self.caches, self.labels, strict=True)
        ]
        if len(per_view) == 1:
            only = per_view[0]
            width = only.embeddings.shape[1] if only.clips else 0
            return only, (0, width)
        rows = [{clip: i for i, clip in enumerate(e.clips)} for e in per_view]
        usable = [c for c in clips if all(c in r for r in rows)]
        reasons: dict[Clip, str] = {}
        for e in per_view:
            for clip, reason in e.skipped:
                reasons.setdefault(clip, reason)
        skipped = [(c, reasons[c]) for c in clips if c in reasons]
        long_clips = {c for e in per_view for c in e.cut}
        cut = [c for c in clips if c in long_clips and c not in reasons]
        if not usable:
            return Embedded([], np.empty((0, 0), dtype=np.float32), skipped, cut), (0,)
        blocks = [per_view[v].embeddings[[rows[v][c] for c in usable]] for v in self.branch_views]
        bounds = tuple(int(b) for b in np.cumsum([0] + [b.shape[1] for b in blocks]))
        return Embedded(usable, np.hstack(blocks), skipped, cut), bounds

    def records(self) -> list[dict[str, Any]]:
        """Per view: its encoder's metadata, frontend and pooling, for the run's record."""
        return [
            {
                "model_file": str(e.model_path),
                "encoder": e.metadata_.get("model", {}),
                "frontend": e.frontend_,
                "pooling": e.pooling_,
                "normalise": e.normalise,
                "provider": e.provider_,
            }
            for e in self.extractors
        ]
