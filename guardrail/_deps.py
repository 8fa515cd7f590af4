"""Import optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from guardrail.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, *, extra: str, package: str | None = None, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``extra``.

    >>> require("json", extra="core").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name not in (None, top, module) and not (exc.name or "").startswith(top + "."):
            raise  # the package is there but one of *its* imports is broken: show that
        raise MissingDependencyError(package or top, extra, feature) from exc
