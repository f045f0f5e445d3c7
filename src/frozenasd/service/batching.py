"""Requests for the same model that wait at the same time are scored together, in one encoder pass.

Scoring clips in one call batches their encoder examples (as ``frozenasd score`` does for a folder),
which is faster per clip than one call per request. The :class:`Batcher` keeps the requests waiting
for a worker by (model, frames); when a worker is free it takes the longest-waiting group, up to
``max_clips`` recordings, scores them in one call on the thread pool and hands each request its own
results. A single request on an idle service is scored at once, alone. Everything but the scoring
itself runs on the event loop's thread, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from frozenasd.service.registry import Registry, Served, Upload

Key = tuple[str, bool]


@dataclass
class _Job:
    served: Served
    uploads: list[Upload]
    future: asyncio.Future


class Batcher:
    """Scores waiting requests of one model together on ``workers`` threads of ``pool``."""

    def __init__(
        self,
        registry: Registry,
        pool: Executor,
        workers: int,
        max_clips: int = 16,
        took: Callable[[float], None] | None = None,
    ) -> None:
        self.registry, self.pool, self.workers, self.max_clips = registry, pool, workers, max_clips
        self.took = took or (lambda seconds: None)
        self.running = 0
        self._waiting: OrderedDict[Key, list[_Job]] = OrderedDict()  # oldest group first

    async def score(self, served: Served, uploads: list[Upload], frames: bool) -> list[dict[str, Any]]:
        """The results of ``uploads`` (see :meth:`Registry.score`), scored with others when they wait."""
        job = _Job(served, uploads, asyncio.get_running_loop().create_future())
        self._waiting.setdefault((served.name, frames), []).append(job)
        self._dispatch()
        return await job.future

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self.running < self.workers and self._waiting:
            key, jobs = next(iter(self._waiting.items()))
            taken, clips = [], 0
            while jobs and (not taken or clips + len(jobs[0].uploads) <= self.max_clips):
                clips += len(jobs[0].uploads)
                taken.append(jobs.pop(0))
            if not jobs:
                del self._waiting[key]
            uploads = [u for job in taken for u in job.uploads]
            self.running += 1
            start = time.perf_counter()
            work = loop.run_in_executor(self.pool, self._score, taken[0].served, uploads, key[1])
            work.add_done_callback(lambda done, taken=taken, start=start: self._finish(taken, done, start))

    def _score(self, served: Served, uploads: list[Upload], frames: bool) -> list[dict[str, Any]]:
        return self.registry.score(served, uploads, frames=frames)

    def _finish(self, taken: list[_Job], done: asyncio.Future, start: float) -> None:
        self.running -= 1
        self.took(time.perf_counter() - start)
        error = done.exception()
        results = None if error is not None else done.result()
        offset = 0
        for job in taken:
            if job.future.done():  # its request went away
                offset += len(job.uploads)
                continue
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(results[offset : offset + len(job.uploads)])
            offset += len(job.uploads)
        self._dispatch()
