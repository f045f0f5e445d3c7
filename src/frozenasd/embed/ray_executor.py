"""Embedding on a Ray cluster: :class:`RayExecutor`, the same answers and the same cache as one machine.

The driver lists the clips, takes what the cache holds (keyed by :func:`~frozenasd.embed.cache.clip_identity`,
as :class:`~frozenasd.embed.executor.LocalExecutor` keys it) and sends the rest to Ray Data: CPU tasks
read each file and compute its model input (the frontend), an actor pool runs the encoder (each actor
opens the ONNX file once, with as many threads as CPUs Ray gives it), and the embeddings come back to
the driver block by block, each block stored in the cache as it arrives: a driver killed mid-run
recomputes at most the blocks in flight. Every result carries its clip's index, so a task or actor
that Ray runs again after its worker died (``kill -9``) can neither lose a clip nor count one twice.
A clip that cannot be used comes back with the reason and is skipped with the local executor's
message (the per-clip steps are :mod:`frozenasd.embed.steps`, shared by both executors).

The audio files and the model file must be readable at the same paths on every node (a shared file
system), and frozenasd installed there at the same version.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from frozenasd.cores import one_blas_thread
from frozenasd.data.dcase import Clip
from frozenasd.data.file_bytes import held_in_memory
from frozenasd.embed.cache import EmbeddingCache
from frozenasd.embed.encoders.onnx_runtime import ONNXFeatureExtractor
from frozenasd.embed.executor import CHUNK, Embedded, default_warn, embed_clips
from frozenasd.embed.steps import (
    ClipLimits,
    assemble,
    clip_features,
    embed_or_reasons,
    skip_message,
    take_cached,
)
from frozenasd.errors import FrozenASDError, ModelError, SettingsError
from frozenasd.hashing import file_sha256

__all__ = ["INSTALL", "EncoderActor", "RayExecutor", "RayRun", "require_ray"]

INSTALL = "pip install 'frozenasd[ray]'"
# A worker that dies (kill -9, out of memory) is restarted and its batch run again this many times;
# a clip that kills every worker it reaches must not keep the job going for ever.
RETRIES = 3
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
WAIT_FOR_ACTORS_SECONDS = 600  # a cluster short of CPUs for the actors asked for fails after this


def require_ray() -> None:
    """Raise SettingsError saying how to install Ray when it is missing (Ray is not imported here)."""
    if importlib.util.find_spec("ray") is None:
        raise SettingsError(f"the Ray executor needs Ray, which is not installed: {INSTALL}")


def _import_ray(local: bool) -> Any:
    """``ray`` with Ray Data; for a local Ray, one that stays on the loopback address."""
    if local and "ray" not in sys.modules:
        # Ray's switch for single-machine Rays (its default on macOS and Windows): the node's address
        # is 127.0.0.1 rather than the machine's network address, so nothing listens on the network.
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise SettingsError(f"the Ray executor needs Ray Data, which is not installed: {INSTALL}") from exc
    return ray


def _pack(array: np.ndarray) -> bytes:
    """An array as .npy bytes: any shape travels through Ray Data's columns unchanged."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _unpack(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def frontend_batch(batch: dict[str, np.ndarray], extractor: ONNXFeatureExtractor) -> dict[str, list]:
    """Ray task: read each clip of the batch and compute its model input, or the reason it cannot be."""
    limits = ClipLimits.of(extractor)
    out: dict[str, list] = {"index": [], "features": [], "cut": [], "reason": []}
    for index, path in zip(batch["index"], batch["path"], strict=True):
        with one_blas_thread():  # the node's cores belong to the encoder actors
            featured = clip_features(extractor, str(path), limits)
        out["index"].append(int(index))
        out["features"].append(b"" if isinstance(featured, str) else _pack(featured.features))
        out["cut"].append(False if isinstance(featured, str) else featured.cut)
        out["reason"].append(featured if isinstance(featured, str) else "")
    return out


class EncoderActor:
    """Ray actor: opens the encoder once, from the extractor's parameters, and embeds batches of inputs.

    ``model_sha256``: the model file the driver hashed; a node whose file at that path differs stops
    the job rather than give embeddings the driver's cache would file under another model.
    """

    def __init__(self, params: dict[str, Any], model_sha256: str | None) -> None:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        threads = max(1, round(cpus))
        path = params["model_path"]
        node = ray.util.get_node_ip_address()
        if not Path(path).is_file():
            raise ModelError(f"{path}: not found on node {node} (every node must read it at this path)")
        if model_sha256 is not None and file_sha256(path) != model_sha256:
            raise ModelError(f"{path}: on node {node} it differs from the driver's")
        self.extractor = ONNXFeatureExtractor(**{**params, "num_threads": threads}).fit()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        reasons = [str(r) for r in batch["reason"]]
        todo = [k for k, r in enumerate(reasons) if not r]
        embedded: list[bytes] = [b""] * len(reasons)
        if todo:
            features = [_unpack(batch["features"][k]) for k in todo]
            for k, result in zip(todo, embed_or_reasons(self.extractor, features), strict=True):
                if isinstance(result, str):
                    reasons[k] = result
                else:
                    embedded[k] = _pack(result)
        return {
            "index": [int(i) for i in batch["index"]],
            "embedding": embedded,
            "cut": [bool(c) for c in batch["cut"]],
            "reason": reasons,
            "worker": [os.getpid()] * len(reasons),
        }


@dataclass
class RayRun:
    """What the last ``embed`` call sent to Ray: clips, and per result block its arrival and size.

    ``arrivals``: (seconds since the job was submitted, clips) per block; ``by_worker``: clips per
    worker process that embedded them.
    """

    sent: int = 0
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    by_worker: Counter = field(default_factory=Counter)

    @property
    def blocks(self) -> int:
        return len(self.arrivals)

    def steady_rate(self) -> float | None:
        """Clips per second once the first block is back: the job's rate without its fixed cost."""
        if len(self.arrivals) < 2 or self.arrivals[-1][0] <= self.arrivals[0][0]:
            return None
        return sum(n for _, n in self.arrivals[1:]) / (self.arrivals[-1][0] - self.arrivals[0][0])


class RayExecutor:
    """Embeds on a Ray cluster (see the module's description); same answers and cache as LocalExecutor.

    ``address``: ``"auto"`` (the cluster ``ray start`` runs on this machine), ``"HOST:PORT"``, or
    ``None`` to use the Ray this process has initialised, else start a local one (on 127.0.0.1, for
    this process only). ``workers``: encoder actors (default: the cluster's CPUs divided by
    ``threads_per_worker``); each is given ``threads_per_worker`` CPUs and as many ONNX Runtime threads.
    ``encoder_class``: the actor class (an :class:`EncoderActor`).
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        threads_per_worker: int = 1,
        *,
        encoder_class: type[EncoderActor] = EncoderActor,
    ) -> None:
        require_ray()
        if workers is not None and workers < 1:
            raise SettingsError(f"workers must be at least 1, got {workers}")
        if threads_per_worker < 1:
            raise SettingsError(f"threads per worker must be at least 1, got {threads_per_worker}")
        self.address = address
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.encoder_class = encoder_class
        self.last_run = RayRun()
        self._started = False

    def __repr__(self) -> str:
        return (
            f"RayExecutor(address={self.address!r}, workers={self.workers}, "
            f"threads_per_worker={self.threads_per_worker})"
        )

    # ------------------------------------------------------------------------------- cluster
    def connect(self) -> None:
        """Join the cluster (or start a local one) unless this process already has."""
        ray = _import_ray(local=not self.address)
        if ray.is_initialized():
            return
        quiet = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
        try:
            if self.address:
                ray.init(address=self.address, **quiet)
            else:
                ray.init(**quiet)
                self._started = True
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local Ray"
            raise SettingsError(f"cannot reach the Ray cluster at {where}: {exc}") from exc

    def close(self) -> None:
        """Stop the local Ray this executor started (a cluster it joined keeps running)."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pool_size(self) -> int:
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 0))
        if self.workers is None:
            return max(1, cpus // self.threads_per_worker)
        if self.workers * self.threads_per_worker > cpus:
            raise SettingsError(
                f"{self.workers} worker(s) of {self.threads_per_worker} CPU(s) each need "
                f"{self.workers * self.threads_per_worker} CPUs; the Ray cluster has {cpus}"
            )
        return self.workers

    # ------------------------------------------------------------------------------- embed
    def embed(
        self,
        extractor: ONNXFeatureExtractor,
        clips: Sequence[Clip],
        *,
        cache: EmbeddingCache | None = None,
        progress: bool = True,
        desc: str = "clips",
        warn: Callable[[str], None] | None = None,
    ) -> Embedded:
        """See :class:`~frozenasd.embed.executor.Executor`; clips held in memory are embedded here."""
        self.last_run = RayRun()
        if not clips or any(map(held_in_memory, clips)):
            return embed_clips(extractor, clips, cache=cache, progress=progress, desc=desc, warn=warn)
        warn = warn or default_warn
        if not hasattr(extractor, "session_"):
            extractor.fit()
        limits = ClipLimits.of(extractor)
        machine, split = clips[0].machine, clips[0].split
        skipped: dict[int, str] = {}

        def skip(i: int, reason: str) -> None:
            warn(skip_message(clips[i].path, reason))
            skipped[i] = reason

        with tqdm(total=len(clips), desc=desc, unit="clip", disable=not progress, file=sys.stderr) as bar:
            cached = cache.load(machine, split) if cache else None
            found, cut, keys = take_cached(clips, cached, limits, skip)
            bar.update(len(found) + len(skipped))
            for block in self._results(extractor, clips, sorted(keys)):
                rows = []
                for index, embedding, is_cut, reason in block:
                    if index in found or index in skipped:  # a batch Ray ran twice
                        continue
                    bar.update()
                    if reason:
                        skip(index, reason)
                        continue
                    found[index] = embedding
                    if is_cut:
                        cut.add(index)
                    rows.append((keys[index], embedding))
                if cache:
                    cache.store(machine, split, rows)
        return assemble(extractor, clips, found, skipped, cut, limits, warn)

    def _results(
        self, extractor: ONNXFeatureExtractor, clips: Sequence[Clip], indices: list[int]
    ) -> Iterator[list[tuple[int, np.ndarray | None, bool, str]]]:
        """Ray's results for the clips at ``indices``, one block at a time as they arrive."""
        if not indices:
            return
        self.connect()
        import ray

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        # Every encoder actor is up before the first block is dispatched, so that all share the work
        # (and a node that cannot open the model stops the job before any clip is embedded).
        context.wait_for_min_actors_s = WAIT_FOR_ACTORS_SECONDS
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        start = time.perf_counter()
        model_sha256 = file_sha256(extractor.model_path)
        items = [{"index": i, "path": str(clips[i].path)} for i in indices]
        blocks = -(-len(items) // CHUNK)
        workers = min(self._pool_size(), blocks)  # an actor with no block to embed would only wait
        # Blocks of at most CHUNK clips, each passed whole through both stages (batch_size=None: no
        # bundling of blocks), come back one by one: each is stored in the cache as it arrives.
        dataset = ray.data.from_items(items, override_num_blocks=blocks)
        # The frontend tasks reserve no CPU of their own: the encoder actors hold the cluster's CPUs
        # and a task that waited for a free one would never start; at most one runs per CPU.
        cpus = workers * self.threads_per_worker
        with warnings.catch_warnings():
            # Ray 2.60 names no parameter for the retries yet: they go as remote arguments
            warnings.simplefilter("ignore", category=DeprecationWarning)
            dataset = dataset.map_batches(
                frontend_batch,
                batch_size=None,
                batch_format="numpy",
                fn_kwargs={"extractor": extractor},
                num_cpus=0,
                compute=ray.data.TaskPoolStrategy(size=max(1, cpus)),
                max_retries=RETRIES,
            )
            dataset = dataset.map_batches(
                self.encoder_class,
                batch_size=None,
                batch_format="numpy",
                fn_constructor_kwargs={"params": extractor.get_params(), "model_sha256": model_sha256},
                num_cpus=self.threads_per_worker,
                # two batches per actor: the next is at hand when one is done
                compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=2),
                max_restarts=RETRIES,
                max_task_retries=RETRIES,
            )
        self.last_run.sent = len(items)
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                self.last_run.arrivals.append((time.perf_counter() - start, len(batch["index"])))
                self.last_run.by_worker.update(int(w) for w in batch["worker"])
                yield [
                    (int(i), _unpack(e) if not r else None, bool(c), str(r))
                    for i, e, c, r in zip(
                        batch["index"], batch["embedding"], batch["cut"], batch["reason"], strict=True
                    )
                ]
        except ray.exceptions.RayError as exc:
            raise _cause(exc) from exc


def _cause(exc: BaseException) -> FrozenASDError:
    """The frozenasd error behind a Ray failure (e.g. a model missing on a node), else one naming Ray's."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, FrozenASDError):
            return type(current)(*current.args)
        current = getattr(current, "cause", None) or current.__cause__
    text = str(exc).strip().splitlines()
    return ModelError(f"the Ray cluster failed to embed: {text[-1] if text else type(exc).__name__}")
