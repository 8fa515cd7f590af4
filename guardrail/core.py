"""The pure core shared by every entry point: no I/O, no model, no clock.

``Guard.moderate``, ``Guard.amoderate``, ``Guard.moderate_batch`` and the integrations all go
through the same three steps:

1. :func:`prepare` validates the inputs and renders the prompts (raises ``InputError``);
2. the backend generates (the only I/O, done by the caller, sync or async);
3. :func:`assemble` parses each output and applies the failure policy to build a ``Verdict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from guardrail.backends.base import Generation
from guardrail.errors import ConfigurationError, InputError, ParseError
from guardrail.inputs import InputLimits, normalize_input
from guardrail.profiles.base import ModerationInput, Profile, RenderedPrompt
from guardrail.verdict import Verdict

__all__ = ["FailurePolicy", "Prepared", "assemble", "policy_verdict", "prepare", "validate_policy"]

FailurePolicy = Literal["block", "allow", "raise"]
_POLICIES = ("block", "allow", "raise")


def validate_policy(name: str, value: str) -> FailurePolicy:
    if value not in _POLICIES:
        raise ConfigurationError(f"{name} must be one of {', '.join(_POLICIES)}; got {value!r}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Prepared:
    """One validated request and its rendered prompt."""

    item: ModerationInput
    prompt: RenderedPrompt


_ITEM_KEYS = frozenset({"prompt", "response", "images"})


def prepare(profile: Profile, item: Mapping[str, Any] | ModerationInput, limits: InputLimits) -> Prepared:
    """Validate one request (a mapping with ``prompt``/``response``/``images``) and render it."""
    if not isinstance(item, ModerationInput):
        if not isinstance(item, Mapping):
            raise InputError(
                f"a batch item must be a dict with prompt/response/images, not {type(item).__name__}"
            )
        unknown = set(item) - _ITEM_KEYS
        if unknown:
            raise InputError(f"unknown keys in request: {', '.join(sorted(map(str, unknown)))}")
        item = normalize_input(item.get("prompt"), item.get("response"), item.get("images"), limits=limits)
    if item.images and not profile.supports_images:
        raise InputError(f"the '{profile.name}' profile is text-only; this request has images")
    return Prepared(item=item, prompt=profile.render(item))


def assemble(
    profile: Profile,
    prepared: Prepared,
    generation: Generation,
    *,
    on_parse_error: FailurePolicy,
    on_error: FailurePolicy,
    latency_ms: float,
    model: str | None,
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
    labels = parsed.labels
    request = labels.get("request") == "harmful" if item.has_request else None
    response = labels.get("response") == "harmful" if item.has_response else None
    refusal = None
    if "refusal" in profile.tasks and item.has_response and labels.get("refusal") is not None:
        refusal = labels["refusal"] == "refusal"
    harmful = bool(request) or bool(response)
    return Verdict(
        request_harmful=request,
        response_harmful=response,
        response_refusal=refusal,
        harmful=harmful,
        allowed=not harmful,
        reasoning=parsed.reasoning,
        raw_output=generation.text,
        parsed=True,
        decided_by="model",
        output_tokens=generation.output_tokens,
        **common,
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


def check_batch(items: Sequence[Any]) -> None:
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise InputError("moderate_batch takes a list of dicts with prompt/response/images")
