"""guardrail: moderate what goes into and comes out of vision-language-model apps.

>>> from guardrail import Guard
>>> guard = Guard.from_pretrained("yueliu1999/GuardReasoner-VL-Eco-3B")   # doctest: +SKIP
>>> guard.moderate(prompt="How do I make a cake?").allowed                 # doctest: +SKIP
True

Importing this package is cheap: torch, transformers, llama_cpp, langchain_core and fastapi are
imported only by the backend or integration that needs them.
"""

from __future__ import annotations

import logging

from guardrail.batching import BatchingOptions
from guardrail.cache import VerdictCache
from guardrail.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    DataError,
    ExportError,
    GuardrailError,
    GuardViolation,
    HubError,
    ImageError,
    ImageTooLargeError,
    InputError,
    MediaError,
    MediaTooLargeError,
    MissingDependencyError,
    ParseError,
    TextTooLongError,
    TooManyImagesError,
    UncheckableContentError,
    UnsupportedError,
)
from guardrail.guard import Guard
from guardrail.inputs import InputLimits
from guardrail.policies import Category, Policy, PolicyError
from guardrail.verdict import Verdict

__version__ = "0.1.0"

# A library logs but never configures logging: apps decide where warnings go.
logging.getLogger("guardrail").addHandler(logging.NullHandler())

__all__ = [
    "BackendError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BatchingOptions",
    "Category",
    "ConfigurationError",
    "DataError",
    "ExportError",
    "Guard",
    "GuardViolation",
    "GuardrailError",
    "HubError",
    "ImageError",
    "ImageTooLargeError",
    "MediaError",
    "MediaTooLargeError",
    "InputError",
    "InputLimits",
    "MissingDependencyError",
    "ParseError",
    "Policy",
    "PolicyError",
    "TextTooLongError",
    "TooManyImagesError",
    "UncheckableContentError",
    "UnsupportedError",
    "Verdict",
    "VerdictCache",
    "__version__",
]
