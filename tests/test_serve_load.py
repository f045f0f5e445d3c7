"""The scoring service under load, over real HTTP: many concurrent requests, a full queue, a shutdown.

Bounded: 300 requests from 8 client threads (the service scores with the fast log-mel view), a queue
of one held full by a scorer that waits for the test, and a shutdown while a request is in flight.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")
httpx = pytest.importorskip("httpx2")

from service_server import running  # noqa: E402

from frozenasd import ScoringModel  # noqa: E402
from frozenasd.service.config import ServiceConfig  # noqa: E402
from frozenasd.service.registry import Registry  # noqa: E402

N_REQUESTS, CLIENTS = 300, 8


@pytest.fixture(scope="module")
def fan(tiny_dataset, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("served") / "fan.npz"
    train = tiny_dataset / "fan" / "train"
    ScoringModel.fit(train, "logmel", machine="fan", pooling="max", detector="mahalanobis").save(path)
    return path


@pytest.fixture
def registry(fan) -> Registry:
    return Registry.load([fan])


class HeldScorer:
    """Stands in for ``Registry.score``: signals when a request reaches it, then waits to be released."""

    def __init__(self, real) -> None:
        self.real, self.reached, self.release = real, threading.Event(), threading.Event()

    def __call__(self, *args, **kwargs):
        self.reached.set()
        assert self.release.wait(60), "the test never released the scorer"
        return self.real(*args, **kwargs)


def test_300_requests_from_8_clients_all_scored_without_an_error_some_together(fan, tiny_dataset):
    files = sorted((tiny_dataset / "fan" / "test").glob("*_000[0-9]_*.wav"))
    expected = dict(zip((f.name for f in files), ScoringModel.load(fan).score(files).scores, strict=True))
    bodies = {f.name: f.read_bytes() for f in files}
    sizes: list[int] = []
    registry = Registry.load([fan], one_thread=True)
    real = registry.score
    registry.score = lambda served, uploads, **kw: sizes.append(len(uploads)) or real(served, uploads, **kw)
    config = ServiceConfig(fitted=(fan,), queue=CLIENTS, workers=2)
    assert config.side_by_side_on_one_core
    with running(registry, config) as server, httpx.Client(base_url=server.url, timeout=60) as client:

        def one(k: int) -> tuple[str, int, dict]:
            name = files[k % len(files)].name
            response = client.post("/v1/models/fan/score", files={"file": (name, bodies[name])})
            return name, response.status_code, response.json()

        start = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(one, range(N_REQUESTS)))
        seconds = time.perf_counter() - start
        metrics = client.get("/metrics").text
        for name in list(bodies)[:3]:  # one at a time: each alone in the service
            alone = client.post("/v1/models/fan/score", files={"file": (name, bodies[name])})
            assert alone.status_code == 200
        after = client.get("/metrics").text
    errors = [(name, status, body) for name, status, body in answers if status != 200]
    assert errors == [], errors[:3]
    for name, _, body in answers:
        assert body["score"] == pytest.approx(float(expected[name]), abs=1e-9, rel=0)
    assert seconds < 120, f"{N_REQUESTS} requests took {seconds:.1f} s"
    assert f'frozenasd_recordings_scored_total{{model="fan"}} {N_REQUESTS}' in metrics
    assert "frozenasd_queue_depth 0" in metrics
    assert sum(sizes) == N_REQUESTS + 3 and max(sizes) > 1  # requests that waited together: one call

    def count(text: str, kind: str) -> int:
        return int(re.search(rf'frozenasd_scoring_calls_total{{threads="{kind}"}} (\d+)', text)[1])

    calls = {kind: [count(metrics, kind), count(after, kind)] for kind in ("all", "one")}
    assert calls["one"][0] > 0  # beside other requests: one thread per call
    assert calls["all"][1] == calls["all"][0] + 3 and calls["one"][1] == calls["one"][0]
    assert calls["all"][0] + calls["one"][0] == len(sizes) - 3
    print(
        f"{N_REQUESTS} requests at {CLIENTS} concurrent: {seconds:.2f} s, "
        f"{N_REQUESTS / seconds:.0f} requests/s"
    )


def test_a_full_queue_answers_503_with_retry_after_and_frees_up(registry, fan, tiny_dataset):
    clip = next((tiny_dataset / "fan" / "test").glob("*normal_0001*.wav")).read_bytes()
    held = HeldScorer(registry.score)
    registry.score = held  # this registry only
    with running(registry, ServiceConfig(fitted=(fan,), queue=1)) as server:
        with (
            httpx.Client(base_url=server.url, timeout=60) as first,
            httpx.Client(base_url=server.url) as other,
        ):
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(first.post, "/v1/models/fan/score", files={"file": ("a.wav", clip)})
                assert held.reached.wait(30)
                refused = other.post("/v1/models/fan/score", files={"file": ("b.wav", clip)})
                assert refused.status_code == 503 and refused.json()["error"] == "busy"
                assert int(refused.headers["retry-after"]) >= 1
                assert "frozenasd_queue_depth 1" in other.get("/metrics").text
                assert other.get("/healthz").status_code == 200  # the event loop is free meanwhile
                held.release.set()
                assert pending.result(60).status_code == 200
            again = other.post("/v1/models/fan/score", files={"file": ("c.wav", clip)})
            assert again.status_code == 200
            metrics = other.get("/metrics").text
    assert 'frozenasd_errors_total{model="fan",kind="busy"} 1' in metrics
    assert "frozenasd_queue_depth 0" in metrics


def test_a_shutdown_lets_the_request_in_flight_finish(registry, fan, tiny_dataset):
    clip = next((tiny_dataset / "fan" / "test").glob("*anomaly_0001*.wav")).read_bytes()
    held = HeldScorer(registry.score)
    registry.score = held
    with running(registry, ServiceConfig(fitted=(fan,))) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client, ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.post, "/v1/models/fan/score", files={"file": ("a.wav", clip)})
            assert held.reached.wait(30)
            server.server.should_exit = True  # what SIGTERM does
            deadline = time.monotonic() + 10
            refused = False
            while not refused and time.monotonic() < deadline:  # it stops listening first
                try:
                    httpx.get(f"{server.url}/healthz", timeout=1)
                    time.sleep(0.05)
                except httpx.ConnectError:
                    refused = True
            assert refused, "the service kept accepting connections while shutting down"
            assert server.thread.is_alive()  # still finishing the request in flight
            held.release.set()
            response = pending.result(60)
        server.thread.join(30)
    assert response.status_code == 200 and response.json()["anomalous"] is True
    assert not server.thread.is_alive()
