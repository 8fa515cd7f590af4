"""Backends: one module per engine, imported lazily.

=================  ==========================================  ===============================
name               module                                      loads
=================  ==========================================  ===============================
``transformers``   :mod:`guardrail.backends.transformers`      local path or hub id (GPU/CPU)
``remote``         :mod:`guardrail.backends.remote`            OpenAI-compatible endpoint
``llamacpp``       :mod:`guardrail.backends.llamacpp`          GGUF file (+ mmproj), CPU
``fake``           :mod:`guardrail.backends.fake`              scripted outputs, for tests
=================  ==========================================  ===============================

:meth:`guardrail.Guard.from_pretrained` looks its ``backend`` name up in :data:`BACKENDS` and calls
that loader with the model path and options; heavy libraries are imported only then. A backend
object built by hand goes into ``Guard(backend)``.
"""

from __future__ import annotations

import importlib
from typing import Any

from guardrail import _deprecated
from guardrail.backends.base import Backend, Generation, GenerationOptions
from guardrail.errors import ConfigurationError

__all__ = ["BACKENDS", "Backend", "Generation", "GenerationOptions", "load_backend"]

# name -> "module:callable"; the callable takes (model, **options) and returns a Backend.
BACKENDS: dict[str, str] = {
    "transformers": "guardrail.backends.transformers:TransformersBackend._load",
    "remote": "guardrail.backends.remote:load",
    "llamacpp": "guardrail.backends.llamacpp:LlamaCppBackend._load",
}


def load_backend(name: str, model: Any, **options: Any) -> Backend:
    """Deprecated: use ``Guard.from_pretrained(model, backend=name, **options)`` (``guard.backend``)."""
    _deprecated.warn(
        "guardrail.backends.load_backend", "Guard.from_pretrained(model, backend=name, ...).backend"
    )
    return _load(name, model, **options)


def _load(name: str, model: Any, **options: Any) -> Backend:
    """Create backend ``name`` for ``model`` (a path, hub id, or what that backend takes)."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ConfigurationError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}") from None
    module_name, _, attr = target.partition(":")
    factory: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        factory = getattr(factory, part)
    try:
        return factory(model, **options)
    except TypeError as exc:
        raise ConfigurationError(f"bad options for backend {name!r}: {exc}") from exc
