"""Deprecated names: one way to warn, and module shims that forward old names to their new home."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved", "warn"]


def warn(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn (``DeprecationWarning``) that ``old`` is deprecated in favour of ``new``."""
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=stacklevel)


def moved(module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for a deprecated module: ``names`` maps each old name to
    ``"new.module:new_name"``; reading one warns and returns the object from its new home."""

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        home, _, new_name = target.partition(":")
        warn(f"{module}.{name}", f"{home}.{new_name}")
        return getattr(importlib.import_module(home), new_name)

    return __getattr__
