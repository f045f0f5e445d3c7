"""How the service's batcher groups waiting requests and chooses the encoder's threads for each call."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from frozenasd.service.batching import Batcher
from frozenasd.service.registry import Served, Upload


class HeldRegistry:
    """Records each scoring call (number of uploads, one_thread) and holds it until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []
        self.releases: list[threading.Event] = []
        self.lock = threading.Lock()

    def score(self, served, uploads, *, frames=False, one_thread=False):
        release = threading.Event()
        with self.lock:
            self.calls.append((len(uploads), one_thread))
            self.releases.append(release)
        assert release.wait(30), "the test never released the call"
        return [{"file": u.name} for u in uploads]


async def until(condition, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def served() -> Served:
    return Served("fan", Path("fan.npz"), None, "sha", False)  # type: ignore[arg-type]


def uploads(name: str) -> list[Upload]:
    return [Upload(f"{name}.wav", path=Path(f"{name}.wav"))]


@pytest.mark.parametrize("one_thread", [True, False])
def test_workers_take_their_share_and_calls_beside_others_run_on_one_thread(one_thread):
    registry, in_flight = HeldRegistry(), [1]

    async def scenario() -> list[list[dict]]:
        with ThreadPoolExecutor(2) as pool:
            batcher = Batcher(
                registry, pool, 2, max_clips=16, in_flight=lambda: in_flight[0], one_thread=one_thread
            )
            model = served()
            first = asyncio.ensure_future(batcher.score(model, uploads("a"), False))
            await until(lambda: len(registry.calls) == 1)  # alone in the service: every core
            in_flight[0] = 7  # six more requests arrive at once (the first still runs)
            rest = [asyncio.ensure_future(batcher.score(model, uploads(n), False)) for n in "bcdefg"]
            await until(lambda: len(registry.calls) == 2)  # b, on the free worker, beside a
            await asyncio.sleep(0.05)
            assert len(registry.calls) == 2  # both workers busy: c-g wait
            in_flight[0] = 6
            registry.releases[0].set()  # a done: the free worker takes its share of the six
            await until(lambda: len(registry.calls) == 3)
            registry.releases[1].set()
            await until(lambda: len(registry.calls) == 4)
            for release in registry.releases:
                release.set()
            return await asyncio.gather(first, *rest)

    results = asyncio.run(scenario())
    assert [r[0]["file"] for r in results] == [f"{n}.wav" for n in "abcdefg"]
    assert [size for size, _ in registry.calls] == [1, 1, 3, 2]
    assert [flag for _, flag in registry.calls] == [False] + [one_thread] * 3


def test_one_worker_scores_everything_waiting_in_one_call():
    registry, in_flight = HeldRegistry(), [1]

    async def scenario() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(registry, pool, 1, in_flight=lambda: in_flight[0], one_thread=False)
            model = served()
            first = asyncio.ensure_future(batcher.score(model, uploads("a"), False))
            await until(lambda: len(registry.calls) == 1)
            in_flight[0] = 6
            rest = [asyncio.ensure_future(batcher.score(model, uploads(n), False)) for n in "bcdef"]
            await asyncio.sleep(0.05)
            registry.releases[0].set()
            await until(lambda: len(registry.calls) == 2)
            registry.releases[1].set()
            await asyncio.gather(first, *rest)

    asyncio.run(scenario())
    assert registry.calls == [(1, False), (5, False)]


def test_workers_default_to_one_per_core_and_one_thread_calls_only_without_threads(monkeypatch):
    import frozenasd.service.config as config_module
    from frozenasd.service.config import ServiceConfig

    fitted = (Path("fan.npz"),)
    monkeypatch.setattr(config_module, "usable_cores", lambda: 8)  # as imported there
    auto = ServiceConfig(fitted=fitted)
    assert (auto.scoring_workers, auto.side_by_side_on_one_core) == (8, True)
    threads = ServiceConfig(fitted=fitted, threads=2)
    assert (threads.scoring_workers, threads.side_by_side_on_one_core) == (4, False)
    one = ServiceConfig(fitted=fitted, workers=1)
    assert (one.scoring_workers, one.side_by_side_on_one_core) == (1, False)
    monkeypatch.setattr(config_module, "usable_cores", lambda: 1)
    assert ServiceConfig(fitted=fitted).side_by_side_on_one_core is False
    with pytest.raises(config_module.FrozenASDError, match="--workers must be positive"):
        ServiceConfig(fitted=fitted, workers=0).check()
