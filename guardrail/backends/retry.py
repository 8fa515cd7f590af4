"""Retries with exponential backoff, written once for a sync and an async caller.

:class:`RetryPolicy` says how long to wait before the next attempt; :func:`retry_flow` is one
call's attempts as a generator that does no I/O (as httpx's auth flows are): it yields ``None``
for "send now" and a number of seconds for "wait, then go on", receives what each send gave, and
returns the call's result. :func:`run_sync` and :func:`run_async` drive it with a blocking or an
awaitable send::

    flow = retry_flow(policy, deadline, read=parse, fail=give_up)
    result = run_sync(flow, send)           # or: await run_async(flow, asend)
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from guardrail.errors import BackendError, ConfigurationError

__all__ = ["Answer", "RetryPolicy", "parse_retry_after", "retry_flow", "run_async", "run_sync"]

T = TypeVar("T")
#: What one send gives: the HTTP status, the body and the ``Retry-After`` header (or None).
Answer = tuple[int, bytes, "str | None"]
Flow = Generator["float | None", "Answer | BackendError | None", T]


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a retryable error (``BackendError.retryable``: connection errors, 429, 5xx) up to
    ``max_retries`` times, waiting ``backoff_s`` doubled at each retry, at most
    ``max_backoff_s``; a ``Retry-After`` the server sends lengthens the wait (within that cap)."""

    max_retries: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff_s < 0:
            raise ConfigurationError("max_retries and backoff_s must be >= 0")

    def delay(self, attempt: int, error: BaseException, retry_after: str | None = None) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or None to give up.

        >>> RetryPolicy(backoff_s=0.5).delay(1, BackendError("busy", retryable=True))
        1.0
        """
        if attempt >= self.max_retries or not getattr(error, "retryable", False):
            return None
        delay = min(self.backoff_s * (2**attempt), self.max_backoff_s)
        hinted = parse_retry_after(retry_after)
        if hinted is not None:
            delay = min(max(delay, hinted), self.max_backoff_s)
        return delay


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (a number of seconds or an HTTP date); None when
    absent or unreadable (a server's bad header is ignored, not an error of the call)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_flow(
    policy: RetryPolicy,
    deadline: float,
    read: Callable[[int, bytes], T],
    fail: Callable[[BackendError], T],
    clock: Callable[[], float] = time.monotonic,
) -> Flow[T]:
    """One call's attempts until ``deadline`` (a ``clock()`` time).

    Yields ``None`` to have the caller send, and gets back the :data:`Answer` or the
    :class:`~guardrail.errors.BackendError` the send raised; returns ``read(status, body)`` of
    the first answer that reads without a ``BackendError``, or ``fail(error)`` with the last
    error once the policy gives up or the next wait would pass the deadline. Between attempts
    it yields the seconds to wait (the caller sends back ``None``). Errors other than
    ``BackendError`` from ``read`` propagate.
    """
    attempt = 0
    while True:
        answer = yield None
        retry_after = None
        if isinstance(answer, BackendError):
            error = answer
        else:
            status, content, retry_after = answer  # type: ignore[misc]
            try:
                return read(status, content)
            except BackendError as exc:
                error = exc
        delay = policy.delay(attempt, error, retry_after)
        if delay is None or clock() + delay >= deadline:
            return fail(error)
        yield delay
        attempt += 1


def run_sync(flow: Flow[T], send: Callable[[], Answer]) -> T:
    """Drive ``flow`` with a blocking ``send`` (waits sleep the thread)."""
    try:
        step = next(flow)
        while True:
            reply: Any = None
            if step is None:
                try:
                    reply = send()
                except BackendError as exc:
                    reply = exc
            else:
                time.sleep(step)
            step = flow.send(reply)
    except StopIteration as done:
        return done.value


async def run_async(flow: Flow[T], send: Callable[[], Awaitable[Answer]]) -> T:
    """Drive ``flow`` with an awaitable ``send`` (waits sleep the task)."""
    try:
        step = next(flow)
        while True:
            reply: Any = None
            if step is None:
                try:
                    reply = await send()
                except BackendError as exc:
                    reply = exc
            else:
                await asyncio.sleep(step)
            step = flow.send(reply)
    except StopIteration as done:
        return done.value
