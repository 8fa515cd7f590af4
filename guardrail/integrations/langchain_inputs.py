"""Which parts of a LangChain runnable's input are the user's request, and what of its output is
the response (used by
:mod:`guardrail.integrations.langchain`; needs langchain-core).

A runnable receives its whole input, so every part of it that can carry user content is
checked: all the request keys of a dict (not the first found), a chat as a conversation (its
last human or tool turn judged with the turn before as context:
:mod:`guardrail.integrations.history`), the images of every image key, and images anywhere in the other keys
(``{"question": ..., "picture": <image>}``; :mod:`guardrail.integrations.content`) unless
``key=``/``image_key=`` name the fields exactly. The key names are the shared vocabulary of
:mod:`guardrail.integrations.fields`. See
:func:`guardrail.integrations.extract.request_from_fields`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, BaseMessageChunk
from langchain_core.prompt_values import ImagePromptValue, PromptValue

from guardrail.errors import ConfigurationError, InputError
from guardrail.integrations.content import materialize
from guardrail.integrations.content import scan as scan_value
from guardrail.integrations.extract import (
    Extracted,
    request_from_fields,
    request_from_value,
    response_text,
)
from guardrail.integrations.fields import IMAGE_FIELDS, REQUEST_FIELDS
from guardrail.integrations.history import history_request

__all__ = ["IMAGE_KEYS", "INPUT_KEYS", "key_names", "langchain_request", "langchain_response", "read_files"]

#: Keys of a dict input that hold the request: all of those present are checked, in this order.
INPUT_KEYS = REQUEST_FIELDS
#: Keys of a dict input that hold images: all of those present are checked.
IMAGE_KEYS = IMAGE_FIELDS
HINT = "pass key= (and image_key=) to guard.wrap/as_runnable to say where it is"


def langchain_request(
    value: Any,
    keys: Sequence[str] = INPUT_KEYS,
    image_keys: Sequence[str] = IMAGE_KEYS,
    *,
    require_user: bool = True,
    scan: bool = True,
    where: str = "input",
) -> Extracted:
    """The request held by one input (raises ConfigurationError/InputError). With ``scan``, keys
    other than ``keys``/``image_keys`` are searched for images (off when the app names them)."""
    if isinstance(value, ImagePromptValue):  # its message holds a bare {"url": ...} part
        url = (value.image_url or {}).get("url")
        if not isinstance(url, str) or not url:
            raise InputError("the ImagePromptValue has no image URL")
        return Extracted(images=(url,))
    if isinstance(value, PromptValue):
        return history_request(value.to_messages(), require_user=require_user)
    if isinstance(value, BaseMessage):
        return history_request([value], require_user=require_user)
    if isinstance(value, Mapping):
        found = request_from_fields(
            value,
            keys,
            image_keys,
            lambda v, strict, name: langchain_request(
                v, keys, image_keys, require_user=strict, scan=scan, where=name
            ),
            message=value if _looks_like_message(value) else None,
            require_user=require_user,
            where=where,
            scan_rest=scan,
        )
        if found is None:
            images = tuple(scan_value(value, where)) if scan else ()
            if images:
                return Extracted(images=images)
            raise ConfigurationError(
                f"cannot find the request in a dict with keys {sorted(map(str, value))}; {HINT}"
            )
        return found
    return request_from_value(value, hint=HINT, require_user=require_user, where=where, scan=scan)


def read_files(request: Extracted, limits: Any) -> Extracted:
    """``request`` with the file objects and uploads among its images read (images as bytes;
    anything else raises UncheckableContentError)."""
    if not request.images:
        return request
    return dataclasses.replace(request, images=materialize(request.images, limits))


def key_names(option: str, value: Any) -> tuple[str, ...]:
    """``key=``/``image_key=`` as a tuple of names (empty for ``None``)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigurationError(f"{option} must be a key name or a list of key names; got {value!r}")


def _looks_like_message(value: Mapping[str, Any]) -> bool:
    return "content" in value and isinstance(value.get("role") or value.get("type"), str)


def langchain_response(value: Any, output_key: str | None = None, *, structured: bool = False) -> str | None:
    """The text of one output (or streamed chunk) of a guarded runnable; None when there is
    nothing to check. A message's tool calls are part of it (``[tool call] name(arguments)``;
    a streamed chunk's call fragments as they come); a structured output is read as JSON."""
    if structured:
        return _as_json(value)
    if output_key is not None and isinstance(value, Mapping):
        value = value.get(output_key)
    text = response_text(value, hint="pass output_key= to guard.wrap to say where it is")
    if isinstance(value, BaseMessageChunk):
        calls = [
            f"{c.get('name') or ''}{c.get('args') or ''}" for c in getattr(value, "tool_call_chunks", ())
        ]
    elif isinstance(value, BaseMessage):
        from guardrail.conversation import _tool_call_text

        calls = [_tool_call_text(c) for c in getattr(value, "tool_calls", None) or ()]
    else:
        calls = []
    return "\n".join([*([text] if text else []), *calls]) if calls else text


def _as_json(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return response_text(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        value = dump(mode="json")
    return json.dumps(value, ensure_ascii=False, default=str)
