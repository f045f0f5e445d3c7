"""The ASGI layer in front of every route: the bearer token, the upload size limit and request metrics.

It runs before FastAPI parses anything, so a request without the valid token gets 401 and an upload
whose ``Content-Length`` is over the limit gets 413 without a byte of their bodies being read. A body
sent without a length (chunked) is counted as it arrives: past the limit, reading it raises
:class:`BodyTooLarge`, which the application answers with 413. ``/healthz`` and the API documentation
(``/docs``, ``/openapi.json``) need no token: they tell nothing about the models and process no data.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from frozenasd.service.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
_MODEL_PATH = re.compile(r"^/v1/models/([^/]+)/(score|score-batch)$")


class BodyTooLarge(Exception):
    """The request body grew past the upload limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the upload is larger than the service's limit of {limit} bytes (--max-upload-mb)")
        self.limit = limit


def endpoint_of(path: str) -> tuple[str, str | None]:
    """The endpoint's label and the model named in ``path`` (None when it names none)."""
    match = _MODEL_PATH.match(path)
    if match:
        return match.group(2), match.group(1)
    known = {"/v1/models": "models", "/healthz": "healthz", "/metrics": "metrics"}
    return known.get(path, "docs" if path in OPEN_PATHS else "other"), None


async def reply(
    send: Send, status: int, error: str, detail: str, headers: dict[str, str] | None = None
) -> None:
    """Answer with the service's JSON error ``{"error", "detail"}`` and close the connection."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    fields = {"content-type": "application/json", "content-length": str(len(body)), "connection": "close"}
    fields |= headers or {}
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), v.encode()) for k, v in fields.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: token check, size limit, and one metrics record per request."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_bytes = max_bytes
        self.metrics = metrics

    def _refusal(self, scope: Scope) -> tuple[int, str, str, dict[str, str]] | None:
        """Why the request is refused before it is processed (status, kind, detail, headers), or None."""
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if self.token is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            scheme, _, credential = given.partition(b" ")
            challenge = {"www-authenticate": "Bearer"}
            if not given:
                return 401, "unauthorized", "send the token as 'Authorization: Bearer <token>'", challenge
            if scheme.lower() != b"bearer" or not hmac.compare_digest(credential.strip(), self.token):
                return 401, "unauthorized", "the bearer token is not the service's", challenge
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return (
                    400,
                    "bad_request",
                    f"Content-Length {length.decode(errors='replace')!r} is not a number",
                    {},
                )
            if int(length) > self.max_bytes:
                detail = (
                    f"the upload is {int(length)} bytes, over the service's limit of {self.max_bytes} bytes"
                )
                return 413, "too_large", detail + " (--max-upload-mb)", {}
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        endpoint, model = endpoint_of(scope["path"])
        status = 500
        refusal = self._refusal(scope)
        try:
            if refusal is not None:
                status, kind, detail, headers = refusal
                self.metrics.error(model, kind)
                await reply(send, status, kind, detail, headers)
                return
            received = 0

            async def counted() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_bytes:
                        raise BodyTooLarge(self.max_bytes)
                return message

            async def watched(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await self.app(scope, counted, watched)
        finally:
            self.metrics.request(endpoint, model, status, time.perf_counter() - start)
