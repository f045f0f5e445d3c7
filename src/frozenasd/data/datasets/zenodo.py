"""Zenodo records and resumable, checksummed file downloads over HTTP(S).

A record is read from ``{base}/api/records/{id}``. Three shapes of its ``files`` are understood:

- a list of ``{key, size, checksum: "md5:<hex>", links: {self}}`` (the classic form Zenodo serves);
- a list of ``{filename, filesize, checksum: "<hex>", links: {download}}`` (the form served for a while
  after Zenodo moved to InvenioRDM in October 2023);
- ``{"entries": {key: {key, size, checksum, links: {content}}}}`` (the InvenioRDM form).

The download link is the first of ``links.content``, ``links.download``, ``links.self``, else
``{base}/api/records/{id}/files/{name}/content``.

Downloads go to ``<file>.part``. A later attempt asks for the rest with ``Range: bytes=<n>-`` and appends;
a server answering ``200`` instead of ``206`` sends the whole file, which then replaces the part. The
finished file must have the record's size and md5, or it is deleted.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import requests

from frozenasd.errors import FrozenASDError

DEFAULT_BASE_URL = "https://zenodo.org"
BASE_URL_ENV = "FROZENASD_ZENODO_URL"
TIMEOUT = (15.0, 60.0)  # (connect, read) seconds
CHUNK = 1 << 16
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class RemoteFile:
    """A file of a Zenodo record as its API describes it."""

    record: str
    name: str
    size: int
    md5: str
    url: str


def resolve_base_url(base_url: str | None) -> str:
    """``base_url``, else ``$FROZENASD_ZENODO_URL``, else https://zenodo.org (no trailing slash)."""
    base = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return base.rstrip("/")


def _network_error(url: str, exc: Exception) -> FrozenASDError:
    return FrozenASDError(f"cannot reach {url}: {type(exc).__name__}: {exc}")


def _md5_of(value: object) -> str:
    text = str(value or "")
    algo, _, digest = text.rpartition(":")
    if algo.lower() not in ("", "md5") or not re.fullmatch(r"[0-9a-fA-F]{32}", digest):
        return ""
    return digest.lower()


def _entries(doc: dict[str, Any]) -> list[dict[str, Any]]:
    files = doc.get("files")
    if isinstance(files, dict):
        files = list((files.get("entries") or {}).values())
    if not isinstance(files, list):
        return []
    return [f for f in files if isinstance(f, dict)]


def parse_record(doc: dict[str, Any], record: str, base: str, api_url: str) -> dict[str, RemoteFile]:
    """The files of a record's API document, by name (entries without name, size or md5 are left out)."""
    out: dict[str, RemoteFile] = {}
    for entry in _entries(doc):
        name = entry.get("key") or entry.get("filename")
        size = entry.get("size", entry.get("filesize"))
        md5 = _md5_of(entry.get("checksum"))
        if not isinstance(name, str) or not isinstance(size, int) or not md5:
            continue
        links = entry.get("links") if isinstance(entry.get("links"), dict) else {}
        link = links.get("content") or links.get("download") or links.get("self")
        if not isinstance(link, str) or not link:
            link = f"{base}/api/records/{quote(record)}/files/{quote(name)}/content"
        out[name] = RemoteFile(record, name, size, md5, urljoin(api_url, link))
    return out


def fetch_record(session: requests.Session, base: str, record: str) -> dict[str, RemoteFile]:
    """Read record ``record`` from the Zenodo API at ``base``; clear errors for network and HTTP faults."""
    url = f"{base}/api/records/{quote(record)}"
    try:
        response = session.get(url, timeout=TIMEOUT, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise _network_error(url, exc) from exc
    if response.status_code == 404:
        raise FrozenASDError(f"{url}: Zenodo record {record} not found (HTTP 404)")
    if response.status_code != 200:
        raise FrozenASDError(f"{url}: HTTP {response.status_code} {response.reason}; try again later")
    try:
        doc = response.json()
    except ValueError as exc:
        raise FrozenASDError(f"{url}: the answer is not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise FrozenASDError(f"{url}: the answer is not a Zenodo record")
    return parse_record(doc, record, base, url)


def _hash_prefix(path: Path, length: int) -> Any:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        remaining = length
        while remaining > 0:
            block = f.read(min(CHUNK, remaining))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
    return digest


def _start_offset(response: requests.Response, asked: int, url: str) -> int:
    """Where the body of ``response`` starts in the file: ``asked`` for a 206, 0 for a full 200."""
    if response.status_code == 200:
        return 0
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
    if match is None or int(match.group(1)) != asked:
        raise FrozenASDError(f"{url}: the server answered a range request with an unexpected range")
    return asked


class _Interrupted(Exception):
    """A transfer broke off; what arrived is kept and the next attempt resumes."""


def _fetch_once(session: requests.Session, remote: RemoteFile, part: Path, progress: Any) -> bool:
    """One attempt: ask for what ``part`` lacks and append it (or rewrite ``part`` from the start).

    Returns False when the server refused the range (``part`` is then deleted and must be fetched anew).
    """
    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        with session.get(remote.url, headers=headers, stream=True, timeout=TIMEOUT) as response:
            if response.status_code == 416:
                part.unlink(missing_ok=True)  # what we hold is not a prefix of the file
                return False
            if response.status_code not in (200, 206):
                raise FrozenASDError(f"{remote.url}: HTTP {response.status_code} {response.reason}")
            start = _start_offset(response, have, remote.url)
            progress.reset(total=remote.size)
            progress.update(start)
            with part.open("r+b" if start else "wb") as out:
                out.seek(start)
                out.truncate()
                for block in response.iter_content(CHUNK):
                    out.write(block)
                    progress.update(len(block))
    except requests.RequestException as exc:
        raise _Interrupted(f"{remote.url}: {type(exc).__name__}: {exc}") from exc
    return True


def download_file(
    session: requests.Session,
    remote: RemoteFile,
    target: Path,
    *,
    retries: int = 2,
    progress: bool = True,
) -> Path:
    """Download ``remote`` to ``target`` through ``target.part``, resuming; check its size and md5.

    A broken transfer is resumed up to ``retries`` more times, then raises with the ``.part`` file kept
    so the next run continues. A size or md5 mismatch deletes the file and raises.
    """
    from tqdm.auto import tqdm

    part = target.with_name(target.name + ".part")
    if part.is_symlink() or (part.exists() and part.stat().st_size > remote.size):
        part.unlink()  # a link is removed, never written through
    bar = tqdm(
        total=remote.size, unit="B", unit_scale=True, desc=remote.name, disable=not progress, file=sys.stderr
    )
    try:
        for attempt in range(retries + 1):
            if part.exists() and part.stat().st_size == remote.size:
                break
            try:
                if _fetch_once(session, remote, part, bar):
                    break
            except _Interrupted as exc:
                if attempt == retries:
                    have = part.stat().st_size if part.exists() else 0
                    raise FrozenASDError(
                        f"cannot reach {exc}\ndownload of {remote.name} stopped at {have} of "
                        f"{remote.size} bytes; re-run to resume from {part}"
                    ) from exc
    finally:
        bar.close()
    _verify(remote, part)
    os.replace(part, target)
    return target


def _verify(remote: RemoteFile, path: Path) -> None:
    """Check size and md5 of a finished download; delete it and raise on a mismatch."""
    size = path.stat().st_size if path.exists() else 0
    problem = ""
    if size != remote.size:
        problem = f"size {size} bytes, expected {remote.size}"
    else:
        md5 = _hash_prefix(path, size).hexdigest()
        if md5 != remote.md5:
            problem = f"md5 {md5}, expected {remote.md5}"
    if problem:
        path.unlink(missing_ok=True)
        raise FrozenASDError(
            f"{remote.name} (Zenodo record {remote.record}) arrived damaged: {problem}; "
            "the file was deleted, re-run the download"
        )


def file_matches(remote: RemoteFile, path: Path) -> bool:
    """True when ``path`` exists with the size and md5 of ``remote``."""
    if not path.is_file() or path.stat().st_size != remote.size:
        return False
    return _hash_prefix(path, remote.size).hexdigest() == remote.md5
