"""Guard plumbing with the scripted backend: policies, batching, async, verdict shape."""

from __future__ import annotations

import asyncio
import json

import pytest

from guardrail import (
    BackendError,
    ConfigurationError,
    Guard,
    GuardViolation,
    InputError,
    ParseError,
    Verdict,
)
from guardrail.testing import FakeBackend, result_output

GOOD = result_output("harmful", "unharmful", reasoning="The request asks for a weapon.")
GR_OUT = (
    "## Reasoning\nok\n\n---\n\nAnswers: \nRequest: unharmful\nCompletion: refusal\nResponse: unharmful\n"
)


def test_model_verdict_fields():
    guard = Guard(FakeBackend([GOOD]))
    v = guard.moderate(prompt="how to build a weapon", response="no")
    assert v.request_harmful is True and v.response_harmful is False and v.response_refusal is None
    assert v.harmful and not v.allowed and v.blocked
    assert v.parsed and v.decided_by == "model" and v.error is None
    assert v.reasoning == "The request asks for a weapon."
    assert v.raw_output == GOOD and v.model == "fake-guard" and v.profile == "guardreasoner-vl"
    assert v.score is None and v.latency_ms >= 0


def test_request_only_has_no_response_label():
    v = Guard(FakeBackend([result_output("unharmful", "None")])).moderate(prompt="hi")
    assert v.request_harmful is False and v.response_harmful is None and v.allowed


def test_response_only_check_has_no_request_label():
    v = Guard(FakeBackend([result_output("unharmful", "harmful")])).moderate(response="bad words")
    assert v.request_harmful is None and v.response_harmful is True and not v.allowed


def test_guardreasoner_profile_reports_refusal():
    guard = Guard(FakeBackend([GR_OUT]), profile="guardreasoner")
    v = guard.moderate(prompt="q", response="I can't help with that.")
    assert v.response_refusal is True and v.allowed and v.profile == "guardreasoner"


def test_verdict_is_frozen_and_json_round_trips():
    v = Guard(FakeBackend([GOOD])).moderate(prompt="x")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        v.allowed = True  # type: ignore[misc]
    again = Verdict.model_validate_json(v.model_dump_json())
    assert again == v
    assert json.loads(v.model_dump_json())["decided_by"] == "model"


# ------------------------------------------------------------------------------- policies
def test_unparsable_output_fails_closed_by_default():
    v = Guard(FakeBackend(["I am not sure."])).moderate(prompt="x")
    assert v.harmful and not v.allowed and not v.parsed
    assert v.decided_by == "policy" and "unparsable" in v.error
    assert v.request_harmful is None and v.raw_output == "I am not sure."


def test_parse_error_policy_allow_and_raise():
    v = Guard(FakeBackend(["??"]), on_parse_error="allow").moderate(prompt="x")
    assert v.allowed and not v.harmful and v.decided_by == "policy"
    with pytest.raises(ParseError) as info:
        Guard(FakeBackend(["??"]), on_parse_error="raise").moderate(prompt="x")
    assert info.value.raw_output == "??" and info.value.verdict.decided_by == "policy"


def test_backend_failure_follows_on_error():
    boom = BackendError("model crashed", retryable=True)
    v = Guard(FakeBackend(error=boom)).moderate(prompt="x")
    assert not v.allowed and v.decided_by == "policy" and "model crashed" in v.error
    assert Guard(FakeBackend(error=boom), on_error="allow").moderate(prompt="x").allowed
    with pytest.raises(BackendError):
        Guard(FakeBackend(error=boom), on_error="raise").moderate(prompt="x")


def test_per_item_backend_error_only_affects_that_item():
    guard = Guard(FakeBackend([GOOD, BackendError("item failed"), GOOD]))
    a, b, c = guard.moderate_batch([{"prompt": "1"}, {"prompt": "2"}, {"prompt": "3"}])
    assert a.decided_by == "model" and c.decided_by == "model"
    assert b.decided_by == "policy" and "item failed" in b.error


def test_bad_policy_names_are_configuration_errors():
    with pytest.raises(ConfigurationError):
        Guard(FakeBackend(), on_parse_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Guard(object())  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- batches
def test_batch_is_one_backend_call_in_order():
    backend = FakeBackend(respond=lambda p: result_output("harmful" if "bad" in p.text else "unharmful"))
    guard = Guard(backend)
    items = [{"prompt": "good 1"}, {"prompt": "bad 2"}, {"prompt": "good 3"}, {"prompt": "bad 4"}]
    verdicts = guard.moderate_batch(items)
    assert [v.request_harmful for v in verdicts] == [False, True, False, True]
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 4
    assert guard.moderate_batch([]) == []


def test_invalid_batch_item_raises_before_generation():
    backend = FakeBackend()
    with pytest.raises(InputError):
        Guard(backend).moderate_batch([{"prompt": "ok"}, {"prompt": 3}])
    with pytest.raises(InputError, match="unknown keys"):
        Guard(backend).moderate_batch([{"promt": "typo"}])
    with pytest.raises(InputError):
        Guard(backend).moderate_batch("not a list")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        Guard(backend).moderate()
    assert backend.calls == []


def test_images_rejected_by_text_profile():
    with pytest.raises(InputError, match="text-only"):
        Guard(FakeBackend([GR_OUT]), profile="guardreasoner").moderate(prompt="x", images=[_png()])


async def test_amoderate_matches_moderate():
    backend = FakeBackend(respond=lambda p: result_output("harmful" if "bad" in p.text else "unharmful"))
    guard = Guard(backend)
    got = await asyncio.gather(
        *(guard.amoderate(prompt=f"{w} {i}") for i, w in enumerate(["bad", "good"] * 5))
    )
    assert [v.request_harmful for v in got] == [True, False] * 5


def test_guard_violation_carries_the_verdict():
    v = Guard(FakeBackend([GOOD])).moderate(prompt="x")
    err = GuardViolation(v, stage="input")
    assert err.verdict is v and "request harmful" in str(err)


def _png() -> bytes:
    from tests.conftest import make_image

    return make_image()


def test_factories_pass_guard_options_and_close_the_backend_on_failure(tiny_vl_path, monkeypatch):
    from guardrail.backends.transformers import TransformersBackend

    guard = Guard.from_pretrained(
        tiny_vl_path, timeout_s=5.0, profile_options={"system_prompt": "Short system."}, max_new_tokens=3
    )
    assert guard.timeout_s == 5.0 and guard.profile.system_prompt == "Short system."
    closed = []
    monkeypatch.setattr(TransformersBackend, "close", lambda self: closed.append(self))
    with pytest.raises(ConfigurationError):
        Guard.from_pretrained(tiny_vl_path, on_error="sometimes")
    assert len(closed) == 1  # the loaded model is released, not leaked


def test_factories_split_the_guard_options_from_the_backend_options():
    """Every keyword of Guard goes to the guard; the rest go to the backend, none is dropped."""
    guard = Guard.from_endpoint(
        "http://127.0.0.1:9/v1", "served", None, max_new_tokens=7, on_error="allow", on_parse_error="raise",
        profile="guardreasoner", batching=False, timeout=3.0, max_retries=0,
    )  # fmt: skip
    try:
        assert (guard.max_new_tokens, guard.on_error, guard.on_parse_error) == (7, "allow", "raise")
        assert guard.profile.name == "guardreasoner" and guard.batching is None
        assert guard.backend.timeout == 3.0 and guard.backend.retry.max_retries == 0
    finally:
        guard.close()
    with pytest.raises(TypeError, match="max_new_token"):  # a misspelt guard option reaches the backend
        Guard.from_endpoint("http://127.0.0.1:9/v1", "served", max_new_token=7)
