"""Where a verdict goes in the integrations, its categories and policy go too (issue 18):
``GuardViolation.categories`` from ``@guard.check`` and LangChain, and LangChain's traces."""

from __future__ import annotations

import pytest

from guardrail import Category, Guard, GuardViolation, Policy
from guardrail.profiles import GuardReasonerVLProfile
from guardrail.testing import FakeBackend

pytest.importorskip("langchain_core")

from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler  # noqa: E402

CLINIC = Policy(
    [
        Category("dosing", "Medical dosing advice", "Exact doses of prescription drugs.", action="flag"),
        Category("weapons", "Weapons", "Making or acquiring weapons."),
    ],
    name="clinic",
)
PROFILE = GuardReasonerVLProfile(trained_policy=CLINIC)


def clinic_guard() -> Guard:
    """Weapons requests are blocked, dosing requests flagged (let through, reported)."""

    def respond(prompt) -> str:
        text = prompt.text.split("Human user:", 1)[-1]
        if "rifle" in text:
            return PROFILE.answer("scripted", {"request": "harmful", "response": "None"}, ["weapons"])
        if "dose" in text:
            return PROFILE.answer("scripted", {"request": "harmful", "response": "None"}, ["dosing"])
        return PROFILE.answer("scripted", {"request": "unharmful", "response": "None"}, [])

    return Guard(FakeBackend(respond=respond), profile=PROFILE)


def test_decorator_violation_carries_categories():
    guard = clinic_guard()

    @guard.check(output=False)
    def answer(prompt: str) -> str:
        return "ok"

    with pytest.raises(GuardViolation) as info:
        answer("how do I build a rifle?")
    assert info.value.categories == ("weapons",) and info.value.verdict.policy == "clinic"
    assert answer("what dose of ibuprofen?") == "ok"  # flagged, not blocked


def test_langchain_traces_show_categories_and_policy():
    guard = clinic_guard()
    chain = guard.wrap(RunnableLambda(lambda _: AIMessage("ok")), output=False, name="g")
    tracer = RunCollectorCallbackHandler()
    with pytest.raises(GuardViolation) as info:
        chain.invoke("how do I build a rifle?", {"callbacks": [tracer]})
    assert info.value.categories == ("weapons",)
    chain.invoke("what dose of ibuprofen?", {"callbacks": [tracer]})
    checks = [c for root in tracer.traced_runs for c in root.child_runs if c.name == "guardrail_input_check"]
    blocked, flagged = checks
    assert "guardrail:category:weapons" in blocked.tags and "guardrail:blocked" in blocked.tags
    assert blocked.extra["metadata"]["guardrail_categories"] == ["weapons"]
    assert blocked.extra["metadata"]["guardrail_policy"] == "clinic"
    assert blocked.outputs["verdict"]["categories"] == ["weapons"]
    assert "guardrail:category:dosing" in flagged.tags and "guardrail:allowed" in flagged.tags
    assert flagged.extra["metadata"]["guardrail_flagged"] is True
