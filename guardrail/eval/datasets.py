"""Deprecated module: its names moved to :mod:`guardrail.eval.benchmark` (the data model and
gold labels), :mod:`guardrail.eval.loaders` (the file readers) and
:mod:`guardrail.eval.registry` (the benchmark names, :func:`load_benchmark`); samples are
:class:`guardrail.samples.Sample`. Importing a name from here still works, with a
``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

#: The modules the names moved to; each one's ``__all__`` says which.
_NEW_HOMES = ("guardrail.eval.benchmark", "guardrail.eval.loaders", "guardrail.eval.registry")


def split_guardreasoner_input(text: str) -> tuple[str | None, str | None]:
    """Deprecated: use :func:`guardrail.profiles.parse_user_text` (its
    :class:`~guardrail.errors.FormatError` is a ValueError, as this function's error was)."""
    warnings.warn(
        "guardrail.eval.datasets.split_guardreasoner_input is deprecated; use guardrail.profiles.parse_user_text",
        DeprecationWarning,
        stacklevel=2,
    )
    from guardrail.profiles import parse_user_text

    return parse_user_text(text)


def __getattr__(name: str) -> Any:
    for home in _NEW_HOMES:
        module = importlib.import_module(home)
        if name in module.__all__:
            warnings.warn(
                f"guardrail.eval.datasets is deprecated; import {name} from {home}",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(module, name)
    raise AttributeError(f"module 'guardrail.eval.datasets' has no attribute {name!r}")


def __dir__() -> list[str]:
    names = [n for home in _NEW_HOMES for n in importlib.import_module(home).__all__]
    return sorted([*names, "split_guardreasoner_input"])
