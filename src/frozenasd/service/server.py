"""Running the service: the models loaded, then uvicorn serving the application until it is stopped.

uvicorn stops on SIGINT or SIGTERM: it closes the listening socket, lets the requests in flight finish
(at most ``grace_seconds``), then the application's thread pool finishes its work and the temporary
folder is removed.
"""

from __future__ import annotations

import sys
from typing import Any

from frozenasd.cores import one_blas_thread_from_now
from frozenasd.errors import FrozenASDError
from frozenasd.monitor.history import History
from frozenasd.service.config import ServiceConfig, is_loopback
from frozenasd.service.registry import Registry

INSTALL_HINT = "the scoring service needs the serve extra: pip install 'frozenasd[serve]'"


def require_extra() -> None:
    """FrozenASDError naming the extra when FastAPI, uvicorn or python-multipart is missing."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise FrozenASDError(f"{INSTALL_HINT} (missing: {', '.join(missing)})")


def build_server(config: ServiceConfig, registry: Registry | None = None, **uvicorn_options: Any):
    """A ``uvicorn.Server`` for ``config`` (``registry``: the models, loaded now when not given)."""
    require_extra()
    import uvicorn

    from frozenasd.service.app import create_app

    config.check()
    registry = registry or Registry.load(
        list(config.fitted),
        max_seconds=config.max_seconds,
        threads=config.threads,
        one_thread=config.side_by_side_on_one_core,
    )
    app = create_app(registry, config)
    options = {
        "host": config.host,
        "port": config.port,
        "timeout_graceful_shutdown": config.grace_seconds,
        "server_header": False,
        "log_level": "info",
    } | uvicorn_options
    return uvicorn.Server(uvicorn.Config(app, **options))


def serve(config: ServiceConfig) -> int:
    """Load the models and serve until stopped; the exit status (1 when the port could not be bound)."""
    config.check()
    require_extra()
    one_blas_thread_from_now()  # scoring threads overlap: their own scopes could not hold the limit
    history = None if config.history is None else History(config.history)
    registry = Registry.load(
        list(config.fitted),
        max_seconds=config.max_seconds,
        threads=config.threads,
        history=history,
        one_thread=config.side_by_side_on_one_core,
    )
    for name, served in registry.models.items():
        print(f"model {name}: {served.model!r} from {served.path}", file=sys.stderr)
    sessions = registry.sessions
    print(f"{sessions.opened} encoder session(s) for {len(registry.models)} model(s)", file=sys.stderr)
    workers = config.scoring_workers
    if config.side_by_side_on_one_core:
        how = "a request alone on every core, requests side by side on one core each"
    else:
        how = f"{config.threads or 'every core'} thread(s) per encoder call"
    print(f"{workers} scoring worker(s): {how}", file=sys.stderr)
    if config.token is None:
        print("no --token-file: every client on this machine may score", file=sys.stderr)
    elif not is_loopback(config.host):
        print(f"listening beyond this machine on {config.host}; clients need the token", file=sys.stderr)
    server = build_server(config, registry)
    server.run()
    return 0 if server.started else 1
