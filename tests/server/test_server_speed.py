"""The server with the speed features: concurrent requests share backend batches, fast-mode
scores reach the OpenAI-style response, and /metrics exports the guard's counters."""

from __future__ import annotations

import asyncio
import re

import httpx

from guardrail import Guard, VerdictCache
from guardrail.server import create_app
from guardrail.server.schemas import REQUEST_HARMFUL
from guardrail.testing import FakeBackend, result_output, serve_app


def test_concurrent_requests_are_micro_batched_and_counted():
    backend = FakeBackend(respond=lambda p: result_output("harmful" if "bomb" in p.text else "unharmful"))
    guard = Guard(backend, cache=VerdictCache())
    with serve_app(create_app(guard)) as url:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                return await asyncio.gather(
                    *(c.post("/v1/guard", json={"prompt": f"text {i}"}) for i in range(24))
                )

        answers = asyncio.run(burst())
        assert all(r.status_code == 200 and r.json()["allowed"] for r in answers)
        assert len(backend.calls) < 24 and sum(len(c) for c in backend.calls) == 24
        again = httpx.post(url + "/v1/guard", json={"prompt": "text 3"}).json()
        assert again["cached"] is True and again["path"] == "reasoning"
        metrics = httpx.get(url + "/metrics").text

    def value(name: str) -> float:
        m = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
        assert m, name
        return float(m.group(1))

    assert value("guardrail_guard_cache_hits_total") == 1
    assert value("guardrail_guard_cache_misses_total") == 24
    assert value("guardrail_guard_microbatches_total") == len(backend.calls)
    assert value("guardrail_guard_microbatched_items_total") == 24
    assert value("guardrail_guard_reasoning_verdicts_total") == 24
    assert "# HELP guardrail_guard_escalations_total" in metrics


def test_fast_mode_scores_reach_the_moderation_response():
    guard = Guard(FakeBackend(scores=[0.83]), mode="fast")
    with serve_app(create_app(guard)) as url:
        body = httpx.post(url + "/v1/moderations", json={"input": "something"}).json()
        verdict = httpx.post(url + "/v1/guard", json={"prompt": "x"}).json()
    result = body["results"][0]
    assert result["flagged"] and abs(result["category_scores"][REQUEST_HARMFUL] - 0.83) < 1e-9
    assert abs(result["guardrail"]["score"] - 0.83) < 1e-9
    assert verdict["path"] == "fast" and abs(verdict["request_score"] - 0.83) < 1e-9
