"""A guard in a LangChain v1 agent: :class:`GuardrailMiddleware`, an ``AgentMiddleware`` for
``create_agent``. Needs ``pip install "guardrail-vl[langchain-agents]"`` (the ``langchain`` package).

::

    from langchain.agents import create_agent
    from guardrail.integrations.langchain import GuardrailMiddleware

    agent = create_agent(model, tools=[search], middleware=[GuardrailMiddleware(guard)])

What it checks (each as a conversation, docs/conversations.md: the turn judged with the turn
before it as context, images included):

- **before every model call** (``before_model``): the turns added since the model last spoke,
  each judged on its own: the user's input (``input=True``) and every tool result
  (``tools=True``; a tool result is untrusted input: a web page, a file, an email). A harmful
  one never reaches the model.
- **after every model call** (``after_model``, ``output=True``): the model's message (its text
  and its tool calls) as the response to that conversation. A harmful one is replaced, and its
  tool calls never run.

On a violation the agent jumps to its end with an ``AIMessage(message)`` (the harmful model
message is replaced in place; the verdict is in the message's ``additional_kwargs["guardrail"]``),
or, with ``on_violation="raise"``, :class:`~guardrail.errors.GuardViolation` is raised. When the
guard itself fails (its backend down, a timeout) the agent is blocked the same way
(``on_error="block"``, fail closed) unless ``on_error="allow"`` (logged, the agent goes on) or
``"raise"``. Content the guard cannot check (an audio part for a guard that takes none, too many
images in one turn) is an :class:`~guardrail.errors.InputError`: blocked (raised with
``on_violation="raise"``), never passed unseen, whatever ``on_error`` says. Async agents
(``ainvoke``/``astream``) use the async twins, which never block the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from guardrail._deps import require

require("langchain", extra="langchain-agents", feature="guardrail.integrations.langchain.GuardrailMiddleware")

from langchain.agents.middleware import AgentMiddleware, hook_config  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402

from guardrail.errors import ConfigurationError, GuardViolation, InputError  # noqa: E402
from guardrail.integrations.decorator import DEFAULT_MESSAGE  # noqa: E402
from guardrail.integrations.extract import user_limits  # noqa: E402
from guardrail.integrations.history import guard_input, history_messages  # noqa: E402
from guardrail.integrations.policy import blocks  # noqa: E402
from guardrail.observers import called_by  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.guard import Guard
    from guardrail.inputs import InputLimits
    from guardrail.verdict import Verdict

__all__ = ["GuardrailMiddleware"]

log = logging.getLogger("guardrail")
_SOURCE = "langchain-agent"
Stage = Literal["input", "tool", "output"]


class GuardrailMiddleware(AgentMiddleware):
    """Check an agent's input, tool results and model output with ``guard`` (see the module
    docstring).

    - ``input`` / ``tools`` / ``output``: which of the three to check (all by default).
    - ``message``: the text of the ``AIMessage`` that ends a blocked run.
    - ``on_violation``: ``"replace"`` (jump to the end with ``message``) or ``"raise"``.
    - ``on_error``: when the guard fails: ``"block"`` (default), ``"allow"`` or ``"raise"``.
    - ``allow_paths``: read image strings that are not URLs as local file paths (off: the
      conversation comes from users and tools).
    """

    def __init__(
        self,
        guard: Guard,
        *,
        input: bool = True,  # noqa: A002
        output: bool = True,
        tools: bool = True,
        message: str = DEFAULT_MESSAGE,
        on_violation: Literal["replace", "raise"] = "replace",
        on_error: Literal["block", "allow", "raise"] = "block",
        allow_paths: bool = False,
    ):
        super().__init__()
        for name, value in (
            ("input", input),
            ("output", output),
            ("tools", tools),
            ("allow_paths", allow_paths),
        ):
            if not isinstance(value, bool):
                raise ConfigurationError(f"GuardrailMiddleware: {name} must be True or False")
        if not (input or output or tools):
            raise ConfigurationError(
                "GuardrailMiddleware with input, output and tools all False checks nothing"
            )
        if on_violation not in ("replace", "raise"):
            raise ConfigurationError(f"on_violation must be 'replace' or 'raise'; got {on_violation!r}")
        if on_error not in ("block", "allow", "raise"):
            raise ConfigurationError(f"on_error must be 'block', 'allow' or 'raise'; got {on_error!r}")
        if not isinstance(message, str):
            raise ConfigurationError("message must be a string (the text of the replacement AIMessage)")
        self.guard = guard
        self.check_input, self.check_output, self.check_tools = input, output, tools
        self.message = message
        self.on_violation = on_violation
        self.on_error = on_error
        self.allow_paths = allow_paths

    @property
    def limits(self) -> InputLimits:
        return user_limits(self.guard.limits, self.allow_paths)

    # ----------------------------------------------------------------- what to check
    def _before_items(self, state: Mapping[str, Any]) -> list[tuple[Stage, dict[str, Any]]]:
        """The turns added since the model last spoke (user input, tool results), each as the
        last turn of the conversation up to it."""
        turns = history_messages(list(state.get("messages") or ()))
        last_ai = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=-1)
        items: list[tuple[Stage, dict[str, Any]]] = []
        for i in range(last_ai + 1, len(turns)):
            role = turns[i]["role"]
            if role == "user" and self.check_input:
                items.append(("input", {"messages": turns[: i + 1]}))
            elif role == "tool" and self.check_tools:
                items.append(("tool", {"messages": turns[: i + 1]}))
        return items

    def _after_items(self, state: Mapping[str, Any]) -> list[tuple[Stage, dict[str, Any]]]:
        if not self.check_output:
            return []
        messages = list(state.get("messages") or ())
        if not messages or not isinstance(messages[-1], AIMessage):
            return []
        from guardrail.conversation import parse_messages

        turns = history_messages(messages)
        text = parse_messages([turns[-1]])[0].text
        if not (text or "").strip():
            return []
        return [("output", {"messages": turns[:-1], "response": text})]

    # ---------------------------------------------------------------------- checking
    def _first_block(self, items: Sequence[tuple[Stage, dict[str, Any]]], verdicts: Sequence[Verdict]) -> Any:
        for (stage, _), verdict in zip(items, verdicts, strict=True):
            if blocks(verdict, "output" if stage == "output" else "input"):
                return stage, verdict
        return None

    def _check(self, items: list[tuple[Stage, dict[str, Any]]]) -> Any:
        if not items:
            return None
        try:
            prepared = [guard_input(self.guard, item, self.limits) for _, item in items]
            with called_by(_SOURCE, items[0][0]):
                verdicts = self.guard.moderate_batch(prepared)
        except Exception as exc:  # noqa: BLE001 - the failure policy decides (see _failed)
            return self._failed(items[0][0], exc)
        return self._first_block(items, verdicts)

    async def _acheck(self, items: list[tuple[Stage, dict[str, Any]]]) -> Any:
        if not items:
            return None
        try:
            prepared = await asyncio.to_thread(
                lambda: [guard_input(self.guard, item, self.limits) for _, item in items]
            )  # decoding images is CPU work
            with called_by(_SOURCE, items[0][0]):
                verdicts = await self.guard.amoderate_batch(prepared)
        except Exception as exc:  # noqa: BLE001
            return self._failed(items[0][0], exc)
        return self._first_block(items, verdicts)

    def _failed(self, stage: Stage, exc: Exception) -> Any:
        """A check that raised: uncheckable content always blocks; a guard failure follows
        ``on_error``."""
        if isinstance(exc, InputError):
            if self.on_violation == "raise":
                raise exc
            return stage, exc
        if self.on_error == "raise":
            raise exc
        if self.on_error == "allow":
            log.warning(
                "guardrail: the %s check failed and on_error='allow' lets the agent go on: %s", stage, exc
            )
            return None
        return stage, exc

    # ---------------------------------------------------------------------- blocking
    def _blocked(self, found: Any, replace_id: str | None = None) -> dict[str, Any] | None:
        if found is None:
            return None
        stage, outcome = found
        if isinstance(outcome, Exception):
            info: dict[str, Any] = {"stage": stage, "error": f"{type(outcome).__name__}: {outcome}"}
        else:
            if self.on_violation == "raise":
                raise GuardViolation(outcome, stage=stage)
            info = {"stage": stage, "verdict": outcome.model_dump(mode="json")}
        reply = AIMessage(self.message, additional_kwargs={"guardrail": info})
        if replace_id is not None:
            reply.id = replace_id  # the harmful model message is replaced in the state
        return {"messages": [reply], "jump_to": "end"}

    # ------------------------------------------------------------------------- hooks
    @hook_config(can_jump_to=["end"])
    def before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return self._blocked(self._check(self._before_items(state)))

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return self._blocked(await self._acheck(self._before_items(state)))

    @hook_config(can_jump_to=["end"])
    def after_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return self._blocked(self._check(self._after_items(state)), _last_id(state))

    @hook_config(can_jump_to=["end"])
    async def aafter_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return self._blocked(await self._acheck(self._after_items(state)), _last_id(state))


def _last_id(state: Mapping[str, Any]) -> str | None:
    messages = state.get("messages") or ()
    return getattr(messages[-1], "id", None) if messages else None
