"""Find the request and the response in the shapes apps pass around.

Pure functions, no third-party imports: LangChain and OpenAI objects are recognised by duck
typing, so this module works whether or not those libraries are installed.

**Requests** (what the user asked) come as

- a string (the prompt);
- a list of chat messages: OpenAI-style dicts ``{"role": "user", "content": ...}``,
  LangChain messages (objects with ``.type``/``.content``), ``(role, content)`` tuples or bare
  strings (LangChain reads those as human messages). The request is made of **every user turn**
  (role ``user`` or ``human``): their texts joined by blank lines, their images in order.
  System, assistant and tool turns are not part of the request;
- one such message;
- a mapping or object with ``messages``, ``prompt``, ``text`` or ``message`` (first found, in
  that order) and optionally ``images``/``image`` (a request body model, for instance).

Message content is a string or a list of content parts:

- text: ``{"type": "text", "text": ...}`` (also ``input_text``/``output_text``) or a bare string;
- images: OpenAI ``{"type": "image_url", "image_url": {"url": ...}}`` (or the URL as a string),
  OpenAI Responses ``{"type": "input_image", "image_url": ...}``, LangChain's standard blocks
  ``{"type": "image", "url": ...}`` / ``{"type": "image", "base64": ..., "mime_type": ...}``,
  LangChain's older ``{"type": "image", "source_type": "base64"|"url", ...}`` and Anthropic's
  ``{"type": "image", "source": {"type": "base64", ...}}``. URLs are data URLs (or any image
  source :func:`guardrail.inputs.load_image` takes; ``http(s)`` only when the guard's
  ``InputLimits.allow_remote_images`` is on);
- skipped (not user-visible content): reasoning/thinking blocks, tool calls and tool results;
- anything else (audio, video, files, provider-specific blocks, images given only by a file id)
  raises :class:`~guardrail.errors.InputError`: content the guard cannot see is never let
  through silently.

**Responses** (what the model answered) come as a string, an OpenAI-style chat completion (object
or dict; the texts of all choices are joined), a streamed chunk (``choices[].delta.content``), a
message dict ``{"role": "assistant", "content": ...}`` or an object with ``.content`` (LangChain
``AIMessage``/``AIMessageChunk``, OpenAI ``ChatCompletionMessage``). ``None`` means there is
nothing to check.

A value none of these rules recognise raises :class:`~guardrail.errors.ConfigurationError`
telling the caller how to point at the content (``extract=`` for the decorator).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail.errors import ConfigurationError, InputError

__all__ = [
    "Extracted",
    "content_text",
    "request_from_messages",
    "request_from_value",
    "response_text",
    "split_content",
]

USER_ROLES = frozenset({"user", "human"})
TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})
SKIPPED_PART_TYPES = frozenset(
    {
        "reasoning",
        "thinking",
        "redacted_thinking",
        "tool_call",
        "tool_call_chunk",
        "invalid_tool_call",
        "server_tool_call",
        "server_tool_call_chunk",
        "server_tool_result",
        "tool_use",
        "tool_result",
        "function_call",
    }
)
# Keys (or attributes) that hold a request, tried in this order.
REQUEST_KEYS = ("messages", "prompt", "text", "message")
IMAGE_KEYS = ("images", "image")


@dataclass(frozen=True)
class Extracted:
    """A request found in an app's arguments: the prompt text and the images (any source
    :func:`guardrail.inputs.load_image` accepts). Either may be empty."""

    prompt: str | None = None
    images: tuple[Any, ...] = ()

    def item(self, response: str | None = None) -> dict[str, Any]:
        """The ``moderate_batch`` item for this request, with ``response`` when given."""
        return {"prompt": self.prompt, "images": list(self.images) or None, "response": response}


# ---------------------------------------------------------------------------------- content
def split_content(
    content: Any, *, allow_images: bool = True, where: str = "message"
) -> tuple[str, list[Any]]:
    """Text (parts joined by newlines) and image sources of one message's content."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if isinstance(content, Mapping) or not isinstance(content, Sequence):
        content = [content]
    texts: list[str] = []
    images: list[Any] = []
    for i, part in enumerate(content):
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, Mapping):
            raise InputError(f"{where} content part {i} is a {type(part).__name__}, not a dict or string")
        kind = part.get("type")
        if kind in TEXT_PART_TYPES:
            text = part.get("text")
            if not isinstance(text, str):
                raise InputError(f"{where} content part {i} of type {kind!r} has no 'text' string")
            texts.append(text)
        elif kind in IMAGE_PART_TYPES:
            if not allow_images:
                raise InputError(
                    f"{where} content part {i} is an image; the guard checks the text of responses only"
                )
            images.append(_image_source(part, f"{where} content part {i}"))
        elif kind in SKIPPED_PART_TYPES:
            continue
        else:
            raise InputError(
                f"{where} content part {i} has type {kind!r}, which the guard cannot check "
                "(it checks text and images)"
            )
    return "\n".join(t for t in texts if t), images


def content_text(content: Any, *, where: str = "response") -> str:
    """The text of a response's content (string or content parts); images raise InputError."""
    return split_content(content, allow_images=False, where=where)[0]


def _image_source(part: Mapping[str, Any], where: str) -> Any:
    kind = part.get("type")
    if kind in ("image_url", "input_image"):
        value = part.get("image_url")
        if isinstance(value, Mapping):
            value = value.get("url")
        if isinstance(value, str) and value:
            return value
        if part.get("file_id"):
            raise InputError(f"{where}: an image given by file id cannot be checked; send its data")
        raise InputError(f"{where}: {kind} part without a URL")
    # LangChain standard block (v1), its older form (v0) and Anthropic's form.
    if isinstance(part.get("base64"), str):
        return _data_url(part.get("mime_type"), part["base64"])
    source_type = part.get("source_type")
    if source_type == "base64" and isinstance(part.get("data"), str):
        return _data_url(part.get("mime_type"), part["data"])
    if isinstance(part.get("url"), str) and source_type in (None, "url"):
        return part["url"]
    source = part.get("source")
    if isinstance(source, Mapping):
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            return _data_url(source.get("media_type"), source["data"])
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return source["url"]
    if part.get("file_id") or source_type == "id":
        raise InputError(f"{where}: an image given by file id cannot be checked; send its data")
    raise InputError(f"{where}: image block without 'url' or base64 data")


def _data_url(mime: Any, data: str) -> str:
    mime = mime if isinstance(mime, str) and mime else "image/png"
    return f"data:{mime};base64,{data}"


# --------------------------------------------------------------------------------- requests
def _role_and_content(message: Any, index: int) -> tuple[str, Any]:
    if isinstance(message, str):
        return "user", message
    if isinstance(message, Mapping):
        role = message.get("role") or message.get("type")
        if role is None or "content" not in message:
            raise InputError(f"message {index} has no 'role' and 'content'")
        return str(role), message["content"]
    if isinstance(message, tuple) and len(message) == 2 and isinstance(message[0], str):
        return message[0], message[1]
    if hasattr(message, "content"):
        role = getattr(message, "role", None) or getattr(message, "type", None)
        if isinstance(role, str):
            return role, message.content
    raise InputError(f"message {index} is a {type(message).__name__}, not a chat message")


def request_from_messages(messages: Any) -> Extracted:
    """The request made by the user turns of a chat (see the module docstring)."""
    if isinstance(messages, (str, Mapping)) or not isinstance(messages, Sequence):
        raise InputError(f"messages must be a list of chat messages, not {type(messages).__name__}")
    texts: list[str] = []
    images: list[Any] = []
    users = 0
    for i, message in enumerate(messages):
        role, content = _role_and_content(message, i)
        if role.lower() not in USER_ROLES:
            continue
        users += 1
        text, imgs = split_content(content, where=f"message {i}")
        if text:
            texts.append(text)
        images.extend(imgs)
    if not users:
        raise InputError("the messages hold no user turn to check")
    return Extracted(prompt="\n\n".join(texts) if texts else None, images=tuple(images))


def _is_message(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "content" in value and isinstance(value.get("role") or value.get("type"), str)
    if isinstance(value, (str, bytes, Sequence)):
        return False
    return hasattr(value, "content") and isinstance(
        getattr(value, "role", None) or getattr(value, "type", None), str
    )


def _get(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(key)
    return getattr(value, key, None)


def _as_images(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def request_from_value(value: Any, *, hint: str = "pass extract= to say where the request is") -> Extracted:
    """The request held by ``value`` (see the module docstring); ``hint`` ends the error raised
    when the value has no recognisable shape."""
    if isinstance(value, Extracted):
        return value
    if isinstance(value, str):
        return Extracted(prompt=value)
    if _is_message(value):
        return request_from_messages([value])
    if isinstance(value, (list, tuple)):
        return request_from_messages(value)
    if value is not None and not isinstance(value, (bytes, bytearray, int, float, bool)):
        for key in REQUEST_KEYS:
            found = _get(value, key)
            if found is None or callable(found) and not isinstance(found, str):
                continue
            inner = request_from_value(found, hint=hint)
            images = ()
            for image_key in IMAGE_KEYS:
                images = _as_images(_get(value, image_key))
                if images:
                    break
            return Extracted(prompt=inner.prompt, images=inner.images + images)
    raise ConfigurationError(
        f"cannot tell what to check in a value of type {type(value).__name__} "
        f"(expected a string, chat messages, or an object with {'/'.join(REQUEST_KEYS)}); {hint}"
    )


# -------------------------------------------------------------------------------- responses
def _choices_text(choices: Sequence[Any]) -> str:
    texts = []
    for choice in choices:
        for field in ("message", "delta"):
            inner = _get(choice, field)
            if inner is not None:
                texts.append(content_text(_get(inner, "content")))
                break
        else:
            text = _get(choice, "text")  # legacy completions
            texts.append(text if isinstance(text, str) else "")
    return "\n\n".join(t for t in texts if t)


def response_text(value: Any, *, hint: str = "pass extract= to say where the response text is") -> str | None:
    """The text of a response, a streamed chunk, or ``None`` when there is nothing to check."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if isinstance(value.get("choices"), Sequence):
            return _choices_text(value["choices"])
        if "content" in value:
            return content_text(value["content"])
    elif not isinstance(value, (bytes, bytearray, Sequence)):
        choices = getattr(value, "choices", None)
        if isinstance(choices, Sequence) and not isinstance(choices, str):
            return _choices_text(choices)
        if hasattr(value, "content"):
            return content_text(value.content)
    raise ConfigurationError(
        f"cannot find the response text in a value of type {type(value).__name__} "
        f"(expected a string, a chat completion, or a message with content); {hint}"
    )
