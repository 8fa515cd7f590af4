"""The run environment of the training stages: torch threads, CUDA checks, a stopwatch.

torch is imported inside the functions (and only when installed).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator

from guardrail._deps import require

__all__ = ["cuda_available", "cuda_bf16", "timer", "torch_threads"]

_EXTRA = "training"


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available())


def cuda_bf16() -> bool:
    """Whether a CUDA GPU that supports bf16 is present (the default of ``bf16``)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch CPU threads (None: leave as is), restoring the previous count."""
    if n is None:
        yield
        return
    torch = require("torch", extra=_EXTRA)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def timer() -> functools.partial[float]:
    """A stopwatch: calling the result gives the seconds since ``timer()`` was called."""
    return functools.partial(lambda t0: time.perf_counter() - t0, time.perf_counter())
