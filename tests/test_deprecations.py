"""Names that moved still work, with a DeprecationWarning that names their new home."""

from __future__ import annotations

import importlib

import pytest

from guardrail import inputs, moderation, verdict

MOVED_MODULE_NAMES = [
    ("guardrail.core", "prepare", inputs.prepare),
    ("guardrail.core", "Prepared", inputs.Prepared),
    ("guardrail.core", "check_batch", inputs.check_batch),
    ("guardrail.core", "assemble", verdict.verdict_from_generation),
    ("guardrail.core", "policy_verdict", verdict.policy_verdict),
    ("guardrail.core", "validate_policy", verdict.validate_policy),
    ("guardrail.fast", "assemble", verdict.verdict_from_scores),
    ("guardrail.pipeline", "moderate", moderation.moderation_pass),
    ("guardrail.pipeline", "run_sync", moderation.run_sync),
    ("guardrail.pipeline", "Work", moderation.Work),
]


@pytest.mark.parametrize(("module", "name", "new"), MOVED_MODULE_NAMES)
def test_moved_module_names_warn_and_resolve(module, name, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{name} is deprecated; use {new.__module__}\."):
        assert getattr(mod, name) is new


@pytest.mark.parametrize("module", ["guardrail.core", "guardrail.fast", "guardrail.pipeline"])
def test_unknown_names_still_raise_attribute_error(module):
    with pytest.raises(AttributeError):
        importlib.import_module(module).no_such_name  # noqa: B018


def test_the_old_verdict_builder_still_builds_verdicts():
    from guardrail.backends.base import Generation
    from guardrail.profiles import get_profile
    from guardrail.testing import result_output

    profile = get_profile("guardreasoner-vl")
    prepared = inputs.prepare(profile, {"prompt": "hi"}, inputs.InputLimits())
    with pytest.warns(DeprecationWarning):
        from guardrail.core import assemble
    v = assemble(profile, prepared, Generation(text=result_output("harmful")), on_parse_error="block",
                 on_error="block", latency_ms=1.0, model="m")  # fmt: skip
    assert v.request_harmful is True and v.decided_by == "model"
