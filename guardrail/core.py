"""Deprecated module. Its names moved to their concept's home: requests are prepared in
:mod:`guardrail.inputs` (``prepare``, ``Prepared``, ``check_batch``); verdicts are built in
:mod:`guardrail.verdict` (``assemble`` is now ``verdict_from_generation``; ``policy_verdict``,
``FailurePolicy``, ``validate_policy``). Reading a name here still works, with a
``DeprecationWarning``.
"""

from guardrail._deprecated import moved

__getattr__ = moved(
    "guardrail.core",
    {
        "prepare": "guardrail.inputs:prepare",
        "Prepared": "guardrail.inputs:Prepared",
        "check_batch": "guardrail.inputs:check_batch",
        "assemble": "guardrail.verdict:verdict_from_generation",
        "policy_verdict": "guardrail.verdict:policy_verdict",
        "FailurePolicy": "guardrail.verdict:FailurePolicy",
        "validate_policy": "guardrail.verdict:validate_policy",
    },
)
