"""Test support shipped with the library.

- :class:`FakeBackend`: scripted outputs, for plumbing tests of code that uses a guard.
- :func:`build_tiny_model`: a tiny random guard of the real architecture, built offline
  (``python -m guardrail.testing tiny-model OUT_DIR``).
- :func:`serve_app`: run an ASGI app (e.g. the moderation server) on 127.0.0.1 in a thread.
- :func:`build_tiny_gguf`: its GGUF files for the llama.cpp backend
  (``python -m guardrail.testing tiny-model OUT_DIR --gguf``).
- :func:`fill_hub_cache`: files laid out in a Hugging Face cache as ``hf_hub_download`` leaves
  them, so hub ids resolve offline.
"""

from __future__ import annotations

from typing import Any

from guardrail.backends.fake import FakeBackend, result_output

__all__ = [
    "FakeBackend",
    "build_tiny_gguf",
    "build_tiny_model",
    "cached_tiny_gguf",
    "cached_tiny_model",
    "fill_hub_cache",
    "result_output",
    "serve_app",
]


def build_tiny_model(*args: Any, **kwargs: Any):  # noqa: ANN201 - re-export without importing torch
    from guardrail.testing.tiny import build_tiny_model as build

    return build(*args, **kwargs)


def cached_tiny_model(*args: Any, **kwargs: Any):  # noqa: ANN201
    from guardrail.testing.tiny import cached_tiny_model as cached

    return cached(*args, **kwargs)


def serve_app(*args: Any, **kwargs: Any):  # noqa: ANN201 - re-export without importing uvicorn
    from guardrail.testing.server import serve_app as serve

    return serve(*args, **kwargs)


def build_tiny_gguf(*args: Any, **kwargs: Any):  # noqa: ANN201
    from guardrail.testing.tiny import build_tiny_gguf as build

    return build(*args, **kwargs)


def cached_tiny_gguf(*args: Any, **kwargs: Any):  # noqa: ANN201
    from guardrail.testing.tiny import cached_tiny_gguf as cached

    return cached(*args, **kwargs)


def fill_hub_cache(*args: Any, **kwargs: Any):  # noqa: ANN201
    from guardrail.testing.hub import fill_hub_cache as fill

    return fill(*args, **kwargs)
