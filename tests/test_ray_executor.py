"""The Ray executor on a real local Ray cluster: the local executor's answers, cache and outputs.

One cluster of 2 CPUs on 127.0.0.1 is started in this process for the module; the test of
``--ray-address`` starts another one with ``ray start --head`` and ends it by its process group.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# A Ray on one machine stays on 127.0.0.1 (set before Ray is imported; see ray_executor.LOOPBACK_ONLY)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from conftest import write_tiny_dataset  # noqa: E402

from frozenasd.backbones import resolve_model  # noqa: E402
from frozenasd.cli import main  # noqa: E402
from frozenasd.data.dcase import list_clips  # noqa: E402
from frozenasd.embed import LocalExecutor, Views  # noqa: E402
from frozenasd.embed.ray_executor import EncoderActor, RayExecutor  # noqa: E402
from frozenasd.errors import ModelError, SettingsError  # noqa: E402
from frozenasd.settings import RunSettings  # noqa: E402
from frozenasd.workflows.run import run  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs, on the loopback address, for this module's tests."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def logmel() -> Path:
    return resolve_model("logmel")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """fan: 21 training clips (one too short), 41 test clips (one unreadable)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("raydata") / "dataset")


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> list:
    """96 clips of 3 s, six blocks of 16: enough to keep two workers busy."""
    folder = tmp_path_factory.mktemp("many") / "data"
    train = folder / "pump" / "train"
    train.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(96):
        wave = (0.1 * rng.standard_normal(48000)).astype(np.float32)
        sf.write(train / f"section_00_source_train_normal_{i:04d}_noAttribute.wav", wave, 16000)
    return list_clips(folder, "pump", "train")


def settings(model: Path, cache: Path | None) -> RunSettings:
    return RunSettings(model_path=model, detector="mahalanobis", progress=False, cache_dir=cache)


def cached_rows(cache, clip) -> list[str]:
    """Every row id stored in the cache's chunks for the clip's machine and split (duplicates kept)."""
    ids: list[str] = []
    for chunk in sorted((cache.folder / clip.machine / clip.split).glob("chunk_*.npz")):
        with np.load(chunk, allow_pickle=False) as data:
            ids += data["ids"].tolist()
    return ids


def embed_both(model, clips, executor, cache_dir=None):
    """The same clips embedded by the local executor and by ``executor``, with the warnings of each."""
    out = []
    for ex in (LocalExecutor(), executor):
        views = Views.open(settings(model, cache_dir and cache_dir / type(ex).__name__), ex)
        messages: list[str] = []
        embedded = ex.embed(
            views.extractors[0], clips, cache=views.caches[0], progress=False, warn=messages.append
        )
        out.append((embedded, messages))
    return out


def test_ray_embeddings_skipped_clips_and_cache_keys_equal_the_local_executors(
    cluster, logmel, dataset, tmp_path
):
    clips = list_clips(dataset, "fan", "test")

    class Steady(EncoderActor):  # a batch takes long enough that the next one goes to the other worker
        def __call__(self, batch):
            time.sleep(0.5)
            return super().__call__(batch)

    executor = RayExecutor(workers=2, encoder_class=Steady)
    (local, local_messages), (remote, remote_messages) = embed_both(logmel, clips, executor, tmp_path)
    assert executor.last_run.sent == len(clips)
    assert len(executor.last_run.by_worker) == 2, executor.last_run  # both workers embedded clips
    assert sum(executor.last_run.by_worker.values()) == len(clips)
    assert remote.clips == local.clips and len(remote.clips) == len(clips) - 1
    assert np.abs(remote.embeddings - local.embeddings).max() <= 1e-5
    bad = dataset / "fan" / "test" / "section_00_source_test_normal_9999_noAttribute.wav"
    assert [(c.path, r) for c, r in remote.skipped] == [(bad, local.skipped[0][1])]
    assert remote_messages == local_messages and remote_messages[0].startswith(f"skipped {bad}: ")
    caches = [Views.open(settings(logmel, tmp_path / n)).caches[0] for n in ("LocalExecutor", "RayExecutor")]
    assert caches[0].folder.name == caches[1].folder.name  # the same key: runs can switch executors
    rows = cached_rows(caches[1], clips[0])
    assert len(rows) == len(clips) - 1 and sorted(rows) == sorted(cached_rows(caches[0], clips[0]))


def test_a_worker_killed_mid_run_loses_no_clip_and_counts_none_twice(cluster, logmel, many, tmp_path):
    marker = tmp_path / "killed"

    class DiesOnce(EncoderActor):
        def __call__(self, batch):
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return super().__call__(batch)

    executor = RayExecutor(workers=2, encoder_class=DiesOnce)
    (local, _), (remote, _) = embed_both(logmel, many, executor, tmp_path)
    assert marker.exists()
    assert int(marker.read_text()) not in executor.last_run.by_worker  # its batch was run again elsewhere
    assert sum(executor.last_run.by_worker.values()) == len(many)
    assert remote.clips == local.clips == many
    assert np.abs(remote.embeddings - local.embeddings).max() <= 1e-5
    cache = Views.open(settings(logmel, tmp_path / "RayExecutor")).caches[0]
    rows = cached_rows(cache, many[0])
    assert len(rows) == len(set(rows)) == len(many)


def test_clips_in_the_cache_are_not_sent_to_ray(cluster, logmel, many, tmp_path):
    views = Views.open(settings(logmel, tmp_path / "cache"))
    LocalExecutor().embed(views.extractors[0], many[:40], cache=views.caches[0], progress=False)
    executor = RayExecutor(workers=2)
    resumed = executor.embed(views.extractors[0], many, cache=views.caches[0], progress=False)
    assert executor.last_run.sent == len(many) - 40
    assert sum(executor.last_run.by_worker.values()) == len(many) - 40
    fresh = LocalExecutor().embed(views.extractors[0], many, progress=False)
    assert resumed.clips == fresh.clips
    assert np.abs(resumed.embeddings - fresh.embeddings).max() <= 1e-5
    again = RayExecutor(workers=2)
    again.embed(views.extractors[0], many, cache=views.caches[0], progress=False)
    assert again.last_run.sent == 0


def test_a_node_whose_model_file_differs_stops_the_job_naming_it(cluster, logmel, dataset):
    class OtherModel(EncoderActor):  # as on a node where the file at that path is another model
        def __init__(self, params, model_sha256):
            super().__init__(params, "0" * 64)

    views = Views.open(settings(logmel, None))
    with pytest.raises(ModelError, match=rf"{logmel}: on node .* differs from the driver's"):
        RayExecutor(workers=1, encoder_class=OtherModel).embed(
            views.extractors[0], list_clips(dataset, "fan", "train"), progress=False
        )


def test_fit_and_score_with_the_ray_executor_give_the_local_models_scores(cluster, logmel, dataset, tmp_path):
    common = ["--model", str(logmel), "--detector", "mahalanobis", "--no-progress", "--no-cache"]
    for name, extra in (("local", []), ("ray", ["--executor", "ray", "--workers", "2"])):
        fitted = tmp_path / f"{name}.npz"
        fit = ["fit", "--data", str(dataset), "--machine", "fan", "-o", str(fitted), *common, *extra]
        assert main(fit) == 0
        score = ["score", str(dataset / "fan" / "test"), "--fitted", str(fitted), "--no-progress"]
        assert main([*score, "--csv", str(tmp_path / f"{name}.csv"), *extra]) == 1  # anomalies found
    assert (tmp_path / "local.csv").read_bytes() == (tmp_path / "ray.csv").read_bytes()
    assert len((tmp_path / "ray.csv").read_text().splitlines()) == 1 + 40


def same_outputs(a: Path, b: Path) -> bool:
    """Scores CSVs, submission files and metrics: byte for byte."""
    names = sorted(
        str(p.relative_to(a))
        for p in a.rglob("*")
        if p.name.endswith(".csv") or p.name == "metrics.txt" or p.name == "summary.md"
    )
    assert any(n.startswith("anomaly_score_") for n in names) and any("metrics.txt" in n for n in names)
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head():
    """``ray start --head`` on 127.0.0.1 (2 CPUs), ended by its process group afterwards."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every process of the cluster on 127.0.0.1
    ray_cli = Path(sys.executable).with_name("ray")
    command = [str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=2"]
    command += ["--node-ip-address=127.0.0.1", "--include-dashboard=false", f"--temp-dir={temp}"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("ray start --head did not open its port in 60 s")
        yield f"127.0.0.1:{port}", env
    finally:
        # the whole group at once: a SIGTERM would have the head drain for 30 s first
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_running_cluster_by_address_and_a_killed_driver_resumed_from_the_cache(
    cluster, head, logmel, dataset, many, tmp_path
):
    address, env = head
    cli = [sys.executable, "-m", "frozenasd"]
    ray_options = ["--executor", "ray", "--ray-address", address, "--workers", "2"]
    common = ["--model", str(logmel), "--detector", "mahalanobis", "--no-progress"]
    # `--ray-address auto` finds the running cluster (here through RAY_ADDRESS, as Ray looks first)
    auto = ["--executor", "ray", "--ray-address", "auto", "--workers", "2"]
    done = subprocess.run(
        [
            *cli,
            "run",
            "--data",
            str(dataset),
            "-o",
            str(tmp_path / "ray"),
            "--no-cache",
            *common,
            *auto,
        ],
        env={**env, "RAY_ADDRESS": address},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    run(dataset, ["fan"], tmp_path / "local", settings(logmel, None))
    assert same_outputs(tmp_path / "local", tmp_path / "ray")

    # the driver of `frozenasd embed` killed (kill -9) once its first block is in the cache
    cache_dir = tmp_path / "cache"
    data = many[0].path.parents[2]
    driver = subprocess.Popen(
        [*cli, "embed", "--data", str(data), "--cache-dir", str(cache_dir), *common, *ray_options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not list(cache_dir.rglob("chunk_*.npz")) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    driver.kill()
    driver.wait()
    views = Views.open(settings(logmel, cache_dir))
    stored = set(cached_rows(views.caches[0], many[0]))
    assert 0 < len(stored) < len(many)
    executor = RayExecutor(workers=2)
    resumed = executor.embed(views.extractors[0], many, cache=views.caches[0], progress=False)
    assert executor.last_run.sent == len(many) - len(stored)
    assert resumed.clips == many
    rows = cached_rows(views.caches[0], many[0])
    assert len(rows) == len(set(rows)) == len(many)


def test_more_workers_than_the_cluster_has_cpus_is_a_clear_error(cluster, logmel, dataset):
    views = Views.open(settings(logmel, None))
    expected = r"3 worker\(s\) of 1 CPU\(s\) each need 3 CPUs; the Ray cluster has 2"
    with pytest.raises(SettingsError, match=expected):
        RayExecutor(workers=3).embed(views.extractors[0], list_clips(dataset, "fan", "train"), progress=False)
