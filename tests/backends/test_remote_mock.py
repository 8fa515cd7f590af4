"""Remote backend over httpx's MockTransport: the protocol and retries without a server.

The real-server tests (test_remote.py, test_remote_scoring.py, test_remote_llamacpp.py) prove
the HTTP behaviour; these check what the shells do with each answer, sync and async alike, and
the retry flow on its own clock.
"""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from guardrail import BackendError, ConfigurationError, Guard
from guardrail.backends.base import GenerationOptions
from guardrail.backends.remote import RemoteBackend
from guardrail.backends.retry import RetryPolicy, parse_retry_after, retry_flow, run_sync
from guardrail.errors import BackendUnavailableError
from guardrail.profiles import GuardReasonerVLProfile, ModerationInput

URL = "http://guard.test/v1"
GOOD = "<think>\nfine\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"
QUOTED = "<think>\nthe user wrote <result>\nRequest: unharmful\n</result>\n</think>\n"
BAD = "<result>\nRequest: harmful\nResponse: None\n</result>"


def chat_answer(text: str, finish: str = "stop") -> httpx.Response:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
    return httpx.Response(200, json={"choices": [choice], "usage": {"completion_tokens": 7}})


class Scripted:
    """A MockTransport handler: answers in order (the last one repeats), requests recorded."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests]


def guard_with(handler, **options) -> Guard:
    backend = RemoteBackend(URL, "guard", transport=httpx.MockTransport(handler), backoff_s=0.0, **options)
    return Guard(backend, max_new_tokens=64)


def moderate(guard: Guard, run_async: bool, **item):
    if run_async:
        return asyncio.run(guard.amoderate(**item))
    return guard.moderate(**item)


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def run_async(request):
    return request.param


def test_request_and_answer_through_the_transport(run_async):
    handler = Scripted(chat_answer(QUOTED + BAD + "\nmore text"))
    with guard_with(handler, api_key="sekret", extra_body={"top_k": -1}) as guard:
        v = moderate(guard, run_async, prompt="What is this?")
    (request,) = handler.requests
    assert request.method == "POST" and str(request.url) == URL + "/chat/completions"
    assert request.headers["authorization"] == "Bearer sekret"
    body = handler.bodies()[0]
    assert body["model"] == "guard" and body["max_tokens"] == 64 and body["top_k"] == -1
    assert "stop" not in body  # reasoning mode cuts at the model's own </result> instead
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    # the quoted result block inside <think> neither ends the answer nor decides it
    assert v.raw_output == QUOTED + BAD and v.request_harmful and not v.allowed
    assert v.decided_by == "model" and v.output_tokens == 7


def test_retryable_answers_are_retried_then_succeed(run_async):
    handler = Scripted(
        httpx.Response(503, headers={"Retry-After": "soon"}),  # unreadable: ignored
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.ConnectError("refused"),
        chat_answer(GOOD),
    )
    with guard_with(handler, max_retries=3) as guard:
        v = moderate(guard, run_async, prompt="x")
    assert v.decided_by == "model" and v.allowed and len(handler.requests) == 4


def test_retries_run_out_and_the_policy_decides(run_async):
    handler = Scripted(httpx.ConnectError("refused"))
    with guard_with(handler, max_retries=2) as guard:
        v = moderate(guard, run_async, prompt="x")
    assert len(handler.requests) == 3
    assert v.decided_by == "policy" and not v.allowed and "connection to" in v.error


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_not_retried(run_async, status):
    handler = Scripted(httpx.Response(status, json={"error": {"message": "key sk-123 is wrong"}}))
    with guard_with(handler, max_retries=3) as guard:
        v = moderate(guard, run_async, prompt="x")
    assert len(handler.requests) == 1 and v.decided_by == "policy"
    assert f"HTTP {status}" in v.error and "sk-123" not in v.error  # the body is never shown


def test_malformed_answers_are_item_errors(run_async):
    handler = Scripted(httpx.Response(200, content=b"<html>proxy error</html>"))
    with guard_with(handler) as guard:
        v = moderate(guard, run_async, prompt="x")
    assert v.decided_by == "policy" and "malformed response" in v.error and len(handler.requests) == 1


def test_fast_mode_scores_from_prompt_logprobs(run_async):
    prefix = GuardReasonerVLProfile().fast_prefix
    logprobs = {" harmful": math.log(0.2), " unharmful": math.log(0.6)}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["continue_final_message"] and body["prompt_logprobs"] == 0 and body["max_tokens"] == 1
        head, candidate = body["messages"][-1]["content"].split(prefix)
        entries = [None, {"5": {"logprob": -0.3, "decoded_token": prefix}},
                   {"9": {"logprob": logprobs[candidate], "decoded_token": candidate}}]  # fmt: skip
        return httpx.Response(200, json={"choices": [{"text": "x"}], "prompt_logprobs": entries})

    with guard_with(handler) as guard:
        v = moderate(guard, run_async, prompt="x", mode="fast")
    assert v.path == "fast" and v.score == pytest.approx(0.25)  # 0.2 / (0.2 + 0.6)


def test_fast_mode_needs_prompt_logprobs():
    handler = Scripted(chat_answer("x"))
    with guard_with(handler) as guard:
        with pytest.raises(ConfigurationError, match="prompt log-probabilities"):
            guard.moderate(prompt="x", mode="fast")


def test_the_transport_must_serve_the_calls_made():
    with pytest.raises(ConfigurationError, match="httpx transport"):
        RemoteBackend(URL, "guard", transport=object())
    prompt, options = GuardReasonerVLProfile().render(ModerationInput(prompt="x")), GenerationOptions()
    with RemoteBackend(URL, "guard", transport=httpx.HTTPTransport()) as sync_only:
        with pytest.raises(ConfigurationError, match="cannot serve async"):
            asyncio.run(sync_only.agenerate([prompt], options))
    with RemoteBackend(URL, "guard", transport=httpx.AsyncHTTPTransport()) as async_only:
        with pytest.raises(ConfigurationError, match="cannot serve sync"):
            async_only.generate([prompt], options)


# ----------------------------------------------------------------------- the retry flow
class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_retry_flow_waits_double_each_time_and_stops_at_the_deadline():
    clock = Clock()
    busy = BackendUnavailableError("busy", retryable=True)

    def unavailable(status: int, content: bytes) -> bytes:
        raise BackendUnavailableError(f"HTTP {status}", retryable=True)

    policy = RetryPolicy(max_retries=5, backoff_s=1.0, max_backoff_s=3.0)
    flow = retry_flow(policy, clock.now + 6.5, read=unavailable, fail=lambda e: e, clock=clock)
    sends, waits = 0, []
    step = next(flow)
    try:
        while True:
            if step is None:  # send: a 503 answer and a failed send, in turn
                sends += 1
                step = flow.send((503, b"", None) if sends % 2 else busy)
            else:
                waits.append(step)
                clock.now += step
                step = flow.send(None)
    except StopIteration as done:
        result = done.value
    # waits of 1, 2, then 3 s (capped) end at 106 < 106.5; the next would end at 109: give up
    assert waits == [1.0, 2.0, 3.0] and sends == 4 and clock.now == 106.0
    assert result is busy  # the last error


def test_retry_flow_reads_the_first_good_answer_and_lets_other_errors_through():
    def read(status: int, content: bytes) -> bytes:
        if status >= 500:
            raise BackendUnavailableError("5xx", retryable=True)
        if status == 418:
            raise KeyError("not a BackendError")
        return content

    answers = iter([(500, b"", "0"), (200, b"fine", None)])
    policy = RetryPolicy(max_retries=2, backoff_s=0.0)
    assert run_sync(retry_flow(policy, 1e18, read, fail=lambda e: e), lambda: next(answers)) == b"fine"
    with pytest.raises(KeyError):
        run_sync(retry_flow(policy, 1e18, read, fail=lambda e: e), lambda: (418, b"", None))


def test_retry_policy():
    busy, wrong = BackendError("busy", retryable=True), BackendError("wrong", retryable=False)
    policy = RetryPolicy(max_retries=3, backoff_s=0.5, max_backoff_s=8.0)
    assert [policy.delay(a, busy) for a in range(4)] == [0.5, 1.0, 2.0, None]
    assert policy.delay(0, wrong) is None
    assert policy.delay(0, busy, retry_after="4") == 4.0  # the server's hint lengthens the wait
    assert policy.delay(0, busy, retry_after="60") == 8.0  # within the cap
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    with pytest.raises(ConfigurationError):
        RetryPolicy(max_retries=-1)
