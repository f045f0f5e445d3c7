"""A real uvicorn server of the scoring service on a free port of 127.0.0.1, in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from frozenasd.service.config import ServiceConfig
from frozenasd.service.registry import Registry
from frozenasd.service.server import build_server


class Running:
    """A started server: its base ``url`` and the uvicorn ``server`` (``stop()`` asks it to exit)."""

    def __init__(self, server, thread: threading.Thread) -> None:
        self.server, self.thread = server, thread
        port = server.servers[0].sockets[0].getsockname()[1]
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the server did not stop"


@contextmanager
def running(registry: Registry, config: ServiceConfig, **options) -> Iterator[Running]:
    """Serve ``registry`` with ``config`` (host 127.0.0.1, port chosen by the system) until the block ends."""
    config = replace(config, host="127.0.0.1", port=0)
    server = build_server(config, registry, log_level="warning", **options)
    thread = threading.Thread(target=server.run, name="frozenasd-serve-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.02)
    handle = Running(server, thread)
    try:
        yield handle
    finally:
        if thread.is_alive():
            handle.stop()
