"""Requests for the same model that wait at the same time are scored together, in one encoder pass.

Scoring clips in one call batches their encoder examples (as ``frozenasd score`` does for a folder),
which is faster per clip than one call per request. The :class:`Batcher` keeps the requests waiting
for a worker by (model, frames); when a worker is free it takes the longest-waiting group, up to
``max_clips`` recordings and its share of the requests in the service (so that every worker gets
some), scores them in one call on the thread pool and hands each request its own results. A single
request on an idle service is scored at once, alone.

With ``one_thread``, a call scored while other requests are in the service (running, waiting or
still uploading) runs its encoder on one thread, and a request alone on every core. Everything but
the scoring itself runs on the event loop's thread, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import math
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
        in_flight: Callable[[], int] | None = None,
        one_thread: bool = False,
    ) -> None:
        """``in_flight``: the requests in the service (admitted, perhaps still uploading); by default
        those the batcher holds."""
        self.registry, self.pool, self.workers, self.max_clips = registry, pool, workers, max_clips
        self.took = took or (lambda seconds: None)
        self.in_flight = in_flight or self._held
        self.one_thread = one_thread
        self.running = 0
        self.running_requests = 0
        self.calls: dict[bool, int] = {False: 0, True: 0}  # scoring calls by one_thread
        self._waiting: OrderedDict[Key, list[_Job]] = OrderedDict()  # oldest group first

    async def score(self, served: Served, uploads: list[Upload], frames: bool) -> list[dict[str, Any]]:
        """The results of ``uploads`` (see :meth:`Registry.score`), scored with others when they wait."""
        job = _Job(served, uploads, asyncio.get_running_loop().create_future())
        self._waiting.setdefault((served.name, frames), []).append(job)
        self._dispatch()
        return await job.future

    def _held(self) -> int:
        return self.running_requests + sum(len(jobs) for jobs in self._waiting.values())

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self.running < self.workers and self._waiting:
            in_flight = max(self.in_flight(), self._held())
            share = math.ceil(in_flight / self.workers)
            key, jobs = next(iter(self._waiting.items()))
            taken, clips = [], 0
            while jobs and (
                not taken or (len(taken) < share and clips + len(jobs[0].uploads) <= self.max_clips)
            ):
                clips += len(jobs[0].uploads)
                taken.append(jobs.pop(0))
            if not jobs:
                del self._waiting[key]
            uploads = [u for job in taken for u in job.uploads]
            one_thread = self.one_thread and in_flight > len(taken)
            self.calls[one_thread] += 1
            self.running += 1
            self.running_requests += len(taken)
            start = time.perf_counter()
            work = loop.run_in_executor(self.pool, self._score, taken[0].served, uploads, key[1], one_thread)
            work.add_done_callback(lambda done, taken=taken, start=start: self._finish(taken, done, start))

    def _score(
        self, served: Served, uploads: list[Upload], frames: bool, one_thread: bool
    ) -> list[dict[str, Any]]:
        return self.registry.score(served, uploads, frames=frames, one_thread=one_thread)

    def _finish(self, taken: list[_Job], done: asyncio.Future, start: float) -> None:
        self.running -= 1
        self.running_requests -= len(taken)
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
