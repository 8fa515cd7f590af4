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
  plain OpenAI-style dicts, cut after the last user/tool turn (the assistant turns after it are
  the app's own output, checked at the output stage).
- :func:`guard_input` turns one integration request (``Extracted.item()``) into a validated
  :class:`~guardrail.profiles.ModerationInput` under the integration's limits and the guard's
  policy, as ``guard.moderate`` would.

A gateway's history is another matter (nobody checked it): the LiteLLM route keeps judging every
user turn (:mod:`guardrail.server.litellm_api`).
"""

from __future__ import annotations

import dataclasses
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
    """The request made by a chat history: the conversation up to its last user or tool turn
    (see the module docstring). Without such a turn: InputError with ``require_user``, else an
    empty request (another field of the same input holds the request)."""
    if isinstance(messages, (str, Mapping)) or not isinstance(messages, Sequence):
        raise InputError(f"messages must be a list of chat messages, not {type(messages).__name__}")
    turns = history_messages(messages)
    last = max((i for i, t in enumerate(turns) if t["role"] in CHECKED_ROLES), default=None)
    if last is None:
        if require_user:
            raise InputError("the messages hold no user turn to check")
        return Extracted()
    return Extracted(messages=tuple(turns[: last + 1]))


def guard_input(guard: Guard, item: Mapping[str, Any], limits: InputLimits) -> ModerationInput:
    """One request of an integration (``Extracted.item(response)``) validated and decoded under
    ``limits`` with the guard's profile and policy; raises InputError like ``guard.moderate``.

    With ``messages``: the other request fields found next to the history (``prompt``,
    ``images``) belong to its last turn, the ``response`` is appended as an assistant turn, and
    only the last ``limits.max_messages`` turns are kept (earlier ones are never shown)."""
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
    if prompt or images:
        last = turns[-1]
        text = "\n\n".join(t for t in (last.text, prompt) if t) or None
        turns[-1] = dataclasses.replace(last, text=text, images=last.images + images)
    if item.get("response") is not None:
        turns.append(Message("assistant", item["response"]))
    return prepare(guard.profile, conversation_turns_input(guard.profile, turns, limits), limits, policy).item
