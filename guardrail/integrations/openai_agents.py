"""OpenAI Agents SDK guardrails backed by a :class:`~guardrail.Guard`.

Needs ``pip install "guardrail-vl[openai-agents]"`` (the ``openai-agents`` package)::

    from agents import Agent, InputGuardrailTripwireTriggered, OutputGuardrailTripwireTriggered, Runner
    from guardrail.integrations.openai_agents import guard_input, guard_output

    agent = Agent(
        name="assistant",
        instructions="You are a helpful assistant.",
        input_guardrails=[guard_input(guard)],
        output_guardrails=[guard_output(guard)],
    )
    try:
        result = await Runner.run(agent, "How do I bake bread?")
    except (InputGuardrailTripwireTriggered, OutputGuardrailTripwireTriggered) as blocked:
        verdict = blocked.guardrail_result.output.output_info   # the guard's Verdict

- :func:`guard_input` checks the run's input: every user turn of it (strings, ``input_text``
  parts, ``input_image`` parts given as ``data:`` URLs, or ``http(s)`` URLs when the guard's
  limits allow remote images; never a local path), before the model is called: it is built with
  ``run_in_parallel=False``. The SDK's default (``True``) starts the model while the guardrail
  runs, so a harmful request still reaches the model (and is paid for, and may start tool calls
  with side effects) before the tripwire stops the run.
- :func:`guard_output` checks the agent's final output (a string, or a structured output as
  JSON) together with the run's user turns (``RunContextWrapper.turn_input``).

Which verdicts trip is :func:`guardrail.integrations.policy.blocks`. The verdict is the
guardrail's ``output_info``. When the check itself fails (content the guard cannot read, such
as a file part or an image given by file id; a guard whose ``on_error`` is ``"raise"``)
``on_error`` decides: ``"block"`` (default: trip, with a policy verdict saying why),
``"allow"`` or ``"raise"``. Backend failures follow the guard's own ``on_error`` policy first
(default: a blocking verdict).

The SDK runs input guardrails for the first agent of a run only, and output guardrails on the
final output only (not on tool calls or handoffs); with ``Runner.run_streamed`` the output
guardrail runs after the stream's events have been delivered. See
docs/integrations/openai-agents.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from guardrail._deps import require

require(
    "agents", extra="openai-agents", package="openai-agents", feature="guardrail.integrations.openai_agents"
)

from agents import GuardrailFunctionOutput, InputGuardrail, OutputGuardrail  # noqa: E402

from guardrail._redact import redact  # noqa: E402
from guardrail.errors import ConfigurationError, GuardrailError, InputError  # noqa: E402
from guardrail.integrations.extract import (  # noqa: E402
    USER_ROLES,
    Extracted,
    load_images,
    request_from_messages,
    user_limits,
)
from guardrail.integrations.policy import blocks  # noqa: E402
from guardrail.observers import called_by  # noqa: E402
from guardrail.verdict import Verdict, policy_verdict  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.guard import Guard

__all__ = ["agent_output_text", "agents_request", "guard_input", "guard_output"]

OnError = Literal["block", "allow", "raise"]
_SOURCE = "openai-agents"


def _as_item(item: Any) -> Any:
    """An input item as a dict (the SDK's items are TypedDicts; models are dumped)."""
    if isinstance(item, Mapping):
        return item
    dump = getattr(item, "model_dump", None)
    return dump(exclude_unset=True) if callable(dump) else item


def agents_request(value: str | Sequence[Any]) -> Extracted:
    """The user's request in an agent run's input: the string itself, or every user turn of
    the input items (texts joined by blank lines, images in order). Items of other roles and
    items without a role (tool calls and their outputs, reasoning) are context, not the request.
    Raises :class:`~guardrail.errors.InputError` for user content the guard cannot check."""
    if isinstance(value, str):
        return Extracted(prompt=value)
    items = [_as_item(item) for item in value]
    users = [i for i in items if isinstance(i, Mapping) and str(i.get("role") or "").lower() in USER_ROLES]
    if not users:
        return Extracted()
    return request_from_messages(users)


def agent_output_text(output: Any) -> str:
    """An agent's final output as the text the guard reads: a string as it is, a structured
    output (pydantic model, dataclass, dict, list) as JSON."""
    if isinstance(output, str):
        return output
    if hasattr(output, "model_dump_json"):
        return output.model_dump_json()
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        output = dataclasses.asdict(output)
    try:
        return json.dumps(output, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(output)


def _check_on_error(on_error: str) -> None:
    if on_error not in ("block", "allow", "raise"):
        raise ConfigurationError(f"on_error must be 'block', 'allow' or 'raise', not {on_error!r}")


class _Check:
    """One guard check for a guardrail function: images decoded off the event loop, the
    observers told the source and stage, failures turned into the ``on_error`` decision."""

    def __init__(self, guard: Guard, stage: str, on_error: OnError, allow_paths: bool):
        _check_on_error(on_error)
        self.guard, self.stage, self.on_error = guard, stage, on_error
        self.limits = user_limits(guard.limits, allow_paths)

    async def __call__(self, request: Extracted, response: str | None = None) -> GuardrailFunctionOutput:
        try:
            if request.images:
                try:
                    request = await asyncio.to_thread(load_images, request, self.limits)
                except InputError:
                    if self.stage == "input":
                        raise
                    request = Extracted(prompt=request.prompt)  # the input stage decides on them
            if request.prompt is None and not request.images and response is None:
                return GuardrailFunctionOutput(output_info=None, tripwire_triggered=False)
            with called_by(_SOURCE, self.stage):
                verdict = await self.guard.amoderate(**request.item(response))
        except GuardrailError as exc:
            if self.on_error == "raise":
                raise
            verdict = self.failed(exc)
        return GuardrailFunctionOutput(output_info=verdict, tripwire_triggered=blocks(verdict, self.stage))

    def failed(self, exc: Exception) -> Verdict:
        kind = "content the guard cannot check" if isinstance(exc, InputError) else "guard error"
        reason = redact(f"{kind}: {type(exc).__name__}: {exc}")
        return policy_verdict(self.on_error, reason, profile=self.guard.profile.name)


def guard_input(
    guard: Guard,
    *,
    name: str = "guardrail_input",
    run_in_parallel: bool = False,
    on_error: OnError = "block",
    allow_paths: bool = False,
) -> InputGuardrail[Any]:
    """An input guardrail: trips when ``guard`` blocks the run's request (see the module
    docstring). ``run_in_parallel=False`` (default) checks before the model is called;
    ``allow_paths=True`` lets image strings be read as local files (trusted input only)."""
    check = _Check(guard, "input", on_error, allow_paths)

    async def guardrail_input(context: Any, agent: Any, input: Any) -> GuardrailFunctionOutput:
        try:
            request = agents_request(input)
        except InputError as exc:
            if on_error == "raise":
                raise
            verdict = check.failed(exc)
            return GuardrailFunctionOutput(output_info=verdict, tripwire_triggered=blocks(verdict, "input"))
        return await check(request)

    return InputGuardrail(guardrail_function=guardrail_input, name=name, run_in_parallel=run_in_parallel)


def guard_output(
    guard: Guard,
    *,
    name: str = "guardrail_output",
    with_request: bool = True,
    on_error: OnError = "block",
    allow_paths: bool = False,
) -> OutputGuardrail[Any]:
    """An output guardrail: trips when ``guard`` finds the agent's final output harmful (or its
    failure policy blocks). With ``with_request`` (default) the output is checked together with
    the user turns of the run's input, as the other integrations do; user content the guard
    cannot read is then left out (the input guardrail decides on it) and the output is checked
    on its own."""
    check = _Check(guard, "output", on_error, allow_paths)

    async def guardrail_output(context: Any, agent: Any, output: Any) -> GuardrailFunctionOutput:
        request = Extracted()
        if with_request:
            try:
                request = agents_request(list(getattr(context, "turn_input", None) or []))
            except InputError:
                request = Extracted()
        return await check(request, agent_output_text(output))

    return OutputGuardrail(guardrail_function=guardrail_output, name=name)
