"""Concurrency and faults on one Guard: threads and tasks agree with sequential calls, a cancelled
call leaves the backend usable, and a bounded load test of the server loses nothing."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from guardrail import Guard
from guardrail.server import ServerSettings, create_app
from guardrail.testing import serve_app

pytestmark = pytest.mark.slow

PROMPTS = [f"request number {i}: {word}" for i, word in enumerate(
    ["bread", "weather", "python", "garden", "music", "chess", "rivers", "tea", "maps", "stars", "paint", "boats"]
)]  # fmt: skip


@pytest.fixture(scope="module")
def guard(vl_backend):
    return Guard(vl_backend, max_new_tokens=4)


@pytest.fixture(scope="module")
def expected(guard):
    out = {p: guard.moderate(prompt=p).raw_output for p in PROMPTS}
    assert len(set(out.values())) >= 4, "the outputs must differ enough to detect mix-ups"
    return out


def test_many_threads_agree_with_sequential(guard, expected):
    work = PROMPTS * 4
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda p: (p, guard.moderate(prompt=p).raw_output), work))
    assert all(raw == expected[p] for p, raw in got)


async def test_many_tasks_agree_with_sequential(guard, expected):
    work = PROMPTS * 4
    got = await asyncio.gather(*(guard.amoderate(prompt=p) for p in work))
    assert [v.raw_output for v in got] == [expected[p] for p in work]


async def test_cancelled_call_leaves_the_backend_usable(vl_backend, expected):
    slow = Guard(vl_backend, max_new_tokens=200)
    task = asyncio.create_task(slow.amoderate(prompt="a long one"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    quick = Guard(vl_backend, max_new_tokens=4)
    v = await asyncio.wait_for(quick.amoderate(prompt=PROMPTS[0]), timeout=60)
    assert v.raw_output == expected[PROMPTS[0]]
    # and many cancellations in a row do not wedge it either
    tasks = [asyncio.create_task(slow.amoderate(prompt=p)) for p in PROMPTS[:4]]
    await asyncio.sleep(0.05)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (await asyncio.wait_for(quick.amoderate(prompt=PROMPTS[1]), 60)).raw_output == expected[PROMPTS[1]]


def test_bounded_load_on_the_server(vl_backend, expected):
    """2,000 requests at concurrency 64 against the server on 127.0.0.1 with the tiny model:
    no errors, no lost or mismatched responses; p50/p99 latency printed."""
    guard = Guard(vl_backend, max_new_tokens=4)
    total, concurrency = 2000, 64
    settings = ServerSettings(max_concurrency=4, max_queue=total)
    latencies: list[float] = []
    mismatches: list[str] = []
    lock = threading.Lock()

    with serve_app(create_app(guard, settings)) as url:

        async def run() -> list[int]:
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            async with httpx.AsyncClient(timeout=300, limits=limits) as client:
                sem = asyncio.Semaphore(concurrency)

                async def one(i: int) -> int:
                    prompt = PROMPTS[i % len(PROMPTS)]
                    async with sem:
                        t0 = time.perf_counter()
                        r = await client.post(url + "/v1/guard", json={"prompt": prompt})
                        dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                        if r.status_code == 200 and r.json()["raw_output"] != expected[prompt]:
                            mismatches.append(prompt)
                    return r.status_code

                return await asyncio.gather(*(one(i) for i in range(total)))

        t0 = time.perf_counter()
        codes = asyncio.run(run())
        elapsed = time.perf_counter() - t0
        metrics = httpx.get(url + "/metrics").text

    assert codes.count(200) == total, {c: codes.count(c) for c in set(codes)}
    assert not mismatches
    assert f'guardrail_requests_total{{endpoint="/v1/guard",status="200"}} {float(total)}' in metrics
    latencies.sort()
    p50, p99 = statistics.median(latencies), latencies[int(0.99 * len(latencies)) - 1]
    print(f"\nload: {total} requests, concurrency {concurrency}: {total / elapsed:.0f} req/s, "
          f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")  # fmt: skip
