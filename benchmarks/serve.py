"""The scoring service's throughput and latency, and its overhead against scoring in-process.

    python benchmarks/serve.py [--clips 32] [--requests 64] [--rounds 3] [--benchmarks-md BENCHMARKS.md]

Writes synthetic 10-second fan clips (16 kHz WAV, as DCASE data): 40 normal ones to fit on and
``--clips`` to score. Fits aiSFX and YAMNet (mean pooling, Mahalanobis) once, untimed. Then:

- in-process: ``ScoringModel.load`` once, and the clips scored one call per clip, and all in one call;
- the service: ``frozenasd serve`` in its own process, serving both models, with its defaults (one
  scoring worker per core; a request alone on every core, calls beside others on one core each) and
  with ``--workers 1`` (every call on every core); clients in this process post the clips
  (multipart) over loopback HTTP, 1 at a time and 8 at a time, ``--requests`` requests per level
  after a warm-up.

Reports requests/s, p50/p99 latency and the overhead: at 1 client the service's mean latency against
one in-process call per clip, at 8 clients its time per clip against the faster in-process way. The
clients share the machine with the service, as a recorder's uploader would. Rounds alternate the
in-process and the service measurements, one service running at a time (started for its turn); the
table gives medians over rounds.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
from _common import measured_now, publish, score_times

from frozenasd import ScoringModel
from frozenasd.data.synth import synthesize

SECTION = "## Scoring service (benchmarks/serve.py)"
BACKBONES = ("aisfx", "yamnet")
LEVELS = (1, 8)
SETTINGS = {"defaults": [], "--workers 1": ["--workers", "1"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(server: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the service did not start")
        time.sleep(0.2)


@contextmanager
def service(options: list[str], fitted: dict[str, Path]) -> Iterator[str]:
    """``frozenasd serve`` with ``options`` serving the ``fitted`` models, up; its URL."""
    port = free_port()
    command = [sys.executable, "-m", "frozenasd", "serve", "--port", str(port), *options]
    command += [arg for path in fitted.values() for arg in ("--fitted", str(path))]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(server, url)
        yield url
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(60)


def load(url: str, name: str, clips: list[Path], clients: int, n: int) -> dict[str, float]:
    """``n`` requests from ``clients`` threads: requests/s, p50 and p99 latency (s), errors."""
    bodies = [(c.name, c.read_bytes()) for c in clips]
    limits = httpx.Limits(max_connections=clients)
    with httpx.Client(base_url=url, timeout=300, limits=limits) as client:

        def one(k: int) -> tuple[float, int]:
            start = time.perf_counter()
            response = client.post(f"/v1/models/{name}/score", files={"file": bodies[k % len(bodies)]})
            return time.perf_counter() - start, response.status_code

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, range(2 * clients)))  # warm-up
            start = time.perf_counter()
            answers = list(pool.map(one, range(n)))
            seconds = time.perf_counter() - start
    latencies = sorted(t for t, _ in answers)
    return {
        "rps": n / seconds,
        "per_clip": seconds / n,
        "mean": statistics.fmean(latencies),
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "errors": sum(status != 200 for _, status in answers),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=32, help="distinct clips posted (default: 32)")
    parser.add_argument("--requests", type=int, default=64, help="requests per level (default: 64)")
    parser.add_argument("--rounds", type=int, default=3, help="measurement rounds (default: 3)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the clips (default: temporary)")
    parser.add_argument("--benchmarks-md", type=Path, default=None, help="write the section to this file")
    args = parser.parse_args(argv)

    if args.work is not None:
        return measure(args, args.work)
    with tempfile.TemporaryDirectory(prefix="frozenasd-serve-bench-") as work:
        return measure(args, Path(work))


def measure(args: argparse.Namespace, work: Path) -> int:
    """Write the clips and models into ``work``, measure, and publish the section."""
    synthesize(
        work / "data", ["fan"], seed=0, n_train_source=40, n_train_target=0,
        n_test_per_cell=max(1, args.clips // 4), duration_s=10.0, progress=False,
    )  # fmt: skip
    train = sorted((work / "data" / "fan" / "train").glob("*.wav"))
    clips = sorted((work / "data" / "fan" / "test").glob("*.wav"))[: args.clips]
    fitted = {}
    for backbone in BACKBONES:
        fitted[backbone] = work / f"{backbone}.npz"
        if not fitted[backbone].is_file():
            model = ScoringModel.fit(train, backbone, machine="fan", detector="mahalanobis", progress=False)
            model.save(fitted[backbone])
    models = {b: ScoringModel.load(fitted[b]) for b in BACKBONES}
    for model in models.values():
        model.score(clips[:2])  # warm-up

    # rounds alternate in-process and service measurements, so that both meet the machine's moods; one
    # service runs at a time (an idle second one was seen to change the first's single-client latency)
    local: dict[str, list[dict[str, float]]] = {b: [] for b in BACKBONES}
    served: dict[tuple[str, str, int], list[dict[str, float]]] = {
        (b, label, c): [] for b in BACKBONES for label in SETTINGS for c in LEVELS
    }
    for _ in range(args.rounds):
        for backbone in BACKBONES:
            local[backbone].append(score_times(models[backbone], clips))
        for label, options in SETTINGS.items():
            with service(options, fitted) as url:
                for backbone in BACKBONES:
                    for clients in LEVELS:
                        served[(backbone, label, clients)].append(
                            load(url, backbone, clips, clients, args.requests)
                        )

    rows = []
    for (backbone, label, clients), rounds in served.items():
        r = {k: statistics.median(x[k] for x in rounds) for k in rounds[0]}
        r["errors"] = sum(x["errors"] for x in rounds)
        ref = {k: statistics.median(x[k] for x in local[backbone]) for k in ("one", "all")}
        if clients == 1:
            reference, overhead = ref["one"], r["mean"] / ref["one"] - 1
        else:
            reference = min(ref.values())
            overhead = r["per_clip"] / reference - 1
        rows.append(
            f"| {backbone} | {label} | {clients} | {r['rps']:.1f} | {1000 * r['p50']:.0f} "
            f"| {1000 * r['p99']:.0f} | {1000 * reference:.0f} | {100 * overhead:+.1f} % | {r['errors']} |"
        )
    kb = round(statistics.fmean(c.stat().st_size for c in clips) / 1000)
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"  # uvicorn's choice
    setup = (
        f"{measured_now()}: "
        f"`python benchmarks/serve.py --clips {args.clips} --requests {args.requests} "
        f"--rounds {args.rounds}`. `frozenasd serve` "
        "serves an aiSFX and a YAMNet model (mean pooling, Mahalanobis) fitted on synthetic fan clips, "
        "with its defaults (a scoring worker per core; a request alone runs its encoder on every core, "
        "calls made beside other requests on one core each) and with `--workers 1` (every call on every "
        f"core), uvicorn parsing HTTP with {parser}; clients in another process post "
        f"{args.clips} synthetic 10-second 16 kHz WAV clips ({kb} KB each, multipart) over loopback HTTP, "
        f"{args.requests} requests per row after a warm-up, 1 or 8 at a time, on the same cores as the "
        "service. In-process reference: `ScoringModel.load` once, then at 1 client one `score` call per "
        "clip (a caller scoring each recording as it comes), at 8 clients the faster of that and all clips "
        "in one call (batched). Overhead: at 1 client the mean latency against the in-process time per "
        "clip; at 8 clients the service's time per clip (1 / requests per second) against the reference. "
        "Each round measures the in-process references, then starts each service setting in turn (one "
        "service at a time) and measures both models; the table gives the medians over rounds (errors: "
        "their sum)."
    )
    header = (
        "| model | service settings | clients | requests/s | p50 latency ms | p99 latency ms "
        "| in-process ms per clip | overhead | errors |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    text = "\n\n".join([SECTION, setup, header + "\n" + "\n".join(rows)]) + "\n"
    publish(text, SECTION, args.benchmarks_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
