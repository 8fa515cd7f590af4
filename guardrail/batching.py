"""Micro-batching: concurrent async checks share backend calls.

A local model checks a batch of 32 requests in little more time than one; an app (or the
moderation server) that receives requests one at a time from many users would otherwise send
them to the model one by one. The micro-batcher gathers requests from concurrent
:meth:`~guardrail.Guard.amoderate` / :meth:`~guardrail.Guard.amoderate_batch` calls into batches:

- a batch starts when ``max_batch_size`` requests wait, or ``max_wait_ms`` after the first
  request of the batch arrived, whichever comes first, and only when fewer than
  ``max_concurrent_batches`` batches are running; while all are running, requests keep
  gathering, so the next batch takes everything that arrived meanwhile (up to the size bound);
- the wait applies only while requests arrive together (the previous batch had more than
  one): a lone request at a quiet time goes to the backend at once, so batching costs a
  single caller nothing; requests started in the same event-loop turn always share a batch;
- each request gets its own result, in its caller's order; a failure that concerns one request
  (a per-item backend error, an unparsable output with ``on_parse_error="raise"``) reaches only
  its caller; invalid input raises in its caller before it is queued; a failure of the whole
  backend call reaches every caller of that batch;
- a caller that is cancelled (a timeout) leaves the batch without disturbing the others.

On by default for the async methods (``Guard(batching=True)``); ``batching=False`` sends each
call to the backend as it comes. The sync methods never wait for others.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from guardrail.errors import ConfigurationError

__all__ = ["BatchingOptions", "MicroBatcher"]

T = TypeVar("T")


@dataclass(frozen=True)
class BatchingOptions:
    """How concurrent async checks are gathered into backend batches.

    - ``max_batch_size``: requests per backend call.
    - ``max_wait_ms``: how long the first request of a batch waits for company, when requests
      have been arriving together. Requests of the same event-loop turn always share a batch,
      even with 0.
    - ``max_concurrent_batches``: batches running at once (default: the backend's
      ``batch_concurrency``, 1 for local models, which run one call at a time anyway).
    """

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_concurrent_batches: int | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_batch_size, bool)
            or not isinstance(self.max_batch_size, int)
            or self.max_batch_size < 1
        ):
            raise ConfigurationError(f"max_batch_size must be an integer >= 1; got {self.max_batch_size!r}")
        if not isinstance(self.max_wait_ms, (int, float)) or self.max_wait_ms < 0:
            raise ConfigurationError(f"max_wait_ms must be >= 0; got {self.max_wait_ms!r}")
        if self.max_concurrent_batches is not None and self.max_concurrent_batches < 1:
            raise ConfigurationError("max_concurrent_batches must be >= 1")


class _LoopState:
    """The queue of one event loop (asyncio objects cannot cross loops)."""

    def __init__(self, slots: int):
        self.queue: deque[tuple[Any, asyncio.Future]] = deque()
        self.full = asyncio.Event()
        self.slots = asyncio.Semaphore(slots)
        self.dispatcher: asyncio.Task | None = None
        self.running: set[asyncio.Task] = set()
        self.last_size = 0


class MicroBatcher(Generic[T]):
    """Gathers items submitted by concurrent coroutines and runs them in batches.

    ``run(items)`` processes one batch and returns one outcome per item, in order: a result, or
    an exception instance that is raised in that item's caller only. If ``run`` itself raises,
    every caller of the batch gets the exception. ``on_batch(size)`` is called per batch.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[Any]]],
        options: BatchingOptions,
        concurrency: int = 1,
        on_batch: Callable[[int], None] | None = None,
    ):
        self._run = run
        self.options = options
        self.concurrency = options.max_concurrent_batches or max(1, concurrency)
        self._on_batch = on_batch
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._lock:  # event loops in several threads may share one guard
            state = self._states.get(loop)
            if state is None:
                state = self._states[loop] = _LoopState(self.concurrency)
        return state

    async def submit(self, items: Sequence[T]) -> list[Any]:
        """Queue ``items`` and wait for their outcomes: one result or exception instance per
        item (per-item failures are returned, not raised); raises when a whole batch failed."""
        loop = asyncio.get_running_loop()
        state = self._state()
        futures = []
        for item in items:
            future = loop.create_future()
            state.queue.append((item, future))
            futures.append(future)
        if len(state.queue) >= self.options.max_batch_size:
            state.full.set()
        if state.dispatcher is None or state.dispatcher.done():
            state.dispatcher = loop.create_task(self._dispatch(state))
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            for f in futures:
                if not f.done():
                    f.cancel()
                elif not f.cancelled():
                    f.exception()  # retrieved: no "exception never retrieved" report
            raise

    async def _dispatch(self, state: _LoopState) -> None:
        size = self.options.max_batch_size
        wait = self.options.max_wait_ms / 1000.0
        while state.queue:
            if len(state.queue) < size:
                state.full.clear()
                # Wait for company only when requests have been arriving together (the last
                # batch had several): a lone caller at a quiet time goes out at once.
                if wait > 0 and state.last_size > 1:
                    try:
                        await asyncio.wait_for(state.full.wait(), wait)
                    except TimeoutError:
                        pass
                else:
                    await asyncio.sleep(0)  # callers of this loop turn still join
            await state.slots.acquire()
            batch = []
            while state.queue and len(batch) < size:
                item, future = state.queue.popleft()
                if not future.done():  # skip callers that were cancelled while waiting
                    batch.append((item, future))
            if not batch:
                state.slots.release()
                continue
            state.last_size = len(batch)
            task = asyncio.get_running_loop().create_task(self._run_batch(state, batch))
            state.running.add(task)
            task.add_done_callback(state.running.discard)

    async def _run_batch(self, state: _LoopState, batch: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            if self._on_batch is not None:
                self._on_batch(len(batch))
            outcomes = await self._run([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"batch runner returned {len(outcomes)} outcomes for {len(batch)} items")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - the whole call failed: every caller gets it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            state.slots.release()
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)  # exception instances included: the caller raises them
