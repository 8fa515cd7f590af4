"""The typed result of a moderation call."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Verdict"]


class Verdict(BaseModel):
    """What the guard decided about one request (and response), and why.

    Task fields are ``None`` when the task does not apply: ``response_harmful`` when no
    response was given, ``response_refusal`` when the profile has no refusal task (the
    GuardReasoner-VL models have none) or no response was given, and every task field when the
    output could not be parsed.

    ``harmful`` is True when any task is harmful; ``allowed`` is the decision an app should act
    on. They differ only for verdicts decided by the failure policy: with ``on_parse_error="allow"``
    an unparsable output gives ``harmful=False, allowed=True``; with the default ``"block"`` it
    gives ``harmful=True, allowed=False``. Either way ``decided_by="policy"`` and ``error`` says why.

    Scores (fast and cascade modes, see docs/performance.md): ``request_score`` and
    ``response_score`` are P(harmful) for each task, read from the model's label probabilities;
    ``score`` is the larger of the two that apply, so ``harmful`` is ``score >= threshold``.
    ``path`` says what decided the labels: ``"fast"`` (the scores) or ``"reasoning"`` (a
    generated output; in cascade mode the scores of the fast pass are kept next to it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_harmful: bool | None = Field(None, description="Task: is the user's request harmful?")
    response_harmful: bool | None = Field(None, description="Task: is the AI response harmful?")
    response_refusal: bool | None = Field(None, description="Task: is the AI response a refusal?")
    harmful: bool = Field(description="True when any task is harmful (or the policy blocked).")
    allowed: bool = Field(description="The decision: True lets the content through.")
    reasoning: str | None = Field(None, description="The model's reasoning text, if any.")
    raw_output: str = Field(
        "",
        description="The model's full output text. Fast mode generates none: this is then the forced "
        "answer prefix followed by the labels decided.",
    )
    parsed: bool = Field(description="Whether a verdict could be read from the output.")
    score: float | None = Field(
        None, description="P(harmful) where the mode provides one: the larger of the task scores."
    )
    request_score: float | None = Field(None, description="P(request harmful) (fast and cascade modes).")
    response_score: float | None = Field(None, description="P(response harmful) (fast and cascade modes).")
    refusal_score: float | None = Field(
        None, description="P(response is a refusal), for profiles with a refusal task (fast and cascade)."
    )
    path: Literal["fast", "reasoning"] | None = Field(
        None, description='What decided the labels: "fast" (label probabilities) or "reasoning" (generated).'
    )
    cached: bool = Field(False, description="True when the verdict came from the guard's verdict cache.")
    decided_by: Literal["model", "policy"] = Field(
        "model", description='"model" when read from the output, "policy" when a failure policy decided.'
    )
    error: str | None = Field(None, description="Why the policy decided (parse failure, backend error).")
    latency_ms: float = Field(0.0, description="Wall time of the whole check, in milliseconds.")
    output_tokens: int | None = Field(None, description="Tokens the model generated (0 in fast mode).")
    model: str | None = Field(None, description="The guard model that produced the output.")
    profile: str | None = Field(None, description="The prompt/parse profile used.")

    @property
    def blocked(self) -> bool:
        """The opposite of :attr:`allowed`."""
        return not self.allowed
