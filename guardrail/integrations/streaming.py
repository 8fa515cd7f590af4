"""Check streamed output in windows, releasing text only after it was checked.

A streamed response is checked several times as it grows: whenever ``window`` characters have
arrived since the last check, the guard checks the request together with **the whole response so
far**, and once more at the end if anything arrived after the last check. Chunks are never split:
a window closes after the chunk that fills it.

- **Gated** (default): chunks are held until a check covering them passes, then released. A
  harmful continuation is cut off before any of it reaches the user. The price is latency: the
  first text appears after ``window`` characters have been generated *and* one guard check has
  run, and each later window waits for its check. ``window=None`` holds everything until the
  single check at the end.
- **Optimistic**: chunks are released as they arrive and the checks run alongside (a worker
  thread for sync streams, a task for async ones; at most one check in flight, each covering all
  text so far). When a check blocks, the stream stops at that point; text released before the
  verdict came back has already been seen. The final check still runs before the stream ends.

The bookkeeping (:class:`WindowGate`) is pure; :func:`gate_stream` and :func:`agate_stream` are
the sync and async drivers. Both close the source stream when they stop early.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from guardrail.integrations.policy import blocks
from guardrail.verdict import Verdict

__all__ = ["WindowGate", "agate_stream", "gate_stream"]

#: Replacement items a blocked stream yields before it ends (the block handler's return value).
BlockHandler = Callable[[Verdict], Iterable[Any]]


class WindowGate:
    """Pure bookkeeping for windowed checks of one stream."""

    def __init__(self, window: int | None):
        self.window = window
        self._parts: list[str] = []
        self._text = ""
        self.length = 0
        self.pending: list[Any] = []
        #: Length of the text the last started check covered.
        self.checked = 0

    @property
    def text(self) -> str:
        """All the text so far."""
        if self._parts:
            self._text += "".join(self._parts)
            self._parts = []
        return self._text

    def add(self, chunk: Any, text: str, *, hold: bool = True) -> bool:
        """Record a chunk (held until released when ``hold``); True when a check is due."""
        if hold:
            self.pending.append(chunk)
        if text:
            self._parts.append(text)
            self.length += len(text)
        return self.window is not None and self.length - self.checked >= self.window

    def start_check(self) -> str:
        """The text a check should cover now; marks it as covered."""
        self.checked = self.length
        return self.text

    def release(self) -> list[Any]:
        """Chunks held so far (call after a check of all the text passed)."""
        out, self.pending = self.pending, []
        return out

    @property
    def needs_final(self) -> bool:
        """Whether text arrived after the last check (or none ran and there is text)."""
        return self.length > self.checked


def gate_stream(
    source: Iterable[Any],
    *,
    text_of: Callable[[Any], str | None],
    check: Callable[[str], Verdict],
    on_block: BlockHandler,
    window: int | None,
    optimistic: bool = False,
) -> Iterator[Any]:
    """Yield ``source``'s chunks, checking their text with ``check`` in windows (see module)."""
    gate = WindowGate(window)
    iterator = iter(source)
    executor: ThreadPoolExecutor | None = None
    inflight: Future[Verdict] | None = None
    try:
        for chunk in iterator:
            due = gate.add(chunk, text_of(chunk) or "", hold=not optimistic)
            if not optimistic:
                if due:
                    verdict = check(gate.start_check())
                    if blocks(verdict, "output"):
                        yield from on_block(verdict)
                        return
                    yield from gate.release()
                continue
            if inflight is not None and inflight.done():
                verdict, inflight = inflight.result(), None
                if blocks(verdict, "output"):
                    yield from on_block(verdict)
                    return
            yield chunk
            if due and inflight is None:
                executor = executor or ThreadPoolExecutor(1, thread_name_prefix="guardrail-check")
                inflight = executor.submit(check, gate.start_check())
        if inflight is not None:
            verdict, inflight = inflight.result(), None
            if blocks(verdict, "output"):
                yield from on_block(verdict)
                return
        if gate.needs_final:
            verdict = check(gate.start_check())
            if blocks(verdict, "output"):
                yield from on_block(verdict)
                return
        yield from gate.release()
    finally:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


async def agate_stream(
    source: AsyncIterable[Any],
    *,
    text_of: Callable[[Any], str | None],
    check: Callable[[str], Awaitable[Verdict]],
    on_block: Callable[[Verdict], Awaitable[Iterable[Any]]],
    window: int | None,
    optimistic: bool = False,
) -> AsyncIterator[Any]:
    """Async twin of :func:`gate_stream`; ``check`` and ``on_block`` are coroutines."""
    gate = WindowGate(window)
    iterator = aiter(source)
    inflight: asyncio.Task[Verdict] | None = None
    try:
        async for chunk in iterator:
            due = gate.add(chunk, text_of(chunk) or "", hold=not optimistic)
            if not optimistic:
                if due:
                    verdict = await check(gate.start_check())
                    if blocks(verdict, "output"):
                        for item in await on_block(verdict):
                            yield item
                        return
                    for item in gate.release():
                        yield item
                continue
            if inflight is not None and inflight.done():
                verdict, inflight = inflight.result(), None
                if blocks(verdict, "output"):
                    for item in await on_block(verdict):
                        yield item
                    return
            yield chunk
            if due and inflight is None:
                inflight = asyncio.ensure_future(check(gate.start_check()))
        if inflight is not None:
            verdict, inflight = await inflight, None
            if blocks(verdict, "output"):
                for item in await on_block(verdict):
                    yield item
                return
        if gate.needs_final:
            verdict = await check(gate.start_check())
            if blocks(verdict, "output"):
                for item in await on_block(verdict):
                    yield item
                return
        for item in gate.release():
            yield item
    finally:
        if inflight is not None:
            if inflight.done():
                if not inflight.cancelled():
                    inflight.exception()  # retrieved: an error here is moot once we stopped
            else:
                inflight.cancel()
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            result = aclose()
            if inspect.isawaitable(result):
                await result
