"""Observers: functions a :class:`~guardrail.Guard` calls with every verdict it returns.

An observer is ``fn(verdict, info)``, given to ``Guard(..., on_verdict=fn)`` or
``guard.add_observer(fn)``; ``info`` is a :class:`RequestInfo`. See docs/concepts.md#observers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.profiles.base import ModerationInput
    from guardrail.verdict import Verdict

__all__ = ["Observer", "RequestInfo", "called_by", "caller", "notify"]

log = logging.getLogger("guardrail")


@dataclass(frozen=True)
class RequestInfo:
    """What an observer is told about the request behind a verdict.

    - ``request``: the validated request (``prompt``, ``response``, decoded ``images``); ``None``
      for a verdict decided before the request was read (the server's timeout verdicts).
    - ``method``: the guard method that returned the verdict (``"moderate"``, ``"amoderate"``,
      ``"moderate_batch"``, ``"amoderate_batch"``), or ``"server"`` for a verdict the server
      decided itself.
    - ``index``: the request's position in its batch (0 for single checks).
    - ``mode``: ``"reasoning"``, ``"fast"`` or ``"cascade"``.
    - ``source``: who called the guard: ``"decorator"`` (``@guard.check``), ``"langchain"``,
      ``"server"``, or ``None`` for a direct call.
    - ``stage``: ``"input"`` or ``"output"`` for the integrations' checks, else ``None``.
    """

    request: ModerationInput | None
    method: str
    index: int = 0
    mode: str = "reasoning"
    source: str | None = None
    stage: str | None = None


Observer = Callable[["Verdict", RequestInfo], Any]

_CALLER: ContextVar[tuple[str | None, str | None]] = ContextVar("guardrail_caller", default=(None, None))


@contextlib.contextmanager
def called_by(source: str, stage: str | None = None) -> Iterator[None]:
    """Mark the guard calls made inside this block (in this thread or task) as coming from
    ``source`` at ``stage``, for :attr:`RequestInfo.source` and :attr:`RequestInfo.stage`."""
    token = _CALLER.set((source, stage))
    try:
        yield
    finally:
        _CALLER.reset(token)


def caller() -> tuple[str | None, str | None]:
    """The ``(source, stage)`` of the current :func:`called_by` block, ``(None, None)`` outside."""
    return _CALLER.get()


def notify(observers: Sequence[Observer], verdicts: Sequence[Verdict], infos: Sequence[RequestInfo]) -> None:
    """Call every observer with each verdict and its info. An observer that raises is logged
    (``guardrail`` logger, with the traceback) and skipped: it never changes a verdict."""
    for verdict, info in zip(verdicts, infos, strict=True):
        for observer in observers:
            try:
                observer(verdict, info)
            except Exception:  # noqa: BLE001 - an observer's failure is the app's, not the check's
                log.exception("verdict observer %r failed (the verdict is unchanged)", observer)
