"""Deprecated module: the recipe runner is :mod:`guardrail.training.recipe` (this name was easy
to confuse with :mod:`guardrail.moderation`, the moderation pass). Importing a name from here still
works, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    from guardrail.training import recipe

    if name.startswith("__") or not hasattr(recipe, name):
        raise AttributeError(f"module 'guardrail.training.pipeline' has no attribute {name!r}")
    warnings.warn(
        f"guardrail.training.pipeline is deprecated; import {name} from guardrail.training.recipe",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(recipe, name)
