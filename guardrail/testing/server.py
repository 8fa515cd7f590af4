"""Run an ASGI app (our moderation server, or your own) on 127.0.0.1 in a background thread.

>>> from guardrail import Guard
>>> from guardrail.server import create_app
>>> from guardrail.testing import FakeBackend, serve_app
>>> with serve_app(create_app(Guard(FakeBackend()))) as base_url:   # doctest: +SKIP
...     ...  # point an OpenAI client at base_url + "/v1"
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from guardrail._deps import require

__all__ = ["serve_app"]


@contextlib.contextmanager
def serve_app(app: Any, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yields ``http://host:port``; stops on exit."""
    uvicorn = require("uvicorn", extra="server")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
    thread = threading.Thread(target=server.run, name="guardrail-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout)
