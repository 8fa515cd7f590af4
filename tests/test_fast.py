"""Fast and cascade modes with the scripted backend: planning, marginals, thresholds, routing,
failure policies. (Scores from real models: tests/backends/test_fast_transformers.py.)"""

from __future__ import annotations

import math

import pytest

from guardrail import BackendError, ConfigurationError, Guard, ParseError, UnsupportedError, Verdict, fast
from guardrail.inputs import InputLimits, prepare
from guardrail.profiles import GuardReasonerProfile, GuardReasonerVLProfile, ModerationInput
from guardrail.testing import FakeBackend, result_output

VL = GuardReasonerVLProfile()
GR = GuardReasonerProfile()


# ------------------------------------------------------------------------------------ plan
def test_plan_enumerates_the_joint_label_lines():
    p = fast.plan(VL, ModerationInput(prompt="x"))
    assert p.tasks == ("request",) and p.continuations == (" harmful", " unharmful")
    p = fast.plan(VL, ModerationInput(prompt="x", response="y"))
    assert p.continuations == (
        " harmful\nResponse: harmful", " harmful\nResponse: unharmful",
        " unharmful\nResponse: harmful", " unharmful\nResponse: unharmful",
    )  # fmt: skip
    assert fast.plan(VL, ModerationInput(response="y")).tasks == ("request", "response")
    p = fast.plan(GR, ModerationInput(prompt="x", response="y"))
    assert p.tasks == ("request", "refusal", "response") and len(p.continuations) == 8
    assert p.continuations[1] == " harmful\nCompletion: refusal\nResponse: unharmful"
    # the forced prefix plus a candidate is exactly the answer text the profile parses
    answer = VL.fast_prefix + p.continuations[0]
    assert (
        VL.fast_prefix == "<think>\n\n</think>\n<result>\nRequest:"
        and GR.fast_prefix == "Answers: \nRequest:"
    )
    assert GR.parse(GR.fast_prefix + p.continuations[1], ModerationInput(prompt="x", response="y")).labels == {
        "request": "harmful", "refusal": "refusal", "response": "unharmful"}  # fmt: skip
    assert answer.startswith("<think>")


def test_a_prefix_that_does_not_end_at_the_first_key_is_refused():
    with pytest.raises(ConfigurationError, match="fast_prefix"):
        fast.plan(GuardReasonerVLProfile(fast_prefix="<result>\n"), ModerationInput(prompt="x"))


def test_marginals_by_hand():
    p = fast.plan(VL, ModerationInput(prompt="x", response="y"))
    # joint probabilities (hh, hu, uh, uu) = (0.1, 0.2, 0.3, 0.4) up to a constant
    scores = fast.marginals(p, [math.log(x) + 5 for x in (0.1, 0.2, 0.3, 0.4)])
    assert scores["request"] == pytest.approx(0.3) and scores["response"] == pytest.approx(0.4)
    with pytest.raises(ValueError):
        fast.marginals(p, [0.0, 0.0])
    with pytest.raises(ValueError):
        fast.marginals(p, [float("nan"), 0.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        fast.marginals(p, [-math.inf] * 4)
    # extreme but finite values do not overflow
    assert fast.marginals(p, [-1e4, -1e4, 0.0, 0.0])["request"] == 0.0


# ------------------------------------------------------------------------------ thresholds
@pytest.mark.parametrize(("p", "threshold", "harmful"), [(0.5, 0.5, True), (0.49, 0.5, False), (0.2, 0.1, True),
                                                         (0.95, 0.99, False), (0.0, 0.0, True)])  # fmt: skip
def test_threshold_is_inclusive(p, threshold, harmful):
    v = Guard(FakeBackend(scores=[p]), mode="fast", threshold=threshold).moderate(prompt="x")
    assert v.request_harmful is harmful and v.harmful is harmful and v.allowed is not harmful
    assert v.score == pytest.approx(p, abs=1e-9) and v.path == "fast" and v.output_tokens == 0
    assert v.raw_output == VL.fast_output({"request": "harmful" if harmful else "unharmful"})


def test_score_is_the_larger_task_score_and_decides_harmful():
    guard = Guard(FakeBackend(scores=[{"request": 0.3, "response": 0.7}]), mode="fast", threshold=0.6)
    v = guard.moderate(prompt="x", response="y")
    assert v.request_score == pytest.approx(0.3) and v.response_score == pytest.approx(0.7)
    assert v.score == pytest.approx(0.7) and v.request_harmful is False and v.response_harmful is True
    assert v.harmful and not v.allowed
    assert "Request: unharmful\nResponse: harmful\n</result>" in v.raw_output


def test_refusal_scores_for_the_text_profile():
    guard = Guard(FakeBackend(scores=[{"request": 0.1, "refusal": 0.8, "response": 0.2}]), "guardreasoner",
                  mode="fast")  # fmt: skip
    v = guard.moderate(prompt="x", response="no")
    assert v.refusal_score == pytest.approx(0.8) and v.response_refusal is True and v.allowed
    assert guard.moderate(prompt="x").refusal_score is None


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True])
def test_bad_threshold_and_band(bad):
    with pytest.raises(ConfigurationError):
        Guard(FakeBackend(scores=[0.5]), threshold=bad)
    with pytest.raises(ConfigurationError):
        Guard(FakeBackend(scores=[0.5]), cascade_band=(0.9, 0.1))
    with pytest.raises(ConfigurationError):
        Guard(FakeBackend(scores=[0.5]), mode="quick")


# --------------------------------------------------------------------------------- cascade
@pytest.mark.parametrize(
    ("p", "reasons"), [(0.19, False), (0.2, True), (0.5, True), (0.8, True), (0.81, False)]
)
def test_cascade_reasons_exactly_inside_the_band(p, reasons):
    backend = FakeBackend([result_output("harmful")], scores=[p])
    guard = Guard(backend, mode="cascade", cascade_band=(0.2, 0.8))
    v = guard.moderate(prompt="x")
    assert len(backend.score_calls) == 1 and len(backend.calls) == (1 if reasons else 0)
    assert v.path == ("reasoning" if reasons else "fast")
    assert v.request_score == pytest.approx(p)  # the fast score is kept after reasoning
    if reasons:
        assert v.request_harmful is True and v.raw_output == result_output("harmful")  # the reasoning decided
        assert guard.stats.get("escalations") == 1 and guard.stats.get("reasoning_verdicts") == 1
    else:
        assert v.request_harmful is (p >= 0.5) and guard.stats.get("fast_verdicts") == 1


def test_cascade_batch_sends_only_uncertain_items_to_reasoning():
    backend = FakeBackend(respond=lambda p: result_output("harmful" if "maybe" in p.text else "unharmful"),
                          score_fn=lambda r: 0.5 if "maybe" in r.prompt.text else (0.99 if "bad" in r.prompt.text
                                                                                   else 0.01))  # fmt: skip
    guard = Guard(backend, mode="cascade")
    items = [{"prompt": t} for t in ("bad", "maybe one", "fine", "maybe two", "bad again")]
    verdicts = guard.moderate_batch(items)
    assert [v.path for v in verdicts] == ["fast", "reasoning", "fast", "reasoning", "fast"]
    assert [v.request_harmful for v in verdicts] == [True, True, False, True, True]
    assert len(backend.score_calls) == 1 and len(backend.score_calls[0]) == 5
    assert len(backend.calls) == 1 and ["maybe" in p.text for p in backend.calls[0]] == [True, True]


def test_per_call_modes_and_a_mixed_pass():
    backend = FakeBackend([result_output("unharmful")], scores=[0.9])
    guard = Guard(backend)  # reasoning by default
    assert guard.moderate(prompt="x").path == "reasoning" and guard.moderate(prompt="x").score is None
    assert guard.moderate(prompt="x", mode="fast").path == "fast"
    assert guard.moderate_batch([{"prompt": "x"}], mode="cascade")[0].path == "fast"  # 0.9: outside the band


def test_fast_mode_on_a_backend_without_scores():
    with pytest.raises(UnsupportedError, match="label probabilities"):
        Guard(FakeBackend(), mode="fast")
    guard = Guard(FakeBackend())
    with pytest.raises(UnsupportedError):
        guard.moderate(prompt="x", mode="cascade")
    assert isinstance(UnsupportedError("x"), ConfigurationError)


# ------------------------------------------------------------------------- failure policies
def test_scoring_failures_follow_on_error():
    boom = BackendError("gpu on fire")
    v = Guard(FakeBackend(scores=[boom]), mode="fast").moderate(prompt="x")
    assert v.decided_by == "policy" and not v.allowed and "gpu on fire" in v.error and v.path == "fast"
    v = Guard(FakeBackend(scores=[boom]), mode="fast", on_error="allow").moderate(prompt="x")
    assert v.allowed and v.decided_by == "policy"
    with pytest.raises(BackendError):
        Guard(FakeBackend(scores=[boom]), mode="fast", on_error="raise").moderate(prompt="x")
    # a whole-call failure
    v = Guard(FakeBackend(error=RuntimeError("down"), scores=[0.1]), mode="fast").moderate(prompt="x")
    assert v.decided_by == "policy" and "down" in v.error
    # a cascade item whose scoring fails is not sent to reasoning
    backend = FakeBackend(scores=[boom])
    assert Guard(backend, mode="cascade").moderate(prompt="x").decided_by == "policy" and not backend.calls


def test_one_bad_item_in_a_batch_keeps_the_others():
    guard = Guard(FakeBackend(scores=[0.9, BackendError("one failed"), 0.1]), mode="fast")
    verdicts = guard.moderate_batch([{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}])
    assert [v.decided_by for v in verdicts] == ["model", "policy", "model"]
    assert [v.allowed for v in verdicts] == [False, False, True]


def test_reasoning_parse_failure_after_cascade_follows_on_parse_error():
    v = Guard(FakeBackend(["nonsense"], scores=[0.5]), mode="cascade").moderate(prompt="x")
    assert v.decided_by == "policy" and v.path == "reasoning" and v.request_score == pytest.approx(0.5)
    with pytest.raises(ParseError):
        Guard(FakeBackend(["nonsense"], scores=[0.5]), mode="cascade", on_parse_error="raise").moderate(
            prompt="x"
        )


def test_verdict_json_schema_stays_compatible():
    old = {"harmful": False, "allowed": True, "parsed": True, "request_harmful": False}
    v = Verdict.model_validate(old)
    assert v.path is None and v.request_score is None and v.cached is False
    required = set(Verdict.model_json_schema()["required"])
    assert required == {"harmful", "allowed", "parsed"}


def test_reasoning_mode_asks_to_stop_at_the_result_block():
    guard = Guard(FakeBackend())
    assert guard.generation_options.stop == ("</result>",)
    assert Guard(FakeBackend(), profile_options={"stop": ()}).generation_options.stop == ()
    assert Guard(FakeBackend(), "guardreasoner").generation_options.stop == ()
    # an output cut at </result> (and one the server cut before it) both parse
    for text in (result_output("harmful"), result_output("harmful").removesuffix("</result>")):
        item = prepare(VL, {"prompt": "x"}, InputLimits()).item
        assert VL.parse(text, item).labels["request"] == "harmful"
