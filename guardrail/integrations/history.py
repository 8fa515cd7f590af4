"""In-app chat histories: what ``@guard.check`` and the LangChain runnables hand the guard when
a handler's or chain's input is a conversation.

The app keeps its own history, and every turn of it was checked when it was sent; so the
guard gets the history as a **conversation** (``messages=``) and the rule of
docs/conversations.md applies: the latest user (or tool) turn is judged with the turn before it
as context, earlier turns are not re-litigated, only the checked turn's images (videos, audio)
are decoded and counted. At the output stage the response is checked as an assistant turn
after that conversation.

- :func:`history_request` reads chat messages (OpenAI dicts, LangChain messages, ``(role,
  content)`` pairs) into an :class:`~guardrail.integrations.extract.Extracted` holding them as
  plain OpenAI-style dicts.
- The request is the history's last user/tool turn (assistant turns after it are the app's own
  output, checked at the output stage), unless other fields of the same input hold request text
  or images (``{"messages": history, "input": question}``, as a prompt template with a history
  placeholder receives it): those are a new user turn after the whole history.
- :func:`guard_input` turns one integration request (``Extracted.item()``) into a validated
  :class:`~guardrail.profiles.ModerationInput` under the integration's limits and the guard's
  policy, as ``guard.moderate`` would.

A gateway's history is another matter (nobody checked it): the LiteLLM route keeps judging every
user turn (:mod:`guardrail.server.litellm_api`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from guardrail.errors import InputError
from guardrail.integrations.extract import (
    IMAGE_PART_TYPES,
    SKIPPED_PART_TYPES,
    Extracted,
    _image_source,
    _role_and_content,
)

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.guard import Guard
    from guardrail.inputs import InputLimits
    from guardrail.profiles import ModerationInput

__all__ = ["CHECKED_ROLES", "guard_input", "history_messages", "history_request"]

#: Roles whose turn is checked as a request (a tool result is untrusted input).
CHECKED_ROLES = frozenset({"user", "tool"})
NO_USER_TURN = "the messages hold no user turn to check"
_ROLES = {"human": "user", "ai": "assistant", "developer": "system", "function": "tool"}


def history_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """``messages`` as OpenAI-style dicts (``role``, ``content`` parts, ``tool_calls``), the form
    :func:`guardrail.conversation.parse_messages` validates. Image blocks of any form the
    integrations read become ``image_url`` parts; reasoning and tool-use blocks are dropped (tool
    calls are kept in ``tool_calls``); everything else is left for the parser to judge."""
    out = []
    for i, message in enumerate(messages):
        role, content = _role_and_content(message, i)
        role = _ROLES.get(role, role)
        calls = (
            message.get("tool_calls")
            if isinstance(message, Mapping)
            else getattr(message, "tool_calls", None)
        )
        turn: dict[str, Any] = {"role": role, "content": _parts(content, f"message {i}")}
        if calls:
            turn["tool_calls"] = [dict(c) if isinstance(c, Mapping) else c for c in calls]
        out.append(turn)
    return out


def _parts(content: Any, where: str) -> Any:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, Mapping) or not isinstance(content, Sequence):
        content = [content]
    parts: list[Any] = []
    for j, part in enumerate(content):
        if isinstance(part, Mapping):
            kind = part.get("type")
            if kind in SKIPPED_PART_TYPES:
                continue
            if kind in IMAGE_PART_TYPES:
                part = {
                    "type": "image_url",
                    "image_url": {"url": _image_source(part, f"{where} content part {j}")},
                }
        parts.append(part)
    return parts


def history_request(messages: Sequence[Any], *, require_user: bool = True) -> Extracted:
    """The request made by a chat history (see the module docstring). Without a user or tool
    turn: InputError with ``require_user``; else the history is context for the request another
    field of the same input holds."""
    if isinstance(messages, (str, Mapping)) or not isinstance(messages, Sequence):
        raise InputError(f"messages must be a list of chat messages, not {type(messages).__name__}")
    turns = history_messages(messages)
    if require_user and not any(t["role"] in CHECKED_ROLES for t in turns):
        raise InputError(NO_USER_TURN)
    return Extracted(messages=tuple(turns)) if turns else Extracted()


def guard_input(guard: Guard, item: Mapping[str, Any], limits: InputLimits) -> ModerationInput:
    """One request of an integration (``Extracted.item(response)``) validated and decoded under
    ``limits`` with the guard's profile and policy; raises InputError like ``guard.moderate``.

    With ``messages``: the other request fields found next to the history (``prompt``,
    ``images``) are a new user turn after it, else the history ends at its last user/tool turn;
    the ``response`` is appended as an assistant turn; only the last ``limits.max_messages``
    turns are kept (earlier ones are never shown)."""
    from guardrail.inputs import conversation_turns_input, prepare

    policy = getattr(guard, "policy", None)
    if item.get("messages") is None:
        return prepare(guard.profile, item, limits, policy).item
    from guardrail.conversation import Message, parse_messages

    messages = list(item["messages"])[-limits.max_messages :]
    turns = list(
        parse_messages(messages, max_messages=limits.max_messages, max_text_chars=limits.max_text_chars)
    )
    prompt, images = item.get("prompt"), tuple(item.get("images") or ())
    if prompt is not None or images:
        turns.append(Message("user", prompt, images))
    else:
        checked = [i for i, t in enumerate(turns) if t.role in CHECKED_ROLES]
        if not checked:
            raise InputError(NO_USER_TURN)
        turns = turns[: checked[-1] + 1]
    if item.get("response") is not None:
        turns.append(Message("assistant", item["response"]))
    return prepare(guard.profile, conversation_turns_input(guard.profile, turns, limits), limits, policy).item
