"""Conversations: chat histories in OpenAI or LangChain form, validated into :class:`Message`.

``guard.moderate(messages=[...])`` takes a conversation in OpenAI chat format (roles
``system``, ``user``, ``assistant``, ``tool``; ``developer`` is read as ``system``; content a
string or a list of parts with ``text`` and ``image_url``), LangChain message objects, or
``(role, content)`` pairs. This module checks the structure and collects each turn's text and
image, video and audio *sources* (OpenAI ``input_audio`` parts, vLLM's ``video_url`` /
``audio_url`` parts, LangChain's standard ``video`` / ``audio`` blocks); the profile then chooses what of the conversation its model sees
(:meth:`guardrail.profiles.Profile.conversation_view`) and only those images are decoded.

Errors (all :class:`~guardrail.errors.InputError`, raised before anything reaches a model): an
empty conversation, more than ``InputLimits.max_messages`` turns, an unknown role, a message
that is not a mapping / message object / pair, a tool turn without content, a content part of
a type the guard cannot see (files; video or audio when the profile takes none, see
:func:`guardrail.inputs.conversation_input`: never dropped silently), a text over
``InputLimits.max_text_chars``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail.errors import InputError, TextTooLongError

__all__ = ["IMAGE_PART_TYPES", "Message", "media_source", "parse_messages"]

ROLES = ("system", "user", "assistant", "tool")
_ROLE_ALIASES = {
    "system": "system", "developer": "system", "user": "user", "human": "user",
    "assistant": "assistant", "ai": "assistant", "tool": "tool",
}  # fmt: skip
_TEXT_PARTS = ("text", "input_text", "output_text")
_IMAGE_PARTS = ("image_url", "input_image", "image")
#: Content part types that carry an image.
IMAGE_PART_TYPES = _IMAGE_PARTS
_VIDEO_PARTS = ("video_url", "video")
_AUDIO_PARTS = ("input_audio", "audio_url", "audio")
_UNSEEN_PARTS = {"file": "a file", "input_file": "a file"}


@dataclass(frozen=True)
class Message:
    """One validated turn: its role, text (None when it has none) and image, video and audio
    sources (bytes or URL strings; decoded only if the profile shows this turn)."""

    role: str
    text: str | None
    images: tuple[Any, ...] = ()
    videos: tuple[Any, ...] = ()
    audios: tuple[Any, ...] = ()


def parse_messages(
    messages: Any, *, max_messages: int = 256, max_text_chars: int = 200_000
) -> tuple[Message, ...]:
    """Validate a conversation and return its turns (see the module docstring)."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise InputError(
            "messages must be a list of chat messages ({'role': ..., 'content': ...} or LangChain "
            f"messages), not {type(messages).__name__}"
        )
    if not messages:
        raise InputError("messages is empty: give at least one turn")
    if len(messages) > max_messages:
        raise InputError(f"{len(messages)} messages given; the limit is {max_messages}")
    out = []
    for i, message in enumerate(messages):
        role, content, tool_calls = _fields(message, i)
        text, images, videos, audios = _content(content, i)
        if tool_calls:
            calls = "\n".join(_tool_call_text(c) for c in tool_calls)
            text = f"{text}\n{calls}" if text else calls
        if role == "tool" and not (text or "").strip() and not (images or videos or audios):
            raise InputError(f"messages[{i}]: a tool turn needs content (the tool's result)")
        if text is not None and len(text) > max_text_chars:
            raise TextTooLongError(f"messages[{i}] is {len(text)} characters; the limit is {max_text_chars}")
        out.append(Message(role, text, tuple(images), tuple(videos), tuple(audios)))
    return tuple(out)


def _fields(message: Any, i: int) -> tuple[str, Any, list[Any]]:
    """(role, content, tool calls) of an OpenAI dict, a LangChain message or a (role, content) pair."""
    if isinstance(message, Mapping):
        role, content, calls = message.get("role"), message.get("content"), message.get("tool_calls") or []
    elif isinstance(message, tuple) and len(message) == 2:
        role, content, calls = message[0], message[1], []
    elif hasattr(message, "type") and hasattr(message, "content"):  # a LangChain BaseMessage
        role, content = message.type, message.content
        calls = list(getattr(message, "tool_calls", None) or [])
    else:
        raise InputError(
            f"messages[{i}] is a {type(message).__name__}; give a dict with 'role' and 'content', "
            "a LangChain message or a (role, content) pair"
        )
    if not isinstance(role, str) or role.lower() not in _ROLE_ALIASES:
        raise InputError(f"messages[{i}] has unknown role {role!r}; roles: {', '.join(ROLES)}")
    return _ROLE_ALIASES[role.lower()], content, list(calls)


def _content(content: Any, i: int) -> tuple[str | None, list[Any], list[Any], list[Any]]:
    if content is None:
        return None, [], [], []
    if isinstance(content, str):
        return content, [], [], []
    if isinstance(content, Mapping):
        content = [content]
    if not isinstance(content, Sequence) or isinstance(content, (bytes, bytearray)):
        raise InputError(
            f"messages[{i}].content must be a string or a list of parts, not {type(content).__name__}"
        )
    texts: list[str] = []
    images: list[Any] = []
    videos: list[Any] = []
    audios: list[Any] = []
    for j, part in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, Mapping):
            raise InputError(f"{where} must be a dict with 'type', not {type(part).__name__}")
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            text = part.get("text")
            if not isinstance(text, str):
                raise InputError(f"{where}: a text part needs a string 'text'")
            texts.append(text)
        elif kind == "refusal":
            texts.append(str(part.get("refusal") or ""))
        elif kind in _IMAGE_PARTS:
            images.append(_image_source(part, where))
        elif kind in _VIDEO_PARTS:
            videos.append(media_source(part, where, "video"))
        elif kind in _AUDIO_PARTS:
            audios.append(media_source(part, where, "audio"))
        elif kind in _UNSEEN_PARTS:
            raise InputError(
                f"{where} is {_UNSEEN_PARTS[kind]} ({kind!r}), which this guard cannot check; it is "
                "refused rather than passed unseen"
            )
        else:
            raise InputError(
                f"{where} has unknown content type {kind!r}; types: text, image_url, video_url, input_audio"
            )
    return ("\n".join(texts) if texts else None), images, videos, audios


def media_source(part: Mapping[str, Any], where: str, kind: str) -> Any:
    """The source of a video or audio part: OpenAI's ``input_audio`` (``{"data": base64,
    "format": "wav"}``), vLLM's ``video_url`` / ``audio_url`` (``{"url": ...}``), or a LangChain
    standard ``video`` / ``audio`` block (``base64`` or ``url``). Bytes or a URL string (data
    URLs are read; remote URLs are refused when the clip is decoded)."""
    inner = part.get(part.get("type")) if isinstance(part.get(part.get("type")), Mapping) else part
    data = inner.get("data") if isinstance(inner.get("data"), str) else inner.get("base64")
    if isinstance(data, str) and data:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(f"{where}: the {kind}'s base64 data is not valid base64") from None
    url = inner.get("url")
    if isinstance(url, str) and url:
        return url
    if inner.get("file_id") or inner.get("id"):
        raise InputError(f"{where}: {kind} given by file id cannot be checked; send its data")
    raise InputError(f"{where}: a {kind} part needs base64 data or a URL")


def _image_source(part: Mapping[str, Any], where: str) -> Any:
    """The image source of an OpenAI ``image_url``/``input_image`` part or a LangChain image block."""
    for key in ("image_url", "url"):
        value = part.get(key)
        if isinstance(value, Mapping):
            value = value.get("url")
        if isinstance(value, (str, bytes, bytearray)) and value:
            return value
    data = part.get("base64") or part.get("data")
    if isinstance(data, str) and data:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(f"{where}: the image's base64 data is not valid base64") from None
    raise InputError(f"{where}: an image part needs a URL (image_url) or base64 data")


def _tool_call_text(call: Any) -> str:
    """A tool call as the guard reads it: ``[tool call] name(arguments)``."""
    if isinstance(call, Mapping):
        fn = call.get("function") if isinstance(call.get("function"), Mapping) else call
        name = fn.get("name", "?")
        args = fn.get("arguments", fn.get("args", ""))
    else:
        name, args = getattr(call, "name", "?"), getattr(call, "args", "")
    if not isinstance(args, str):
        args = json.dumps(args, ensure_ascii=False, default=str)
    return f"[tool call] {name}({args})"
