"""Which verdicts block at which stage, for every integration.

- The **input** stage (the request alone) blocks when the verdict is not ``allowed``.
- The **output** stage (request + response in one check) blocks when the *response* is harmful,
  or when the failure policy blocked (an unparsable output or a backend error under
  ``on_parse_error``/``on_error="block"``). The request's label in that verdict is reported but
  does not block: deciding on the request is the input stage's job, and with ``input=False`` the
  app has said it does not want requests blocked (a refusal to a harmful request is fine).
"""

from __future__ import annotations

from typing import Literal

from guardrail.verdict import Verdict

__all__ = ["Stage", "blocks"]

Stage = Literal["input", "output"]


def blocks(verdict: Verdict, stage: str) -> bool:
    """Whether ``verdict`` blocks content at ``stage`` (``"input"`` or ``"output"``)."""
    if verdict.allowed:
        return False
    if stage == "input" or verdict.decided_by == "policy":
        return True
    return verdict.response_harmful is not False
