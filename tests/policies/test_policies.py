"""Policy, Category and the built-in policies; verdict categories and actions (issue 18)."""

from __future__ import annotations

import pytest

from guardrail import Category, ConfigurationError, Guard, Policy, PolicyError
from guardrail.policies import (
    MLCOMMONS,
    MLCOMMONS_TO_OPENAI,
    OPENAI_MODERATION,
    OPENAI_MODERATION_KEYS,
    OPENAI_TO_MLCOMMONS,
    get_policy,
    resolve_policy,
    to_openai_categories,
)
from guardrail.profiles import GuardReasonerVLProfile
from guardrail.testing import FakeBackend

CLINIC = Policy(
    [
        Category("dosing", "Medical dosing advice", "Exact doses of prescription drugs.", action="flag"),
        Category("weapons", "Weapons", "Making or acquiring weapons."),
    ],
    name="clinic",
)


def trained_output(request: str, categories: list[str], response: str = "None") -> str:
    return GuardReasonerVLProfile(trained_policy=CLINIC).answer(
        "scripted", {"request": request, "response": response}, categories
    )


# ----------------------------------------------------------------------------- the model
def test_builtin_policies_follow_their_sources():
    assert MLCOMMONS.codes == tuple(f"S{i}" for i in range(1, 15))
    assert MLCOMMONS.get("S4").name == "Child Sexual Exploitation"  # as Llama Guard 4 states it
    assert MLCOMMONS.get("S14").name == "Code Interpreter Abuse"
    assert OPENAI_MODERATION.codes == OPENAI_MODERATION_KEYS
    assert len(OPENAI_MODERATION_KEYS) == 13
    # the mapping is total both ways and names only real keys/codes
    assert set(MLCOMMONS_TO_OPENAI) == set(MLCOMMONS.codes)
    assert all(k in OPENAI_MODERATION_KEYS for keys in MLCOMMONS_TO_OPENAI.values() for k in keys)
    assert set(OPENAI_TO_MLCOMMONS) == set(OPENAI_MODERATION_KEYS)
    assert all(c in MLCOMMONS for codes in OPENAI_TO_MLCOMMONS.values() for c in codes)
    assert get_policy("mlcommons") is MLCOMMONS and get_policy("OPENAI_MODERATION") is OPENAI_MODERATION


def test_openai_mapping():
    assert to_openai_categories(MLCOMMONS, ["S1", "S10"]) == ("violence", "illicit/violent", "hate")
    assert to_openai_categories(MLCOMMONS, ["S6"]) == ()  # specialised advice has no OpenAI key
    assert to_openai_categories(OPENAI_MODERATION, ["hate"]) == ("hate",)
    custom = Policy([Category("x", "X", maps_to=("harassment",))])
    assert to_openai_categories(custom, ["x"]) == ("harassment",)
    assert to_openai_categories(custom, ["unknown"]) == ()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Policy([]), "at least one category"),
        (lambda: Policy([Category("a", "A"), Category("a", "B")]), "duplicate category code 'a'"),
        (lambda: Category("has space", "X"), "not usable"),
        (lambda: Category("a,b", "X"), "not usable"),
        (lambda: Category("a", ""), "non-empty single line"),
        (lambda: Category("a", "two\nlines"), "non-empty single line"),
        (lambda: Category("a", "A", action="warn"), "action must be 'block' or 'flag'"),
        (lambda: Policy.from_dict({"categories": [{"code": "a"}]}), "needs 'code' and 'name'"),
        (lambda: Policy.from_dict({"categories": "S1"}), "list of"),
        (lambda: Policy.from_dict({"cats": []}), "unknown policy keys"),
        (lambda: Policy.from_dict({"categories": [{"code": "a", "name": "A", "severity": 1}]}), "unknown keys"),
        (lambda: MLCOMMONS.with_actions(S99="flag"), "no categories S99"),
        (lambda: resolve_policy("nope"), "unknown policy 'nope'"),
        (lambda: resolve_policy(42), "must be a Policy"),
    ],
)
def test_bad_policies_are_typed_errors(make, match):
    with pytest.raises(PolicyError, match=match):
        make()
    assert issubclass(PolicyError, ConfigurationError)


def test_actions_and_yaml_round_trip(tmp_path):
    flagged = MLCOMMONS.with_actions(S6="flag")
    assert flagged.action("S6") == "flag" and flagged.action("S1") == "block"
    assert flagged.prompt_key() == MLCOMMONS.prompt_key()  # actions never change the prompt
    assert flagged.key() != MLCOMMONS.key()
    assert not flagged.blocks(["S6"]) and flagged.blocks(["S6", "S1"])
    assert flagged.blocks([]) and flagged.blocks(["S99"])  # no category / unknown code: fail closed
    path = tmp_path / "clinic.yaml"
    CLINIC.to_yaml(path)
    assert Policy.from_yaml(path) == CLINIC
    (tmp_path / "bad.yaml").write_text("categories: [\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        Policy.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(PolicyError, match="cannot read policy file"):
        Policy.from_yaml(tmp_path / "missing.yaml")


# ----------------------------------------------------------------- guards and policies
def test_fixed_prompt_family_refuses_a_policy_it_was_not_trained_on():
    with pytest.raises(PolicyError, match="fixed prompt and was not trained on a policy"):
        Guard(FakeBackend(), policy=MLCOMMONS)
    guard = Guard(FakeBackend())
    with pytest.raises(PolicyError, match="Families that render a policy"):
        guard.moderate(prompt="hi", policy="mlcommons")
    with pytest.raises(PolicyError):
        guard.moderate_batch([{"prompt": "hi", "policy": MLCOMMONS}])


def test_trained_guard_reports_categories_and_applies_actions():
    backend = FakeBackend(outputs=[trained_output("harmful", ["weapons"]), trained_output("harmful", ["dosing"]),
                                   trained_output("harmful", ["dosing", "WEAPONS"]), trained_output("harmful", []),
                                   trained_output("harmful", ["gambling"]), trained_output("unharmful", [])])  # fmt: skip
    guard = Guard(backend, profile=GuardReasonerVLProfile(trained_policy=CLINIC))
    assert guard.profile.default_policy() is CLINIC
    blocked = guard.moderate(prompt="how to build a gun")
    assert blocked.categories == ("weapons",) and not blocked.allowed and blocked.policy == "clinic"
    flagged = guard.moderate(prompt="dose of x?")
    assert flagged.categories == ("dosing",) and flagged.harmful and flagged.allowed and flagged.flagged
    both = guard.moderate(prompt="both")
    assert both.categories == ("dosing", "weapons") and not both.allowed  # spelled as the policy spells it
    nameless = guard.moderate(prompt="no category")
    assert nameless.harmful and nameless.categories == () and not nameless.allowed  # fail closed
    unknown = guard.moderate(prompt="unknown")
    assert unknown.categories == ("gambling",) and not unknown.allowed
    safe = guard.moderate(prompt="hello")
    assert safe.allowed and safe.categories == ()
    assert guard.stats.snapshot()["unknown_categories"] == 1
    assert guard.stats.snapshot()["flagged"] == 1
    # the prompt shows the policy, and the same policy with other actions is accepted per call
    system = backend.calls[0][0].messages[0]["content"]
    assert "dosing: Medical dosing advice. Exact doses" in system and system.startswith("You are a classifier")
    assert guard.moderate(prompt="x", policy=CLINIC.with_actions(dosing="block")).allowed
    with pytest.raises(PolicyError, match="trained on a different policy"):
        guard.moderate(prompt="x", policy=MLCOMMONS)


def test_per_call_actions_decide_allowed_and_key_the_cache():
    backend = FakeBackend(outputs=[trained_output("harmful", ["dosing"])])
    guard = Guard(backend, profile=GuardReasonerVLProfile(trained_policy=CLINIC), cache=True)
    assert guard.moderate(prompt="dose?").allowed
    strict = guard.moderate(prompt="dose?", policy=CLINIC.with_actions(dosing="block"))
    assert not strict.allowed and not strict.cached
    assert guard.moderate(prompt="dose?").cached


def test_untrained_prompt_is_unchanged_and_ignores_categories_lines():
    out = "<think>x</think>\n<result>\nRequest: harmful\nResponse: None\nCategories: S1\n</result>"
    guard = Guard(FakeBackend(outputs=[out]))
    v = guard.moderate(prompt="x")
    assert v.harmful and v.categories == () and not v.allowed
    assert guard.backend.calls[0][0].messages[0]["content"] == GuardReasonerVLProfile().system_prompt
