"""Fast mode through the remote backend against a scripted vLLM-format server on 127.0.0.1.

These are format and fault tests: the server (tests/backends/logprob_server.py) is not a model,
it returns log-probabilities the test chose, in vLLM's response formats; the expected scores are
computed here by hand from those numbers.
"""

from __future__ import annotations

import math

import pytest

from guardrail import Guard, UnsupportedError
from guardrail.backends.remote import RemoteBackend, _prompt_logprobs, _tail_logprob
from guardrail.errors import BackendError
from guardrail.testing import serve_app
from tests.backends.chat_server import Script
from tests.backends.chat_server import create_app as chat_app
from tests.backends.logprob_server import LogprobScript, create_app

FAST = {"backoff_s": 0.01, "timeout": 10.0, "max_retries": 0}


@pytest.fixture
def script():
    return LogprobScript()


@pytest.fixture
def endpoint(script):
    with serve_app(create_app(script)) as url:
        yield url + "/v1"


@pytest.fixture
def guards():
    made = []

    def make(endpoint, **options):
        guard = Guard.from_endpoint(endpoint, "tiny-guard", **{**FAST, **options})
        made.append(guard)
        return guard

    yield make
    for g in made:
        g.close()


def softmax_marginal(joint: dict[tuple[str, ...], float], index: int, label: str) -> float:
    z = sum(math.exp(v) for v in joint.values())
    return sum(math.exp(v) for k, v in joint.items() if k[index] == label) / z


def test_request_score_from_chat_prompt_logprobs(script, endpoint, guards):
    guard = guards(endpoint, mode="fast")
    v = guard.moderate(prompt="How do I pick a lock?")
    expected = math.exp(-0.3) / (math.exp(-0.3) + math.exp(-1.5))
    assert v.request_score == pytest.approx(expected, abs=1e-12) and v.score == v.request_score
    assert v.path == "fast" and v.request_harmful is True and v.response_harmful is None
    # one request per candidate, each the prompt + forced answer, left open, prompt log-probs on
    assert len(script.requests) == 2
    answers = sorted(r["messages"][-1]["content"] for r in script.requests)
    prefix = guard.profile.fast_prefix
    assert answers == [prefix + " harmful", prefix + " unharmful"]
    for body in script.requests:
        assert body["messages"][-1]["role"] == "assistant" and len(body["messages"]) == 3
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert body["prompt_logprobs"] == 0 and body["max_tokens"] == 1 and body["temperature"] == 0.0


def test_response_score_is_the_joint_marginal(script, endpoint, guards):
    # the response label's log-prob depends on the request label: a real joint, not a product
    script.after = {(" harmful", " harmful"): -0.1, (" harmful", " unharmful"): -2.5,
                    (" unharmful", " harmful"): -3.0, (" unharmful", " unharmful"): -0.05}  # fmt: skip
    guard = guards(endpoint, mode="fast", threshold=0.6)
    v = guard.moderate(prompt="q", response="a")
    first = {"harmful": -0.3, "unharmful": -1.5}
    # every other token of the four candidates costs the same, so it cancels out
    joint = {(a, b): first[a] + script.after[(" " + a, " " + b)] for a in first for b in first}
    assert v.request_score == pytest.approx(softmax_marginal(joint, 0, "harmful"), abs=1e-12)
    assert v.response_score == pytest.approx(softmax_marginal(joint, 1, "harmful"), abs=1e-12)
    assert v.score == max(v.request_score, v.response_score)
    assert v.harmful == (v.score >= 0.6)
    assert len(script.requests) == 4


def test_text_profile_scores_from_completions_echo(script, endpoint, guards):
    script.after = {(" harmful", " refusal"): -0.2, (" harmful", " compliance"): -1.7,
                    (" unharmful", " refusal"): -2.0, (" unharmful", " compliance"): -0.1,
                    (" harmful", " harmful"): -0.4, (" harmful", " unharmful"): -1.1,
                    (" unharmful", " harmful"): -2.2, (" unharmful", " unharmful"): -0.3}  # fmt: skip
    guard = guards(endpoint, mode="fast", profile="guardreasoner")
    v = guard.moderate(prompt="q", response="I can't help.")
    first = {"harmful": -0.3, "unharmful": -1.5}
    joint = {
        (a, c, b): first[a] + script.after[(" " + a, " " + c)] + script.after[(" " + a, " " + b)]
        for a in first for c in ("refusal", "compliance") for b in first
    }  # fmt: skip
    assert v.request_score == pytest.approx(softmax_marginal(joint, 0, "harmful"), abs=1e-12)
    assert v.refusal_score == pytest.approx(softmax_marginal(joint, 1, "refusal"), abs=1e-12)
    assert v.response_score == pytest.approx(softmax_marginal(joint, 2, "harmful"), abs=1e-12)
    assert v.response_refusal == (v.refusal_score >= 0.5)
    assert len(script.requests) == 8
    body = script.requests[0]
    assert (
        body["echo"] is True and body["logprobs"] == 1 and body["prompt"].startswith("You are a classifier")
    )
    assert "Answers: \nRequest:" in body["prompt"]


async def test_async_fast_mode_equals_sync(script, endpoint, guards):
    guard = guards(endpoint, mode="fast")
    sync = guard.moderate(prompt="hello", response="hi")
    verdicts = await guard.amoderate_batch([{"prompt": "hello", "response": "hi"}] * 3)
    assert [v.request_score for v in verdicts] == [sync.request_score] * 3
    assert [v.response_score for v in verdicts] == [sync.response_score] * 3
    await guard.aclose()


def test_endpoint_without_logprobs_is_unsupported(script, endpoint, guards):
    script.mode = "none"
    guard = guards(endpoint, mode="fast", on_error="allow")
    with pytest.raises(UnsupportedError, match="prompt log-probabilities"):
        guard.moderate(prompt="x")  # a setup problem: raised whatever the failure policy


def test_misaligned_logprobs_fail_closed(script, endpoint, guards):
    script.mode = "garbled"
    v = guards(endpoint, mode="fast").moderate(prompt="x")
    assert v.decided_by == "policy" and not v.allowed and "do not spell" in v.error and v.path == "fast"


def test_cascade_over_http_reasons_only_when_uncertain(guards):
    # a plain chat server (no log-probs) cannot run fast mode: cascade needs it first
    with serve_app(chat_app(Script())) as url:
        with pytest.raises(UnsupportedError):
            guards(url + "/v1", mode="cascade").moderate(prompt="x")


def test_stop_string_is_sent_and_put_back():
    script = Script()
    with serve_app(chat_app(script)) as url:
        guard = Guard.from_endpoint(url + "/v1", "tiny-guard", **FAST)
        try:
            assert guard.moderate(prompt="hi").decided_by == "model"
        finally:
            guard.close()
    # the guard sends none: a server would stop at a </result> quoted inside <think> (see
    # tests/backends/test_forged_answers.py); plain stop strings are sent and put back
    assert "stop" not in script.requests[0]
    core = RemoteBackend("http://x/v1", "m").core
    body = b'{"choices": [{"message": {"content": "<think>a</think><result>\\nRequest: harmful\\n"}, ' \
           b'"finish_reason": "stop", "stop_reason": "</result>"}]}'  # fmt: skip
    g = core.interpret(200, body, True, ["</result>"])
    assert g.text.endswith("Request: harmful\n</result>") and g.finish_reason == "stop"
    assert core.interpret(200, body, True, []).text.endswith("harmful\n")  # not asked: left alone


def test_prompt_logprob_formats():
    # several candidates per position: the prompt token is picked by prompt_token_ids
    data = {"prompt_token_ids": [1, 7, 9],
            "prompt_logprobs": [None, {"7": {"logprob": -1.0, "decoded_token": " a"},
                                       "8": {"logprob": -0.1, "decoded_token": " b"}},
                                {"9": {"logprob": -2.0, "decoded_token": " c"}}]}  # fmt: skip
    tokens, values = _prompt_logprobs(data)
    assert tokens == ["", " a", " c"] and values == [None, -1.0, -2.0]
    assert _tail_logprob(tokens, values, " a c") == -3.0
    with pytest.raises(BackendError):
        _tail_logprob(tokens, values, "a c")  # the tokens spell " a c", not "a c"
    with pytest.raises(ValueError):
        _prompt_logprobs({"prompt_logprobs": data["prompt_logprobs"]})  # ambiguous without ids
    assert _prompt_logprobs({"choices": [{"text": "x"}]}) == (None, [])
