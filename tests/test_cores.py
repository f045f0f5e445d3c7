"""BLAS runs on one thread while clips are embedded and scored, and gets its earlier limits back."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import frozenasd.embed.executor as executor
from frozenasd import ScoringModel
from frozenasd.cores import one_blas_thread


def blas_threads() -> set[int]:
    """The thread counts of the BLAS libraries loaded (numpy's wheels bring one)."""
    counts = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    assert counts, "no BLAS library loaded: nothing to limit"
    return counts


@pytest.fixture
def two_blas_threads():
    with threadpool_limits(2, user_api="blas"):
        assert blas_threads() == {2}
        yield


def test_the_scope_sets_one_thread_and_restores_the_earlier_limit(two_blas_threads):
    with one_blas_thread():
        assert blas_threads() == {1}
        np.ones((64, 64)) @ np.ones((64, 64))
    assert blas_threads() == {2}


def test_the_limit_is_restored_when_the_block_fails(two_blas_threads):
    with pytest.raises(RuntimeError), one_blas_thread():
        raise RuntimeError("scoring failed")
    assert blas_threads() == {2}


def test_a_scope_on_a_worker_thread_sets_one_thread_and_restores_the_limit():
    seen: list[set[int]] = []

    def worker() -> None:  # the service scores on worker threads
        with threadpool_limits(2, user_api="blas"):
            with one_blas_thread():
                seen.append(blas_threads())
            seen.append(blas_threads())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert seen == [{1}, {2}]


def test_from_now_keeps_one_thread_for_the_rest_of_the_process():
    code = """
import threading
from threadpoolctl import threadpool_info
from frozenasd.cores import one_blas_thread, one_blas_thread_from_now

def score():  # a scoring worker's scope ends while another may still run
    with one_blas_thread():
        pass

one_blas_thread_from_now()
worker = threading.Thread(target=score)
worker.start()
worker.join()
print(sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}))
"""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[1]"


def test_scoring_runs_the_frontend_and_the_detector_on_one_blas_thread(
    logmel_fan_fitted: Path, tiny_dataset: Path, two_blas_threads, monkeypatch
):
    model = ScoringModel.load(logmel_fan_fitted)
    seen: dict[str, set[int]] = {}
    features, transform = executor.clip_features, model.pipeline.transform

    def spy_features(*args, **kwargs):
        seen["frontend"] = blas_threads()
        return features(*args, **kwargs)

    def spy_transform(x):
        seen["detector"] = blas_threads()
        return transform(x)

    monkeypatch.setattr(executor, "clip_features", spy_features)
    monkeypatch.setattr(model.pipeline, "transform", spy_transform)
    clips = sorted((tiny_dataset / "fan" / "test").glob("*_000[0-2]_*.wav"))
    scored = model.score(clips)
    assert len(scored.paths) == len(clips)
    assert seen == {"frontend": {1}, "detector": {1}}
    assert blas_threads() == {2}
