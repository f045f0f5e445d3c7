"""Recordings received over HTTP, held in memory or, past a budget, in temporary files.

A request carries its recordings either as ``multipart/form-data`` file fields (any field name; the
upload's file name reports it) or, for one recording, as the raw request body (any other content type;
``?filename=`` names it). A request's first ``MEMORY_BUDGET`` bytes stay in memory (decoded from there,
as the same file would be from disk), recordings beyond it are written to a private temporary folder,
so a queue of large uploads does not fill the memory. The size limit is enforced upstream
(:mod:`frozenasd.service.guard`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import anyio
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartParser
from starlette.requests import ClientDisconnect, Request

from frozenasd.service.registry import Upload, remove_quietly

_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
RAW_BODY = "the request body"

# Bytes of one request kept in memory: 16 MB holds fifty 10-second 16 kHz WAV clips; with the default
# queue of 16 requests the uploads waiting hold at most 256 MB.
MEMORY_BUDGET = 16 * 1024 * 1024


class UploadProblem(Exception):
    """A request whose recordings cannot be taken (none, empty, too many): a 400 naming the problem."""


def _target(folder: Path, name: str) -> Path:
    """A new empty file in ``folder`` keeping ``name``'s extension (libsndfile reads some formats by it)."""
    suffix = Path(name).suffix
    fd, path = tempfile.mkstemp(suffix=suffix if _SUFFIX.fullmatch(suffix) else ".audio", dir=folder)
    os.close(fd)
    return Path(path)


async def receive_uploads(
    request: Request, folder: Path, max_files: int, *, one: bool = False
) -> list[Upload]:
    """The request's recordings, in memory or as temporary files in ``folder`` (removed by :func:`discard`).

    UploadProblem when there is none, one is empty, or there are more than ``max_files`` (``one``: more
    than one).
    """
    received: list[Upload] = []
    try:
        content_type = request.headers.get("content-type", "")
        if content_type.lower().startswith("multipart/form-data"):
            async with request.form(max_files=max_files, max_fields=max_files + 16) as form:
                files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
                if not files:
                    raise UploadProblem(
                        "the form holds no file: send the recording as a file field (curl -F file=@clip.wav)"
                    )
                if one and len(files) > 1:
                    raise UploadProblem(
                        f"{len(files)} files in one request; this endpoint scores one "
                        "(score-batch takes several)"
                    )
                budget = MEMORY_BUDGET
                for item in files:
                    name = item.filename or f"file {len(received) + 1}"
                    size = item.size or 0
                    if size <= min(budget, MultiPartParser.spool_max_size):  # the parser holds it in memory
                        received.append(Upload(name, data=await item.read()))
                        budget -= size
                    else:
                        path = _target(folder, name)
                        received.append(Upload(name, path=path))
                        await anyio.to_thread.run_sync(_copy, item, path)
        elif content_type.lower().startswith("application/x-www-form-urlencoded"):
            raise UploadProblem(
                "a URL-encoded form holds no file: send the recording as a multipart file field "
                "(curl -F file=@clip.wav) or as the raw body (curl --data-binary @clip.wav)"
            )
        else:
            name = request.query_params.get("filename") or RAW_BODY
            received.append(await _receive_body(request, folder, name))
        for upload in received:
            if upload.size == 0:
                raise UploadProblem(f"{upload.name}: empty upload (0 bytes)")
        return received
    except ClientDisconnect as exc:
        discard(received)
        raise UploadProblem("the client closed the connection before the upload was complete") from exc
    except BaseException:
        discard(received)
        raise


async def _receive_body(request: Request, folder: Path, name: str) -> Upload:
    """The raw body as an upload: in memory up to ``MEMORY_BUDGET`` bytes, then in a temporary file."""
    chunks: list[bytes] = []
    held = 0
    upload = Upload(name)
    out = None
    try:
        async for chunk in request.stream():
            if out is None and held + len(chunk) > MEMORY_BUDGET:
                upload.path = _target(folder, name)
                out = open(upload.path, "wb")
                out.writelines(chunks)
                chunks.clear()
            if out is not None:
                out.write(chunk)
            else:
                chunks.append(chunk)
                held += len(chunk)
    except BaseException:
        if upload.path is not None:
            remove_quietly(upload.path)
        raise
    finally:
        if out is not None:
            out.close()
    if upload.path is None:
        upload.data = b"".join(chunks)
    return upload


def _copy(item: UploadFile, path: Path) -> None:
    item.file.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(item.file, out, 1 << 20)


def discard(uploads: list[Upload]) -> None:
    """Remove the uploads' temporary files."""
    for upload in uploads:
        if upload.path is not None:
            remove_quietly(upload.path)
