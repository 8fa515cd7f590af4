"""The typed result of a moderation call, and the pure functions that build it.

- :func:`verdict_from_generation`: a reasoning verdict, parsed from a generated output;
- :func:`verdict_from_scores`: a fast-mode verdict, from the label probabilities;
- :func:`policy_verdict`: a verdict decided by the failure policy (``on_parse_error``/``on_error``).

No I/O, no model, no clock: the moderation pass (:mod:`guardrail.moderation`) calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from guardrail.errors import ConfigurationError, ParseError

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.backends.base import Generation
    from guardrail.inputs import Prepared
    from guardrail.profiles.base import Profile

__all__ = [
    "FailurePolicy",
    "decide_allowed",
    "Verdict",
    "policy_verdict",
    "validate_policy",
    "verdict_from_generation",
    "verdict_from_scores",
]

FailurePolicy = Literal["block", "allow", "raise"]
_POLICIES = ("block", "allow", "raise")


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

    Categories (docs/policies.md): ``categories`` are the codes of the violated categories of
    the policy in effect, in the model's order (empty when safe or when the guard names none);
    a code the policy does not have is kept (and counted in ``guard.stats``). ``allowed`` is
    False when the verdict is harmful and any violated category's action is ``"block"`` (an
    unknown code blocks), or when it is harmful and names no category (fail closed); a harmful
    verdict whose categories are all ``"flag"`` is allowed (see :attr:`flagged`).
    ``controversial`` is True when the guard gave its graded middle answer (Qwen3Guard's
    "Controversial"); the guard's ``controversial`` option decided whether that counts as harmful.
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
    categories: tuple[str, ...] = Field(
        (), description="Codes of the violated categories, in the model's order (empty when safe)."
    )
    category_scores: dict[str, float] | None = Field(
        None, description="P(category) per code, where the guard gives probabilities."
    )
    policy: str | None = Field(None, description="The name of the policy in effect, if it has one.")
    controversial: bool | None = Field(
        None, description="The guard's graded middle answer (None for families without one)."
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
    contradiction: str | None = Field(
        None,
        description="Where the reasoning concludes otherwise than the result (the result decides), "
        "e.g. 'the reasoning concludes the request is unharmful; the result says harmful'.",
    )

    @property
    def blocked(self) -> bool:
        """The opposite of :attr:`allowed`."""
        return not self.allowed

    @property
    def flagged(self) -> bool:
        """Harmful but let through: every violated category's action is ``"flag"``."""
        return self.harmful and self.allowed and self.decided_by == "model"


def validate_policy(name: str, value: str) -> FailurePolicy:
    if value not in _POLICIES:
        raise ConfigurationError(f"{name} must be one of {', '.join(_POLICIES)}; got {value!r}")
    return value  # type: ignore[return-value]


def verdict_from_generation(
    profile: Profile,
    prepared: Prepared,
    generation: Generation,
    *,
    on_parse_error: FailurePolicy,
    on_error: FailurePolicy,
    latency_ms: float,
    model: str | None,
    controversial: Literal["block", "allow"] = "block",
) -> Verdict:
    """Build the verdict for one generation, applying the failure policies.

    - A generation that carries an error follows ``on_error``.
    - An output with no parsable label follows ``on_parse_error``; so does an output cut by
      ``max_new_tokens`` (``finish_reason == "length"``), whatever labels it holds: the model
      never finished its answer, and the last block of a cut output may be text the reasoning
      quotes (a forged answer typed by the user), not the model's verdict.
    - ``"raise"`` raises (``ParseError`` for parse failures, the backend's error otherwise).
    """
    common = {"latency_ms": latency_ms, "model": model, "profile": profile.name}
    if generation.error is not None:
        if on_error == "raise":
            raise generation.error
        return policy_verdict(
            on_error, f"backend error: {generation.error}", raw_output=generation.text, **common
        )
    parsed = profile.parse(generation.text, prepared.item)
    if generation.finish_reason == "length" or not parsed.ok:
        if generation.finish_reason == "length":
            reason = "unparsable model output (the output hit max_new_tokens before the answer was complete)"
        else:
            reason = f"unparsable model output ({parsed.error})"
        verdict = policy_verdict(
            on_parse_error if on_parse_error != "raise" else "block",
            reason,
            raw_output=generation.text,
            reasoning=parsed.reasoning,
            output_tokens=generation.output_tokens,
            **common,
        )
        if on_parse_error == "raise":
            raise ParseError(reason, raw_output=generation.text, verdict=verdict)
        return verdict
    item = prepared.item
    labels = dict(parsed.labels)
    graded = [t for t in parsed.controversial if labels.get(t) == "harmful"]
    if controversial == "allow":
        for task in graded:
            labels[task] = "unharmful"
    # a task the family did not answer (Llama Guard assesses only the last turn) stays None
    request = labels["request"] == "harmful" if item.has_request and labels.get("request") else None
    response = labels["response"] == "harmful" if item.has_response and labels.get("response") else None
    refusal = None
    if "refusal" in profile.tasks and item.has_response and labels.get("refusal") is not None:
        refusal = labels["refusal"] == "refusal"
    harmful = bool(response) if item.response_only else bool(request) or bool(response)
    categories = _categories(item, parsed.categories) if harmful else ()
    applied = {"request": labels.get("request") if item.has_request else None,
               "response": labels.get("response") if item.has_response else None}  # fmt: skip
    return Verdict(
        contradiction=profile.contradiction(parsed.reasoning, applied),
        request_harmful=request,
        response_harmful=response,
        response_refusal=refusal,
        harmful=harmful,
        allowed=decide_allowed(item, harmful, categories),
        categories=categories,
        policy=item.policy.name if item.policy is not None else None,
        controversial=bool(graded) if profile.graded else None,
        reasoning=parsed.reasoning,
        raw_output=generation.text,
        parsed=True,
        decided_by="model",
        output_tokens=generation.output_tokens,
        **common,
    )


def _categories(item: Any, codes: tuple[str, ...]) -> tuple[str, ...]:
    """``codes`` spelled as the policy in effect spells them (unknown codes kept)."""
    policy = item.policy
    return policy.canonical(codes) if policy is not None else tuple(dict.fromkeys(codes))


def decide_allowed(item: Any, harmful: bool, categories: tuple[str, ...]) -> bool:
    """``allowed`` for a model verdict: safe is allowed; harmful is blocked unless it names
    categories and every one of them is ``"flag"`` under the policy in effect (no category, an
    unknown code or no policy: blocked)."""
    if not harmful:
        return True
    policy = item.policy
    if policy is None or not categories:
        return False
    return not policy.blocks(categories)


def verdict_from_scores(
    profile: Profile,
    prepared: Prepared,
    task_scores: Mapping[str, float],
    *,
    threshold: float,
    latency_ms: float,
    model: str | None,
    category_scores: Mapping[str, float] | None = None,
) -> Verdict:
    """The fast-mode verdict for one request from its task scores (P(harmful) per task, see
    :func:`guardrail.fast.marginals`): a task is harmful when its score reaches ``threshold``,
    a response a refusal when P(refusal) reaches 0.5. ``category_scores`` (a per-category
    classifier, :func:`guardrail.fast.category_scores`): the verdict's ``categories`` are those
    at or over ``threshold``, in the policy's order."""
    item = prepared.item
    request = task_scores.get("request") if item.has_request else None
    response = task_scores.get("response") if item.has_response else None
    refusal = task_scores.get("refusal") if item.has_response and "refusal" in profile.tasks else None
    labels: dict[str, str | None] = {
        "request": None if request is None else ("harmful" if request >= threshold else "unharmful"),
        "response": None if response is None else ("harmful" if response >= threshold else "unharmful"),
        "refusal": None if refusal is None else ("refusal" if refusal >= 0.5 else "compliance"),
    }
    scores = [s for s in ((response,) if item.response_only else (request, response)) if s is not None]
    score = max(scores) if scores else None
    harmful = labels["response"] == "harmful" or (not item.response_only and labels["request"] == "harmful")
    categories: tuple[str, ...] = ()
    if category_scores is not None:
        categories = _categories(item, tuple(c for c, p in category_scores.items() if p >= threshold))
    return Verdict(
        request_harmful=None if request is None else labels["request"] == "harmful",
        response_harmful=None if response is None else labels["response"] == "harmful",
        response_refusal=None if refusal is None else labels["refusal"] == "refusal",
        harmful=harmful,
        allowed=decide_allowed(item, harmful, categories),
        categories=categories,
        category_scores=dict(category_scores) if category_scores is not None else None,
        policy=item.policy.name if item.policy is not None else None,
        reasoning=None,
        raw_output=profile.fast_output(labels),
        parsed=True,
        score=score,
        request_score=request,
        response_score=response,
        refusal_score=refusal,
        path="fast",
        decided_by="model",
        latency_ms=latency_ms,
        output_tokens=0,
        model=model,
        profile=profile.name,
    )


def policy_verdict(policy: FailurePolicy, error: str, *, raw_output: str = "", **fields: Any) -> Verdict:
    """A verdict decided by a failure policy (``"block"`` or ``"allow"``)."""
    block = policy != "allow"
    return Verdict(
        harmful=block,
        allowed=not block,
        parsed=False,
        decided_by="policy",
        error=error,
        raw_output=raw_output,
        **fields,
    )
