"""Clips read and featurised ahead of the encoder, on threads: same results, same order, bounded."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from frozenasd.backbones import resolve_model
from frozenasd.data.dcase import list_clips
from frozenasd.embed import LocalExecutor, Views
from frozenasd.embed.executor import read_ahead
from frozenasd.settings import RunSettings


def test_results_come_in_order_with_at_most_ahead_computed_beyond_the_caller():
    lock, state = threading.Lock(), {"started": 0, "running": 0, "most_running": 0}
    taken: list[int] = []
    most_ahead = 0

    def compute(i: int) -> int:
        with lock:
            state["started"] += 1
            state["running"] += 1
            state["most_running"] = max(state["most_running"], state["running"])
        time.sleep(0.002 * ((i * 7) % 5))  # finish out of order
        with lock:
            state["running"] -= 1
        return i * i

    for i, value in read_ahead(compute, range(40), threads=3, ahead=5):
        assert value == i * i
        taken.append(i)
        with lock:
            most_ahead = max(most_ahead, state["started"] - len(taken))
    assert taken == list(range(40))
    assert most_ahead <= 5
    assert 1 < state["most_running"] <= 3


def test_without_threads_each_is_computed_when_the_caller_asks():
    seen: list[str] = []

    def compute(i: int) -> int:
        seen.append(f"compute {i}")
        return i

    for i, _ in read_ahead(compute, [3, 1, 2], threads=0, ahead=5):
        seen.append(f"take {i}")
    assert seen == ["compute 3", "take 3", "compute 1", "take 1", "compute 2", "take 2"]


def test_a_failure_surfaces_at_its_place_and_stopping_early_cancels_the_rest():
    started: list[int] = []

    def compute(i: int) -> int:
        started.append(i)
        if i == 4:
            raise RuntimeError("clip 4")
        time.sleep(0.01)
        return i

    taken = []
    with pytest.raises(RuntimeError, match="clip 4"):
        for i, _ in read_ahead(compute, range(1000), threads=2, ahead=3):
            taken.append(i)
    assert taken == [0, 1, 2, 3]
    assert len(started) <= 4 + 1 + 3 + 2  # up to the failure, then at most the window and the running


def test_embedding_with_readers_gives_what_reading_in_turn_gives(tiny_dataset):
    views = Views.open(
        RunSettings(model_path=resolve_model("logmel"), detector="mahalanobis", progress=False)
    )
    clips = list_clips(tiny_dataset, "fan", "test")  # one unreadable among them
    warnings: dict[int, list[str]] = {0: [], 3: []}
    results = {
        n: LocalExecutor(read_threads=n).embed(
            views.extractors[0], clips, progress=False, warn=warnings[n].append
        )
        for n in (0, 3)
    }
    alone, ahead = results[0], results[3]
    assert ahead.clips == alone.clips and len(alone.clips) == len(clips) - 1
    assert np.array_equal(ahead.embeddings, alone.embeddings)
    assert [c.path for c, _ in ahead.skipped] == [c.path for c, _ in alone.skipped]
    assert warnings[3] == warnings[0] and len(warnings[0]) == 1
    assert repr(LocalExecutor()) == "LocalExecutor()"
    assert repr(LocalExecutor(read_threads=2)) == "LocalExecutor(read_threads=2)"
