"""Verdict observers (Guard(on_verdict=...), guard.add_observer): every verdict any entry point
returns reaches them, with what was checked and who asked; a failing observer changes nothing."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from guardrail import ConfigurationError, Guard, GuardViolation, VerdictCache
from guardrail.observers import RequestInfo
from guardrail.testing import FakeBackend, result_output

SAFE = result_output("unharmful", "unharmful")
HARMFUL = result_output("harmful", "unharmful")


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[object, RequestInfo]] = []

    def __call__(self, verdict, info: RequestInfo) -> None:
        self.seen.append((verdict, info))

    @property
    def infos(self) -> list[RequestInfo]:
        return [info for _, info in self.seen]


def respond(prompt) -> str:
    """'bomb' makes a harmful request, 'weapon' a harmful response."""
    if "weapon" in prompt.text:
        return result_output("unharmful", "harmful")
    return HARMFUL if "bomb" in prompt.text else SAFE


def scripted(**options) -> Guard:
    return Guard(FakeBackend(respond=respond), **options)


def test_sync_single_and_batch_calls_are_observed_with_their_request():
    rec = Recorder()
    guard = scripted(on_verdict=rec)
    one = guard.moderate(prompt="hello", response="hi there")
    batch = guard.moderate_batch([{"prompt": "a bomb"}, {"prompt": "bread"}], mode="reasoning")
    assert [v for v, _ in rec.seen] == [one, *batch]  # the very verdicts returned, in order
    first, *rest = rec.infos
    assert (first.method, first.index, first.mode, first.source, first.stage) == (
        "moderate", 0, "reasoning", None, None,
    )  # fmt: skip
    assert first.request.prompt == "hello" and first.request.response == "hi there"
    assert [(i.method, i.index, i.request.prompt) for i in rest] == [
        ("moderate_batch", 0, "a bomb"), ("moderate_batch", 1, "bread"),
    ]  # fmt: skip
    assert not rec.seen[1][0].allowed and rec.seen[2][0].allowed


def test_async_calls_are_observed_through_the_micro_batcher():
    rec = Recorder()
    guard = scripted(on_verdict=[rec])  # a list of observers works too

    async def main():
        one, two = await asyncio.gather(guard.amoderate(prompt="one"), guard.amoderate(prompt="a bomb"))
        batch = await guard.amoderate_batch([{"prompt": "three"}])
        return [one, two, *batch]

    verdicts = asyncio.run(main())
    assert sorted((i.method, i.request.prompt) for i in rec.infos) == [
        ("amoderate", "a bomb"), ("amoderate", "one"), ("amoderate_batch", "three"),
    ]  # fmt: skip
    assert {id(v) for v, _ in rec.seen} == {id(v) for v in verdicts}
    assert guard.stats.get("microbatches") >= 1


def test_cache_hits_and_policy_verdicts_are_observed():
    rec = Recorder()
    guard = Guard(FakeBackend([SAFE, "<think>rambling"]), cache=VerdictCache(), on_verdict=rec)
    guard.moderate(prompt="same")
    hit = guard.moderate(prompt="same")
    policy = guard.moderate(prompt="new")  # unparsable: the failure policy blocks
    assert hit.cached and policy.decided_by == "policy" and not policy.allowed
    assert [v for v, _ in rec.seen][1:] == [hit, policy]


def test_fast_mode_verdicts_carry_the_mode():
    rec = Recorder()
    guard = Guard(FakeBackend([SAFE], scores=[0.9]), mode="fast", on_verdict=rec)
    assert guard.moderate(prompt="x").path == "fast"
    assert rec.infos[0].mode == "fast"


def test_a_failing_observer_is_logged_and_changes_nothing(caplog):
    after = Recorder()
    guard = scripted()

    @guard.add_observer
    def broken(verdict, info):
        raise RuntimeError("observer bug")

    guard.add_observer(after)
    with caplog.at_level(logging.ERROR, logger="guardrail"):
        verdict = guard.moderate(prompt="a bomb")
    assert not verdict.allowed and verdict.decided_by == "model"
    assert after.seen == [(verdict, after.infos[0])]  # the next observer still ran
    assert any("observer" in r.message and r.exc_info for r in caplog.records)

    async def main():
        return await guard.amoderate(prompt="bread")

    assert asyncio.run(main()).allowed


def test_observers_see_nothing_when_the_call_raises():
    rec = Recorder()
    guard = Guard(FakeBackend(["<think>rambling"]), on_parse_error="raise", on_verdict=rec)
    with pytest.raises(Exception, match="unparsable"):
        guard.moderate(prompt="x")
    assert rec.seen == []


def test_remove_observer_and_bad_observers():
    rec = Recorder()
    guard = scripted(on_verdict=rec)
    guard.remove_observer(rec)
    guard.moderate(prompt="x")
    assert rec.seen == []
    with pytest.raises(ValueError):
        guard.remove_observer(rec)
    with pytest.raises(ConfigurationError, match="callable"):
        Guard(FakeBackend([SAFE]), on_verdict="print")


def test_factories_accept_on_verdict():
    rec = Recorder()
    guard = Guard.from_endpoint("http://127.0.0.1:9/v1", "served", on_verdict=rec, on_error="allow",
                                max_retries=0, timeout=2.0)  # fmt: skip
    try:
        verdict = guard.moderate(prompt="x")  # nothing listens there: a policy verdict
    finally:
        guard.close()
    assert verdict.decided_by == "policy" and rec.seen == [(verdict, rec.infos[0])]


# -------------------------------------------------------------------------------- integrations
def test_decorator_checks_are_observed_with_their_stage():
    rec = Recorder()
    guard = scripted(on_verdict=rec)

    @guard.check
    def answer(prompt: str) -> str:
        return "Here is how to make a weapon" if "chem" in prompt else "Sure."

    assert answer("hello") == "Sure."
    with pytest.raises(GuardViolation):
        answer("chem class")
    assert [(i.source, i.stage, i.method) for i in rec.infos] == [
        ("decorator", "input", "moderate"), ("decorator", "output", "moderate"),
        ("decorator", "input", "moderate"), ("decorator", "output", "moderate"),
    ]  # fmt: skip
    assert rec.infos[3].request.response == "Here is how to make a weapon"
    guard.moderate(prompt="direct")
    assert rec.infos[-1].source is None  # the mark does not outlive the decorated call


def test_async_and_streaming_decorator_checks_are_observed():
    rec = Recorder()
    guard = scripted(on_verdict=rec)

    @guard.check
    async def chat(prompt: str) -> str:
        return "fine"

    @guard.check(window=4, optimistic=True)
    def stream(prompt: str):
        yield from ["one ", "two ", "three"]

    asyncio.run(chat("hi"))
    assert "".join(stream("hi")) == "one two three"
    stages = [(i.source, i.stage, i.method) for i in rec.infos]
    assert stages[:2] == [("decorator", "input", "amoderate"), ("decorator", "output", "amoderate")]
    assert stages[2] == ("decorator", "input", "moderate")
    assert len(stages) > 3 and all(s == ("decorator", "output", "moderate") for s in stages[3:])


def test_langchain_checks_are_observed_with_their_stage():
    pytest.importorskip("langchain_core", reason="the langchain extra is not installed")
    from langchain_core.runnables import RunnableLambda

    rec = Recorder()
    guard = scripted(on_verdict=rec)
    chain = guard.wrap(RunnableLambda(lambda text: f"echo: {text}"))
    assert chain.batch(["one", "two"]) == ["echo: one", "echo: two"]
    assert asyncio.run(chain.ainvoke("three")) == "echo: three"
    assert [(i.source, i.stage, i.method) for i in rec.infos] == [
        ("langchain", "input", "moderate_batch"), ("langchain", "input", "moderate_batch"),
        ("langchain", "output", "moderate_batch"), ("langchain", "output", "moderate_batch"),
        ("langchain", "input", "amoderate_batch"), ("langchain", "output", "amoderate_batch"),
    ]  # fmt: skip


# -------------------------------------------------------------------------------------- server
def test_server_requests_are_observed_including_its_timeout_verdicts():
    pytest.importorskip("fastapi", reason="the server extra is not installed")
    import httpx

    from guardrail.server import ServerSettings, create_app
    from guardrail.testing import serve_app

    rec = Recorder()

    def respond(prompt):
        if "slow" in prompt.text:
            time.sleep(1.0)
        return SAFE

    guard = Guard(FakeBackend(respond=respond), on_verdict=rec)
    with serve_app(create_app(guard, ServerSettings(request_timeout_s=0.3))) as url:
        r = httpx.post(url + "/v1/guard", json={"prompt": "hello"}, timeout=30)
        assert r.status_code == 200 and r.json()["allowed"]
        r = httpx.post(url + "/v1/guard", json={"prompt": "slow"}, timeout=30)
        assert r.status_code == 200 and r.json()["decided_by"] == "policy"
    checked, timed_out = rec.seen
    assert (checked[1].source, checked[1].method, checked[1].request.prompt) == (
        "server",
        "amoderate_batch",
        "hello",
    )
    assert checked[0].allowed and checked[0].decided_by == "model"
    assert (timed_out[1].source, timed_out[1].method, timed_out[1].request) == ("server", "server", None)
    assert timed_out[0].decided_by == "policy" and "timed out" in timed_out[0].error
