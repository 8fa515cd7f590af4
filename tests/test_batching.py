"""Micro-batching of concurrent async checks (scripted backend for exact call counts; the tiny
model for equality with sequential checks)."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest

from guardrail import BackendError, BatchingOptions, ConfigurationError, Guard, InputError, ParseError
from guardrail.testing import FakeBackend, result_output


def user_text(prompt) -> str:
    return re.search(r"Human user:\n(.*?)\n\nAI assistant", prompt.text, re.DOTALL).group(1)


def labelled(prompt) -> str:
    """A verdict that depends on the request and names it, so a mixed-up order would show."""
    return result_output("harmful" if "bad" in prompt.text else "unharmful", reasoning=user_text(prompt))


class SlowFake(FakeBackend):
    """Holds each call a little so that callers pile up behind it, as behind a real model."""

    def __init__(self, *args, delay: float = 0.05, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay = delay
        self.active = 0
        self.max_active = 0
        self._count = threading.Lock()

    def generate(self, prompts, options):
        with self._count:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            return super().generate(prompts, options)
        finally:
            with self._count:
                self.active -= 1


async def test_concurrent_calls_share_backend_calls_and_keep_their_order():
    backend = FakeBackend(respond=labelled)
    guard = Guard(backend)
    prompts = [f"request {i} {'bad' if i % 3 == 0 else 'fine'}" for i in range(20)]
    verdicts = await asyncio.gather(*(guard.amoderate(prompt=p) for p in prompts))
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 20
    assert [v.request_harmful for v in verdicts] == [i % 3 == 0 for i in range(20)]
    assert [v.reasoning for v in verdicts] == prompts
    sequential = Guard(FakeBackend(respond=labelled), batching=False)
    expected = [await sequential.amoderate(prompt=p) for p in prompts]
    assert [v.raw_output for v in verdicts] == [v.raw_output for v in expected]
    assert len(sequential.backend.calls) == 20
    assert guard.stats.get("microbatches") == 1 and guard.stats.get("microbatched_items") == 20


async def test_batch_size_is_bounded_and_later_callers_gather_while_a_batch_runs():
    backend = SlowFake(respond=labelled, delay=0.05)
    guard = Guard(backend, batching=BatchingOptions(max_batch_size=8, max_wait_ms=0))
    first = asyncio.ensure_future(guard.amoderate(prompt="first"))
    await asyncio.sleep(0.01)  # the first call is now running alone
    rest = await asyncio.gather(*(guard.amoderate(prompt=f"late {i}") for i in range(20)))
    await first
    sizes = [len(c) for c in backend.calls]
    assert sizes[0] == 1 and max(sizes) <= 8 and sum(sizes) == 21
    assert len(sizes) == 4  # 1, then 20 late callers in batches of at most 8
    assert backend.max_active == 1  # one batch at a time for a local backend
    assert [v.reasoning for v in rest] == [f"late {i}" for i in range(20)]


async def test_amoderate_batch_items_are_batched_with_other_callers():
    backend = FakeBackend(respond=labelled)
    guard = Guard(backend)
    a, b = await asyncio.gather(
        guard.amoderate_batch([{"prompt": "bad one"}, {"prompt": "fine two"}]),
        guard.amoderate_batch([{"prompt": "fine three"}]),
    )
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 3
    assert [v.request_harmful for v in a] == [True, False] and b[0].request_harmful is False


async def test_one_bad_item_does_not_break_the_others():
    outputs = {"boom": BackendError("this one failed"), "garbled": "no labels at all"}

    def respond(prompt):
        for key, out in outputs.items():
            if key in prompt.text:
                return out
        return labelled(prompt)

    backend = FakeBackend(respond=respond)
    guard = Guard(backend, on_parse_error="raise")
    calls = [guard.amoderate(prompt=p) for p in ("bad a", "boom", "garbled", "fine b")]
    calls.append(guard.amoderate(prompt=12345))  # invalid input: raises in its caller only
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0].request_harmful is True and results[3].request_harmful is False
    assert results[1].decided_by == "policy" and "this one failed" in results[1].error
    assert isinstance(results[2], ParseError)
    assert isinstance(results[4], InputError)
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 4  # the invalid item never queued


async def test_whole_batch_failure_reaches_every_caller():
    guard = Guard(FakeBackend(error=BackendError("model crashed")))
    verdicts = await asyncio.gather(*(guard.amoderate(prompt=f"x{i}") for i in range(5)))
    assert all(v.decided_by == "policy" and not v.allowed for v in verdicts)
    guard = Guard(FakeBackend(error=BackendError("model crashed")), on_error="raise")
    results = await asyncio.gather(
        *(guard.amoderate(prompt=f"x{i}") for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, BackendError) for r in results)


async def test_a_cancelled_caller_leaves_the_others_alone():
    backend = SlowFake(respond=labelled, delay=0.2)
    guard = Guard(backend)
    running = asyncio.ensure_future(guard.amoderate(prompt="occupies the model"))
    await asyncio.sleep(0.02)
    waiting = [asyncio.ensure_future(guard.amoderate(prompt=f"fine {i}")) for i in range(3)]
    doomed = asyncio.ensure_future(guard.amoderate(prompt="gives up"))
    await asyncio.sleep(0.02)
    doomed.cancel()
    done = await asyncio.gather(running, *waiting)
    assert all(v.decided_by == "model" for v in done)
    assert doomed.cancelled()
    assert all("gives up" not in p.text for call in backend.calls for p in call)  # left before its batch ran


async def test_the_wait_for_company_is_bounded():
    guard = Guard(FakeBackend(respond=labelled), batching=BatchingOptions(max_batch_size=4, max_wait_ms=5000))
    start = time.perf_counter()
    await asyncio.gather(*(guard.amoderate(prompt=f"p{i}") for i in range(4)))  # full: goes at once
    assert time.perf_counter() - start < 2.5

    guard = Guard(FakeBackend(respond=labelled), batching=BatchingOptions(max_batch_size=64, max_wait_ms=300))
    start = time.perf_counter()
    await guard.amoderate(prompt="alone at a quiet time")  # goes at once
    quiet = time.perf_counter() - start
    await asyncio.gather(*(guard.amoderate(prompt=f"r{i}") for i in range(3)))  # requests arrive together...
    start = time.perf_counter()
    await guard.amoderate(prompt="alone after a burst")  # ...so the next one waits for company, boundedly
    waited = time.perf_counter() - start
    assert quiet < 0.3 <= waited < 2.5
    assert [len(c) for c in guard.backend.calls] == [1, 3, 1]


async def test_fast_and_reasoning_callers_share_one_pass():
    backend = FakeBackend(respond=labelled, score_fn=lambda r: 0.9 if "bad" in r.prompt.text else 0.1)
    guard = Guard(backend)
    a, b, c = await asyncio.gather(guard.amoderate(prompt="bad x", mode="fast"), guard.amoderate(prompt="fine y"),
                                   guard.amoderate(prompt="fine z", mode="fast"))  # fmt: skip
    assert (a.path, b.path, c.path) == ("fast", "reasoning", "fast")
    assert a.request_harmful and not b.request_harmful and not c.request_harmful
    assert len(backend.score_calls) == 1 and len(backend.score_calls[0]) == 2 and len(backend.calls) == 1


def test_batching_works_across_event_loops_and_can_be_turned_off():
    guard = Guard(FakeBackend(respond=labelled))
    for _ in range(2):  # a new loop each time (asyncio.run)
        verdicts = asyncio.run(_many(guard, 5))
        assert len(verdicts) == 5
    assert len(guard.backend.calls) == 2
    off = Guard(FakeBackend(respond=labelled), batching=False)
    asyncio.run(_many(off, 5))
    assert len(off.backend.calls) == 5 and off.batching is None
    with pytest.raises(ConfigurationError):
        BatchingOptions(max_batch_size=0)
    with pytest.raises(ConfigurationError):
        Guard(FakeBackend(), batching="yes")


async def _many(guard, n):
    return await asyncio.gather(*(guard.amoderate(prompt=f"p{i}") for i in range(n)))


@pytest.mark.slow
async def test_tiny_model_batched_verdicts_equal_sequential_ones(vl_backend):
    from tests.conftest import make_image

    items = [{"prompt": f"Question number {i}?"} for i in range(6)] + [
        {"prompt": "What is this?", "images": [make_image()]}, {"prompt": "Hi", "response": "Hello!"}]  # fmt: skip
    for mode in ("reasoning", "fast"):
        batched = Guard(vl_backend, max_new_tokens=6, mode=mode)
        sequential = Guard(vl_backend, max_new_tokens=6, mode=mode, batching=False)
        together = await asyncio.gather(*(batched.amoderate(**item) for item in items))
        one_by_one = [await sequential.amoderate(**item) for item in items]
        assert [v.raw_output for v in together] == [v.raw_output for v in one_by_one]
        assert [v.score for v in together] == pytest.approx([v.score for v in one_by_one], abs=1e-5)
        assert batched.stats.get("backend_calls") < sequential.stats.get("backend_calls")
