"""The service's settings, checked before anything is loaded: where it listens, its token, its limits."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from frozenasd.cores import usable_cores
from frozenasd.errors import FrozenASDError

MB = 1_000_000  # --max-upload-mb counts decimal megabytes, as curl and HTTP tools print sizes
MIN_TOKEN_CHARS = 16
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServiceConfig:
    """What ``frozenasd serve`` was told; :meth:`check` refuses settings that do not go together.

    ``queue``: scoring requests admitted at once, waiting and running (more get 503); ``workers``:
    threads that score side by side (default: one per core); ``threads``: ONNX Runtime threads per
    encoder call (default: every core for a request scored alone, one when requests are scored side
    by side, see :attr:`side_by_side_on_one_core`). ``max_seconds``: longer recordings are cut to their
    first ``max_seconds``; ``max_files``: files one batch request may hold.
    """

    fitted: tuple[Path, ...]
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = field(default=None, repr=False)
    max_upload_bytes: int = 200 * MB
    max_seconds: float = 600.0
    max_files: int = 64
    queue: int = 16
    workers: int | None = None
    threads: int | None = None
    grace_seconds: float = 30.0
    history: Path | None = None  # a score history (SQLite) the service adds a row to per recording

    def check(self) -> ServiceConfig:
        """``self`` when usable; FrozenASDError naming the problem otherwise."""
        if not self.fitted:
            raise FrozenASDError("give at least one fitted model: --fitted FILE.npz")
        if self.token is None and not is_loopback(self.host):
            raise FrozenASDError(
                f"--host {self.host}: refusing to listen beyond this machine without a token; give "
                "--token-file FILE (clients then send 'Authorization: Bearer <token>'), or listen on "
                "127.0.0.1"
            )
        for name, value in (
            ("--queue", self.queue),
            ("--workers", self.scoring_workers),
            ("--max-files", self.max_files),
            ("--max-upload-mb", self.max_upload_bytes),
        ):
            if value < 1:
                raise FrozenASDError(f"{name} must be positive, got {value}")
        if not self.max_seconds > 0:
            raise FrozenASDError(f"--max-seconds must be positive, got {self.max_seconds}")
        if not 0 <= self.port <= 65535:
            raise FrozenASDError(f"--port {self.port}: not a TCP port (0-65535)")
        return self

    @property
    def scoring_workers(self) -> int:
        """The scoring threads: ``workers``, else one per core (per ``threads`` cores when given)."""
        if self.workers is not None:
            return self.workers
        return max(1, usable_cores() // (self.threads or 1))

    @property
    def side_by_side_on_one_core(self) -> bool:
        """Whether requests scored side by side run their encoders on one thread each.

        Without ``--threads``, a request scored alone gets every core (the shortest latency) and
        requests scored at the same time get one core each: one thread per encoder call wastes nothing
        on keeping threads in step, which on small batches costs more than it gains.
        """
        return self.threads is None and self.scoring_workers > 1


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address of this machine only (127.0.0.0/8, ::1 or ``localhost``)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_token(path: str | os.PathLike) -> str:
    """The bearer token in the file ``path`` (surrounding whitespace dropped); FrozenASDError if unusable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FrozenASDError(f"--token-file {path}: cannot be read ({reason})") from exc
    token = text.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise FrozenASDError(
            f"--token-file {path}: the token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))' > token.txt`)"
        )
    if any(c.isspace() or not c.isprintable() for c in token):
        raise FrozenASDError(f"--token-file {path}: the token holds spaces or control characters")
    return token
