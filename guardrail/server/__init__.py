"""An OpenAI-compatible moderation server around a :class:`~guardrail.Guard`.

``create_app(guard, settings)`` builds the FastAPI app; ``python -m guardrail serve`` runs it
with uvicorn. Install with ``pip install "guardrail-vl[server]"``. See docs/server.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guardrail.server.settings import ServerSettings

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.guard import Guard

__all__ = ["ServerSettings", "create_app"]


def create_app(guard: Guard, settings: ServerSettings | None = None) -> Any:
    """Build the FastAPI application serving ``guard`` (see :mod:`guardrail.server.app`)."""
    from guardrail.server.app import create_app as _create_app

    return _create_app(guard, settings)
