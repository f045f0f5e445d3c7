"""The embedding stage: clips in, embeddings (or the reasons a clip was skipped) out.

``executor`` says how clips are embedded (:class:`LocalExecutor`: in this process, chunk by chunk,
through the cache); ``stage`` opens a run's views and joins them (:class:`Views`).
"""

from frozenasd.embed.executor import Embedded, Executor, LocalExecutor, embed_clips
from frozenasd.embed.stage import Views, open_cache

__all__ = ["Embedded", "Executor", "LocalExecutor", "Views", "embed_clips", "open_cache"]
