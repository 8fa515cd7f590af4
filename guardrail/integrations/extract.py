"""Find the request and the response in the shapes apps pass around.

Pure functions, no third-party imports: LangChain and OpenAI objects are recognised by duck
typing, so this module works whether or not those libraries are installed.

A request is a string, chat messages (a conversation handed to the guard as ``messages=``, judged
on its last user turn: :mod:`guardrail.integrations.history`; :func:`request_from_messages`, which
joins every user turn, is for histories nobody checked), one message, or a mapping/object with request fields (all of those set are checked; the
names are in :mod:`guardrail.integrations.fields`), whose other fields are searched for images
(:mod:`guardrail.integrations.content`). A response is a string, a chat completion or chunk, a
message, or a mapping/object with response fields (``answer``, ``text``...). Content the guard
cannot see (audio, files...) raises :class:`~guardrail.errors.InputError`; a value no rule
recognises raises :class:`~guardrail.errors.ConfigurationError` saying how to point at the
content. The full list of shapes: docs/integrations.md, "Finding the request and the response".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from guardrail.errors import ConfigurationError, InputError
from guardrail.integrations.fields import IMAGE_FIELDS, REQUEST_FIELDS, RESPONSE_FIELDS

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.inputs import InputLimits

__all__ = [
    "Extracted",
    "combine",
    "content_text",
    "load_images",
    "request_from_fields",
    "request_from_messages",
    "request_from_value",
    "response_text",
    "split_content",
    "user_limits",
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
# The shared vocabulary (guardrail.integrations.fields), under the names used here before.
REQUEST_KEYS = REQUEST_FIELDS
IMAGE_KEYS = IMAGE_FIELDS


@dataclass(frozen=True)
class Extracted:
    """A request found in an app's arguments: the prompt text and the images (any source
    :func:`guardrail.inputs.load_image` accepts). Either may be empty. ``messages``: a chat
    history (OpenAI-style dicts, :mod:`guardrail.integrations.history`); the prompt and images
    then belong to its last turn."""

    prompt: str | None = None
    images: tuple[Any, ...] = ()
    messages: tuple[Any, ...] | None = None

    def item(self, response: str | None = None) -> dict[str, Any]:
        """The request with ``response`` when given: a ``moderate_batch`` item, or with
        ``messages`` the item :func:`guardrail.integrations.history.guard_input` reads."""
        item = {"prompt": self.prompt, "images": list(self.images) or None, "response": response}
        if self.messages is not None:
            item["messages"] = list(self.messages)
        return item


def combine(parts: Sequence[Extracted]) -> Extracted:
    """One request made of several (fields of one input): texts joined by blank lines, images
    in order. An empty text stays ``""`` (the guard then says the prompt is empty)."""
    texts = [p.prompt for p in parts if p.prompt]
    if texts:
        prompt: str | None = "\n\n".join(texts)
    else:
        prompt = "" if any(p.prompt is not None for p in parts) else None
    histories = [p.messages for p in parts if p.messages is not None]
    messages = tuple(m for h in histories for m in h) if histories else None
    return Extracted(prompt=prompt, images=tuple(img for p in parts for img in p.images), messages=messages)


def user_limits(limits: InputLimits, allow_paths: bool = False) -> InputLimits:
    """``limits`` for content users send through an integration: strings are never opened as
    local files (``InputLimits.allow_paths`` off) unless the app opts in with ``allow_paths``."""
    allow = bool(allow_paths) and limits.allow_paths
    return limits if allow == limits.allow_paths else replace(limits, allow_paths=allow)


def load_images(request: Extracted, limits: InputLimits) -> Extracted:
    """``request`` with its images validated and decoded under ``limits`` (PIL images, which
    the guard then takes as they are); raises :class:`~guardrail.errors.InputError`."""
    if not request.images:
        return request
    from guardrail.inputs import normalize_input
    from guardrail.integrations.content import materialize

    images = materialize(request.images, limits)  # file objects and uploads read, classified
    decoded = normalize_input(None, None, list(images), limits=limits).images
    return replace(request, images=decoded)


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
def _role_of(role: str) -> str:
    """A message's role, lower case, with chunk types read as their message's role: LangChain's
    ``HumanMessageChunk`` (``type="HumanMessageChunk"``) is ``"human"``, ``AIMessageChunk``
    ``"ai"``."""
    role = role.lower()
    if role.endswith("messagechunk") and len(role) > len("messagechunk"):
        role = role[: -len("messagechunk")]
    return role


def _role_and_content(message: Any, index: int) -> tuple[str, Any]:
    if isinstance(message, str):
        return "user", message
    if isinstance(message, Mapping):
        role = message.get("role") or message.get("type")
        if role is None or "content" not in message:
            raise InputError(f"message {index} has no 'role' and 'content'")
        return _role_of(str(role)), message["content"]
    if isinstance(message, tuple) and len(message) == 2 and isinstance(message[0], str):
        return _role_of(message[0]), message[1]
    if hasattr(message, "content"):
        role = getattr(message, "role", None) or getattr(message, "type", None)
        if isinstance(role, str):
            return _role_of(role), message.content
    raise InputError(f"message {index} is a {type(message).__name__}, not a chat message")


def request_from_messages(messages: Any, *, require_user: bool = True) -> Extracted:
    """The request made by the user turns of a chat (see the module docstring). With
    ``require_user`` (the default), a chat without a user turn raises InputError; without it,
    such a chat gives an empty request (another field of the same input holds the request)."""
    if isinstance(messages, (str, Mapping)) or not isinstance(messages, Sequence):
        raise InputError(f"messages must be a list of chat messages, not {type(messages).__name__}")
    texts: list[str] = []
    images: list[Any] = []
    users = 0
    for i, message in enumerate(messages):
        role, content = _role_and_content(message, i)
        if role not in USER_ROLES:
            continue
        users += 1
        text, imgs = split_content(content, where=f"message {i}")
        if text:
            texts.append(text)
        images.extend(imgs)
    if not users and require_user:
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


def request_from_fields(
    value: Any,
    keys: Sequence[str],
    image_keys: Sequence[str],
    read: Callable[[Any, bool, str], Extracted],
    *,
    message: Any = None,
    require_user: bool = True,
    where: str | None = None,
    scan_rest: bool = False,
) -> Extracted | None:
    """The request made by **every** field of ``value`` (a mapping or an object) named in
    ``keys`` that is set, each read with ``read(field, require_user, where)``, plus the images in
    the ``image_keys`` fields; ``message`` (the value itself, when it is also a chat message) counts
    as one more field. With ``scan_rest``, the other fields are searched for images
    (:func:`guardrail.integrations.content.scan_fields`). ``None`` when no field is set.

    ``where`` names ``value`` in errors (``"body"`` gives ``"body.messages"``); ``None`` means
    ``value`` is a table of arguments, named by their keys.

    With several fields, one without a user turn (a chat holding only AI turns, say) is context,
    as long as another holds the request."""
    named = [
        (key, v)
        for key, v in ((key, _get(value, key)) for key in keys)
        if v is not None and not (callable(v) and not isinstance(v, str))
    ]
    if scan_rest:  # a chat history under another name (``history``, ``chat``) is a conversation too
        named += _history_fields(value, {*keys, *image_keys})
    if not named and message is None:
        return None
    strict = require_user and len(named) + (message is not None) == 1
    parts = [read(v, strict, key if where is None else f"{where}.{key}") for key, v in named]
    if message is not None:
        parts.append(_history([message], strict))
    if require_user and not strict and all(p.prompt is None and not p.images for p in parts):
        raise InputError(f"none of the fields {', '.join(map(str, keys))} holds a user turn to check")
    images = tuple(img for key in image_keys for img in _as_images(_get(value, key)))
    if scan_rest:
        from guardrail.integrations.content import scan_fields

        skip = {*keys, *image_keys, *(key for key, _ in named)}
        images += tuple(scan_fields(value, where or "input", skip))
    return combine([*parts, Extracted(images=images)])


def _history_fields(value: Any, skip: set[str]) -> list[tuple[str, Any]]:
    """The fields of ``value`` outside ``skip`` that hold a chat history: a non-empty list of
    chat messages (not plain strings), read as a conversation rather than searched for images
    (so a history's earlier pictures are not all checked, and counted, again)."""
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    else:
        model_fields = getattr(type(value), "model_fields", None)
        if not isinstance(model_fields, Mapping):
            return []
        items = [(name, getattr(value, name, None)) for name in model_fields]
    return [(k, v) for k, v in items if k not in skip and is_history(v)]


def is_history(value: Any) -> bool:
    """Whether ``value`` is a chat history: a non-empty list or tuple of chat messages (dicts with
    ``role`` and ``content``, LangChain messages) whose roles are all chat roles."""
    return isinstance(value, (list, tuple)) and bool(value) and all(_chat_message(m) for m in value)


_CHAT_ROLES = frozenset({"system", "developer", "user", "human", "assistant", "ai", "tool", "function"})


def _chat_message(m: Any) -> bool:
    if not _is_message(m):
        return False
    role = (
        (m.get("role") or m.get("type")) if isinstance(m, Mapping) else (getattr(m, "role", None) or m.type)
    )
    return isinstance(role, str) and _role_of(role) in _CHAT_ROLES


def request_from_value(
    value: Any,
    *,
    hint: str = "pass extract= to say where the request is",
    require_user: bool = True,
    where: str = "input",
    scan: bool = True,
) -> Extracted:
    """The request held by ``value`` (see the module docstring); ``hint`` ends the error raised
    when the value has no recognisable shape. ``require_user=False`` lets a chat without a user
    turn give an empty request (used for one field among several). With ``scan`` (the default)
    the fields that are not request fields are searched for images, and a value with no request
    field is a request if it holds images (an upload, image bytes, a body with a photo);
    ``where`` names the value in errors."""
    if isinstance(value, Extracted):
        return value
    if isinstance(value, str):
        return Extracted(prompt=value)
    if _is_message(value):
        return _history([value], require_user)
    if isinstance(value, (list, tuple)) and (not scan or _any_message(value)):
        return _history(value, require_user)
    if value is not None and not isinstance(
        value, (bytes, bytearray, memoryview, int, float, bool, list, tuple)
    ):
        found = request_from_fields(
            value,
            REQUEST_KEYS,
            IMAGE_KEYS,
            lambda v, strict, name: request_from_value(
                v, hint=hint, require_user=strict, where=name, scan=scan
            ),
            require_user=require_user,
            where=where,
            scan_rest=scan,
        )
        if found is not None:
            return found
    if scan and value is not None:
        from guardrail.integrations.content import scan as scan_value

        images = scan_value(value, where)
        if images:
            return Extracted(images=tuple(images))
        if isinstance(value, (list, tuple)):  # no images: read as chat messages (says what is wrong)
            return _history(value, require_user)
    raise ConfigurationError(
        f"cannot tell what to check in {where} (a value of type {type(value).__name__}; "
        f"expected a string, chat messages, or an object with {'/'.join(REQUEST_KEYS)}); {hint}"
    )


def _history(messages: Any, require_user: bool) -> Extracted:
    """An app's chat history as a conversation (:func:`guardrail.integrations.history.history_request`);
    a list of plain strings is not a history: every string is checked (joined)."""
    if isinstance(messages, (list, tuple)) and messages and all(isinstance(m, str) for m in messages):
        return request_from_messages(messages, require_user=require_user)
    from guardrail.integrations.history import history_request

    return history_request(messages, require_user=require_user)


def _any_message(value: Sequence[Any]) -> bool:
    """Whether a list reads as chat messages: it holds strings, ``(role, content)`` pairs or
    messages (anything else in it is then refused by :func:`request_from_messages`)."""
    return any(
        isinstance(m, str)
        or _is_message(m)
        or (isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str))
        for m in value
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


#: The fix named when a handler's return value has no response text the rules find.
OUTPUT_HINT = 'pass extract={"output": lambda result: <its text>} to say where the response text is'


def response_text(value: Any, *, hint: str = OUTPUT_HINT, _depth: int = 0) -> str | None:
    """The text of a response, a streamed chunk, or ``None`` when there is nothing to check.

    A string; a chat completion or chunk (``choices``); a message (a ``content`` key or
    attribute); else a mapping or object (a pydantic model, a dataclass) with any of the response
    fields of :data:`~guardrail.integrations.fields.RESPONSE_FIELDS` (``answer``, ``text``,
    ``output``...): every one that is set is checked, texts joined by blank lines."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if isinstance(value.get("choices"), Sequence):
            return _choices_text(value["choices"])
        if "content" in value:
            return content_text(value["content"])
        if any(key in value for key in RESPONSE_FIELDS) and _depth < 3:
            return _fields_text([value.get(key) for key in RESPONSE_FIELDS], hint, _depth)
    elif not isinstance(value, (bytes, bytearray, Sequence)):
        choices = getattr(value, "choices", None)
        if isinstance(choices, Sequence) and not isinstance(choices, str):
            return _choices_text(choices)
        if hasattr(value, "content"):
            return content_text(value.content)
        present = [getattr(value, key, None) for key in RESPONSE_FIELDS if hasattr(value, key)]
        if present and _depth < 3:
            return _fields_text(present, hint, _depth)
    raise ConfigurationError(
        f"cannot find the response text in a value of type {type(value).__name__} "
        f"(expected a string, a chat completion, a message with content, or an object with "
        f"{'/'.join(RESPONSE_FIELDS)}); {hint}"
    )


def _fields_text(values: Sequence[Any], hint: str, depth: int) -> str | None:
    texts = []
    for v in values:
        if v is None or callable(v):
            continue
        if isinstance(v, (str, Mapping)) or not isinstance(v, (bytes, bytearray, Sequence, int, float)):
            text = response_text(v, hint=hint, _depth=depth + 1)
            if text:
                texts.append(text)
        elif isinstance(v, Sequence) and not isinstance(v, (bytes, bytearray)):
            texts.append(content_text(v))  # content parts
    return "\n\n".join(t for t in texts if t) or None
