"""The cloud's API on a real uvicorn server, for tests that need real sockets (live
streams, a client that goes away mid-upload, schemathesis over HTTP)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from microbrain.broker.embedded import free_port


@dataclass(frozen=True)
class Served:
    """Where a served app answers."""

    url: str  # http://127.0.0.1:PORT
    port: int  # for tests that speak raw HTTP over a socket


@contextmanager
def serve(app: Any, *, start_timeout: float = 30.0, **config: Any) -> Iterator[Served]:
    """Run ``app`` on a free loopback port in a thread; yield where; stop it after.

    ``config`` goes to :class:`uvicorn.Config` (e.g. ``log_config=None`` so that uvicorn's
    loggers propagate to a test's handler). Start-up is polled with a deadline: a loaded
    machine may take seconds.
    """
    config.setdefault("log_level", "warning")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **config))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"uvicorn on port {port} exited before it started")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn on port {port} did not start in {start_timeout} s")
            time.sleep(0.02)
        yield Served(f"http://127.0.0.1:{port}", port)
    finally:
        server.should_exit = True
        thread.join(30)
