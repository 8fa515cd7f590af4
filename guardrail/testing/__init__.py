"""Test support shipped with the library.

- :class:`FakeBackend`: scripted outputs, for plumbing tests of code that uses a guard.
- :func:`build_tiny_model`: a tiny random guard of the real architecture, built offline
  (``python -m guardrail.testing tiny-model OUT_DIR``).
- :func:`serve_app`: run an ASGI app (e.g. the moderation server) on 127.0.0.1 in a thread.
"""

from __future__ import annotations

from typing import Any

from guardrail.backends.fake import FakeBackend, result_output

__all__ = ["FakeBackend", "build_tiny_model", "cached_tiny_model", "result_output", "serve_app"]


def build_tiny_model(*args: Any, **kwargs: Any):  # noqa: ANN201 - re-export without importing torch
    from guardrail.testing.tiny import build_tiny_model as build

    return build(*args, **kwargs)


def cached_tiny_model(*args: Any, **kwargs: Any):  # noqa: ANN201
    from guardrail.testing.tiny import cached_tiny_model as cached

    return cached(*args, **kwargs)


def serve_app(*args: Any, **kwargs: Any):  # noqa: ANN201 - re-export without importing uvicorn
    from guardrail.testing.server import serve_app as serve

    return serve(*args, **kwargs)
