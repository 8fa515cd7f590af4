"""LiteLLM's Generic Guardrail API: ``POST /beta/litellm_basic_guardrail_api``.

The LiteLLM proxy calls a guardrail provider with one request shape and reads one of three
answers (the contract of ``litellm[proxy]`` 1.108's ``generic_guardrail_api`` guardrail; see
docs/integrations/litellm.md for the proxy configuration):

- request: ``input_type`` (``"request"`` before/while the model runs, ``"response"`` after it),
  ``texts`` (every text LiteLLM extracted: for a chat request, the text of *every* message,
  system and assistant turns included), ``images`` (the ``image_url`` strings of the messages),
  ``structured_messages`` (the chat messages with their roles, for requests), ``tools``,
  ``tool_calls``, ``model``, ``litellm_call_id``, ``litellm_trace_id``, ``request_data`` (the
  caller's key metadata), ``request_headers``, ``additional_provider_specific_params``.
- answers: ``{"action": "NONE"}`` lets it through; ``{"action": "BLOCKED", "blocked_reason":
  ...}`` blocks it (the proxy's client gets an error carrying the reason); ``{"action":
  "GUARDRAIL_INTERVENED", "texts": [...]}`` rewrites the texts.

What the guard checks:

- ``input_type="request"``: the user's request is the text of **every user turn** of
  ``structured_messages`` (joined by blank lines), with every image LiteLLM sent. Every user
  turn, not the latest one only: the proxy's client writes the whole history, so an earlier
  "user" turn may never have been checked (the same rule as the rest of the library, see
  :func:`guardrail.integrations.extract.request_from_messages`). System, developer, assistant
  and tool turns are context the guard does not judge as the request. Without
  ``structured_messages`` (endpoints whose texts carry no roles), every text is the request.
- ``input_type="response"``: the texts are the model's reply (choices joined by blank lines),
  checked with its images. LiteLLM does not send the request with the response, so the
  response is judged on its own (the guard's prompt is empty).

Which verdicts block is :func:`guardrail.integrations.policy.blocks` (``"input"`` for requests,
``"output"`` for responses). The answer is ``NONE`` or ``BLOCKED``; ``GUARDRAIL_INTERVENED`` is
never sent, because LiteLLM drops text rewrites on its streaming path (``streaming_transform_mode:
block_only``, its default) and replays the original chunks: a "replace the harmful reply"
answer would let the reply through on streams.

Failures, chosen so that LiteLLM's fail-open settings (``fail_on_error: false``,
``unreachable_fallback: fail_open``) can never turn *content* into a pass:

- content the guard cannot check (an image refused or over a limit, a part type it cannot read,
  text over the limit, a body over ``max_body_bytes`` or not received in time, a body it cannot
  parse) is answered ``BLOCKED`` with a fixed reason, never with an HTTP error;
- the guard's own failures follow its ``on_error`` / ``on_parse_error`` policy (default: a
  ``BLOCKED`` answer); with ``on_error="raise"`` they are 502/504, and an overloaded server is
  503: LiteLLM then applies its ``unreachable_fallback`` (``fail_closed`` by default);
- a wrong or missing key is 401. LiteLLM sends its ``api_key`` as ``x-api-key``, which this
  route accepts next to ``Authorization: Bearer``.
"""

# No `from __future__ import annotations`: FastAPI reads the route's `Request` annotation,
# imported inside add_litellm_route (fastapi stays out of `import guardrail`).
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from guardrail.errors import InputError
from guardrail.integrations.extract import USER_ROLES, split_content
from guardrail.integrations.policy import blocks
from guardrail.verdict import Verdict

__all__ = [
    "LITELLM_PATH",
    "LiteLLMGuardrailRequest",
    "LiteLLMGuardrailResponse",
    "add_litellm_route",
    "blocked_answer",
    "litellm_item",
    "verdict_answer",
]

#: The path LiteLLM appends to the guardrail's ``api_base``.
LITELLM_PATH = "/beta/litellm_basic_guardrail_api"
#: Every reason starts with this, so a client can tell the guard's block from other errors.
REASON_PREFIX = "Blocked by guardrail"


class LiteLLMGuardrailRequest(BaseModel):
    """The body LiteLLM posts (fields the guard does not use are accepted and ignored)."""

    model_config = ConfigDict(extra="ignore")
    input_type: Literal["request", "response"]
    texts: list[str] | None = None
    images: list[str] | None = None
    structured_messages: list[dict[str, Any]] | None = None
    tools: list[Any] | None = None
    tool_calls: list[Any] | None = None
    model: str | None = None
    litellm_call_id: str | None = None
    litellm_trace_id: str | None = None
    litellm_version: str | None = None
    request_data: dict[str, Any] | None = None
    request_headers: dict[str, Any] | None = None
    additional_provider_specific_params: dict[str, Any] | None = None


class LiteLLMGuardrailResponse(BaseModel):
    """The answer LiteLLM reads: ``NONE`` (allow) or ``BLOCKED`` with the reason."""

    action: Literal["NONE", "BLOCKED", "GUARDRAIL_INTERVENED"]
    blocked_reason: str | None = None
    texts: list[str] | None = None


def blocked_answer(why: str) -> dict[str, Any]:
    """The ``BLOCKED`` answer for content the guard could not check."""
    return {"action": "BLOCKED", "blocked_reason": f"{REASON_PREFIX}: {why}"}


def _policy_reason(error: str | None) -> str:
    """Why a failure policy decided, as a fixed text (never the backend's own message)."""
    text = error or ""
    if text.startswith("backend error"):
        why = "the guard backend failed"
    elif "timed out" in text:
        why = "the guard timed out"
    elif text.startswith("unparsable"):
        why = "the guard's output could not be read"
    else:
        why = "the guard could not decide"
    return f"{why} (failure policy)"


def verdict_answer(verdict: Verdict, input_type: str) -> dict[str, Any]:
    """The answer for ``verdict`` at ``input_type`` (``"request"`` or ``"response"``)."""
    stage = "input" if input_type == "request" else "output"
    if not blocks(verdict, stage):
        return {"action": "NONE"}
    if verdict.decided_by == "policy":
        why = _policy_reason(verdict.error)
    elif stage == "input":
        why = "the request was judged harmful"
    else:
        why = "the model's response was judged harmful"
    return blocked_answer(why)


def litellm_item(body: LiteLLMGuardrailRequest) -> dict[str, Any] | None:
    """The guard's item (prompt / response / images) for LiteLLM's request, or ``None`` when
    it holds nothing to check. Raises :class:`~guardrail.errors.InputError` for content the
    guard cannot read (the route answers ``BLOCKED``)."""
    images: list[Any] = list(body.images or [])
    texts = [t for t in (body.texts or []) if t]
    if body.input_type == "response":
        response = "\n\n".join(texts)
        if not response and not images:
            return None
        return {"prompt": None, "response": response, "images": images or None}
    prompt: str | None = "\n\n".join(texts) or None
    if body.structured_messages is not None:
        users = [m for m in body.structured_messages if str(m.get("role") or "").lower() in USER_ROLES]
        if users:
            parts = []
            for i, message in enumerate(users):
                text, found = split_content(message.get("content"), where=f"user message {i}")
                if text:
                    parts.append(text)
                images.extend(img for img in found if img not in images)
            prompt = "\n\n".join(parts) or None
    if prompt is None and not images:
        return None
    return {"prompt": prompt, "images": images or None}


def _read(raw: bytes) -> LiteLLMGuardrailRequest:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise InputError("the request body is not valid JSON") from None
    try:
        return LiteLLMGuardrailRequest.model_validate(data)
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())) or 'body'}: {e.get('msg')}"
            for e in exc.errors(include_url=False, include_context=False, include_input=False)[:3]
        )
        raise InputError(f"the request body is not LiteLLM's guardrail request ({where})") from None


def add_litellm_route(
    app: Any,
    *,
    run_guard: Callable[[list[dict[str, Any]]], Awaitable[list[Verdict]]],
    max_images: int,
) -> None:
    """Register ``POST /beta/litellm_basic_guardrail_api`` on the server's ``app``;
    ``run_guard`` is the server's guard call (image loading, pixel budget, admission,
    timeout, failure policy)."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    async def litellm_guardrail(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            body = await asyncio.to_thread(_read, raw)
            if body.images and len(body.images) > max_images:
                raise InputError(f"{len(body.images)} images given; the limit is {max_images}")
            item = await asyncio.to_thread(litellm_item, body)
            if item is None:
                return JSONResponse({"action": "NONE"})
            verdict = (await run_guard([item]))[0]
        except InputError as exc:
            return JSONResponse(blocked_answer(f"the content cannot be checked: {exc}"))
        return JSONResponse(verdict_answer(verdict, body.input_type))

    app.add_api_route(
        LITELLM_PATH,
        litellm_guardrail,
        methods=["POST"],
        response_model=LiteLLMGuardrailResponse,
        summary="LiteLLM Generic Guardrail API",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/LiteLLMGuardrailRequest"}}
                },
            }
        },
    )
