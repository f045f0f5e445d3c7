"""The FastAPI application: the scoring endpoints, the model list, health, metrics and error answers.

Every error is JSON ``{"error": KIND, "detail": MESSAGE}`` with a 4xx status that says whose problem it
is: 400 a malformed request (no file, an empty one), 401 no valid token, 404 an unknown model, 413 an
upload over the limit, 422 a recording that cannot be scored (not audio, truncated, too short …), 503
the queue is full (with ``Retry-After``). A 500 is the last resort for a fault of the service itself.

Scoring requests are admitted up to ``queue`` at once (waiting or running); the scoring itself runs on a
pool of ``workers`` threads, so the event loop keeps accepting, refusing and answering meanwhile, and
requests for one model that wait together are scored in one call (:mod:`frozenasd.service.batching`).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from frozenasd import __version__
from frozenasd.service.batching import Batcher
from frozenasd.service.config import ServiceConfig
from frozenasd.service.guard import BodyTooLarge, Guard
from frozenasd.service.metrics import CONTENT_TYPE, Metrics
from frozenasd.service.registry import Registry, Served
from frozenasd.service.uploads import UploadProblem, discard, receive_uploads

# The token is checked by the Guard before any route runs; the dependency only documents it. The scoring
# routes, which every request takes, name the same scheme in their OpenAPI entry instead (a dependency
# costs each request its resolution).
_BEARER = [Depends(HTTPBearer(auto_error=False, description="the token of --token-file"))]
_BEARER_DOC = {"security": [{"HTTPBearer": []}]}
_UPLOAD_BODY = _BEARER_DOC | {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_BATCH_BODY = _BEARER_DOC | {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
    }
}


class ServiceError(Exception):
    """An answer other than 200: status, kind, detail and headers; counted in the metrics."""

    def __init__(self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.headers = status, kind, detail, headers or {}


class Admission:
    """At most ``limit`` scoring requests at once (waiting for a worker or running)."""

    def __init__(self, limit: int, workers: int) -> None:
        self.limit, self.workers = limit, workers
        self.depth = 0
        self.mean_seconds = 1.0  # a running mean of scoring times, for Retry-After

    def retry_after(self) -> int:
        """Seconds a refused client should wait: about the time to clear the queue, 1 to 60."""
        return int(min(60, max(1, math.ceil(self.mean_seconds * self.limit / self.workers))))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.depth >= self.limit:  # the event loop's thread alone counts: no lock needed
            raise ServiceError(
                503,
                "busy",
                f"{self.depth} scoring requests are queued or running, the most this service admits "
                "(--queue); retry later",
                {"retry-after": str(self.retry_after())},
            )
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def took(self, seconds: float) -> None:
        """One scoring call took ``seconds``."""
        self.mean_seconds += 0.2 * (seconds - self.mean_seconds)


def create_app(registry: Registry, config: ServiceConfig, metrics: Metrics | None = None) -> FastAPI:
    """The service's application for the models in ``registry``, with ``config``'s token and limits."""
    metrics = metrics or Metrics(registry.models)
    workers = config.scoring_workers
    admission = Admission(config.queue, workers)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="frozenasd-score")
    batcher = Batcher(
        registry,
        pool,
        workers,
        max_clips=config.max_files,
        took=admission.took,
        in_flight=lambda: admission.depth,
        one_thread=config.side_by_side_on_one_core,
    )
    folder = tempfile.TemporaryDirectory(prefix="frozenasd-serve-")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:  # uvicorn has let the requests in flight finish
            pool.shutdown(wait=True)
            folder.cleanup()

    app = FastAPI(
        title="frozenasd scoring service",
        version=__version__,
        description="Scores machine recordings with fitted anomalous-sound detection models.",
        lifespan=lifespan,
    )
    app.state.registry, app.state.metrics, app.state.admission = registry, metrics, admission
    app.add_middleware(Guard, token=config.token, max_bytes=config.max_upload_bytes, metrics=metrics)

    def error_response(model: str | None, exc: ServiceError) -> JSONResponse:
        metrics.error(model, exc.kind)
        return JSONResponse({"error": exc.kind, "detail": exc.detail}, exc.status, headers=exc.headers)

    def lookup(name: str) -> Served:
        served = registry.models.get(name)
        if served is None:
            known = ", ".join(sorted(registry.models))
            raise ServiceError(404, "unknown_model", f"no model named {name!r}; this service has: {known}")
        return served

    async def score_request(name: str, request: Request, frames: bool, one: bool) -> list[dict[str, Any]]:
        served = lookup(name)
        if frames and not served.has_frames:
            raise ServiceError(
                400,
                "no_frames",
                f"model {name!r}: its detector ({served.model.detector}) gives no per-frame scores",
            )
        async with admission.slot():
            try:
                uploads = await receive_uploads(request, Path(folder.name), config.max_files, one=one)
            except UploadProblem as exc:
                raise ServiceError(400, "bad_upload", str(exc)) from exc
            try:
                results = await batcher.score(served, uploads, frames)
            finally:
                discard(uploads)
        scored = [r for r in results if "error" not in r]
        metrics.scored(name, len(scored), sum(r["anomalous"] for r in scored))
        for _ in range(len(results) - len(scored)):
            metrics.error(name, "unscorable")
        return results

    @app.post(
        "/v1/models/{name}/score",
        openapi_extra=_UPLOAD_BODY,
        summary="Score one recording (a multipart file field, or the raw request body)",
    )
    async def score(name: str, request: Request, frames: bool = False) -> JSONResponse:
        """``{score, threshold, anomalous, model, encoder_sha256, duration_s, cut, file, elapsed_s}``;
        ``frames`` (and ``frame_hop_s``) with ``?frames=true`` for a frame detector."""
        start = time.perf_counter()
        (result,) = await score_request(name, request, frames, True)
        if "error" in result:
            return JSONResponse({"error": result["error"], "detail": result["detail"]}, 422)
        # a response of plain JSON types, sent as it is: FastAPI's encoding would only copy it
        return JSONResponse({**result, "elapsed_s": time.perf_counter() - start})

    @app.post(
        "/v1/models/{name}/score-batch",
        openapi_extra=_BATCH_BODY,
        summary="Score several recordings (multipart file fields); a bad file gets an error entry",
    )
    async def score_batch(name: str, request: Request, frames: bool = False) -> JSONResponse:
        """``{model, results: [one score's result, or {file, error, detail}], n_scored, n_anomalous}``."""
        start = time.perf_counter()
        results = await score_request(name, request, frames, False)
        scored = [r for r in results if "error" not in r]
        return JSONResponse(
            {
                "model": name,
                "results": results,
                "n_scored": len(scored),
                "n_anomalous": sum(r["anomalous"] for r in scored),
                "elapsed_s": time.perf_counter() - start,
            }
        )

    @app.get("/v1/models", dependencies=_BEARER, summary="The models served")
    async def models() -> dict[str, Any]:
        return {"models": [served.describe() for served in registry.models.values()]}

    @app.get("/healthz", summary="Liveness (needs no token)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", dependencies=_BEARER, response_class=PlainTextResponse, summary="Prometheus metrics")
    async def prometheus() -> PlainTextResponse:
        text = metrics.render(admission.depth, admission.limit, batcher.calls)
        return PlainTextResponse(text, media_type=CONTENT_TYPE)

    def model_of(request: Request) -> str | None:
        return request.path_params.get("name")

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(model_of(request), exc)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(
            model_of(request), ServiceError(413, "too_large", str(exc), {"connection": "close"})
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return error_response(model_of(request), ServiceError(exc.status_code, kind, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error_response(model_of(request), ServiceError(422, "invalid_request", problems))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        detail = f"the service failed on this request ({type(exc).__name__}: {exc})"
        return error_response(model_of(request), ServiceError(500, "internal", detail))

    return app
