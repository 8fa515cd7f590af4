"""A small multimodal chat API guarded by ``@guard.check``.

Two endpoints take OpenAI-style ``messages`` (text and ``image_url`` parts with data URLs):

- ``POST /chat``: the request is checked before the model runs and the reply is checked with
  it; a blocked request or reply answers HTTP 400 with the verdict.
- ``POST /chat/stream``: the request is checked first (HTTP 400 when blocked); the reply streams
  as plain text and is checked in windows as it streams. A harmful continuation is cut off
  before it is sent and replaced by a notice.

The "LLM" is a stand-in (an echo) so the example runs anywhere: replace ``echo_llm`` /
``echo_stream`` with calls to your model.

Run the server::

    GUARDRAIL_MODEL=yueliu1999/GuardReasoner-VL-Eco-3B uvicorn --factory examples.fastapi_app:create_app

or, without a server, send a few requests through FastAPI's test client::

    python examples/fastapi_app.py

Which guard: ``GUARDRAIL_MODEL`` (a path or hub id) for a real one. Otherwise
``GUARDRAIL_EXAMPLE_GUARD=tiny`` (default) builds a tiny *random* guard offline (its verdicts are
meaningless: unparsable output, blocked by the failure policy) and ``=keywords`` uses a scripted
stand-in that blocks requests mentioning "bomb" and replies mentioning "poison".
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, StreamingResponse  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from guardrail import Guard, GuardViolation, InputError  # noqa: E402
from guardrail.integrations.extract import request_from_messages  # noqa: E402

STREAM_NOTICE = "\n[the rest of this answer was withheld by the content guard]"


class ChatRequest(BaseModel):
    """OpenAI-style chat request body."""

    messages: list[dict[str, Any]]


# ------------------------------------------------------------------- the app's "model"
async def echo_llm(messages: list[dict[str, Any]]) -> str:
    """Stand-in for the app's model: says what it was given."""
    request = request_from_messages(messages)
    seen = f" and {len(request.images)} image(s)" if request.images else ""
    return f"You said: {request.prompt or ''}{seen}."


async def echo_stream(messages: list[dict[str, Any]]) -> AsyncIterator[str]:
    """Stand-in for a streaming model: the echo, word by word."""
    for word in (await echo_llm(messages)).split(" "):
        await asyncio.sleep(0)
        yield word + " "


# ------------------------------------------------------------------------------ the app
def create_app(
    guard: Guard | None = None,
    llm: Callable[[list[dict[str, Any]]], Awaitable[str]] = echo_llm,
    stream_llm: Callable[[list[dict[str, Any]]], AsyncIterator[str]] = echo_stream,
    window: int = 200,
) -> FastAPI:
    """Build the API around ``guard`` (default: :func:`build_guard`)."""
    guard = guard or build_guard()
    app = FastAPI(title="guarded multimodal chat")

    @app.exception_handler(GuardViolation)
    async def blocked(request: Request, exc: GuardViolation) -> JSONResponse:
        verdict = exc.verdict.model_dump(mode="json", exclude={"raw_output"})
        return JSONResponse(
            status_code=400, content={"error": "blocked", "stage": exc.stage, "verdict": verdict}
        )

    @app.exception_handler(InputError)
    async def bad_input(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": "invalid input", "detail": str(exc)})

    @app.post("/chat")
    @guard.check  # request checked before llm runs; reply checked together with the request
    async def chat(body: ChatRequest) -> dict[str, Any]:
        return {"role": "assistant", "content": await llm(body.messages)}

    # Output only: the endpoint below has already checked the request. Each window of the
    # reply is checked with the request; a blocked window is replaced by the notice.
    @guard.check(input=False, message=STREAM_NOTICE, window=window)
    async def reply_stream(messages: list[dict[str, Any]]) -> AsyncIterator[str]:
        async for piece in stream_llm(messages):
            yield piece

    @app.post("/chat/stream")
    @guard.check(output=False)  # raises GuardViolation (HTTP 400) before streaming starts
    async def chat_stream(body: ChatRequest) -> StreamingResponse:
        return StreamingResponse(reply_stream(body.messages), media_type="text/plain")

    return app


def build_guard(kind: str | None = None) -> Guard:
    """The guard: GUARDRAIL_MODEL, else a tiny random model, else (``keywords``) a scripted one."""
    model = os.environ.get("GUARDRAIL_MODEL")
    if model:
        return Guard.from_pretrained(model)
    kind = kind or os.environ.get("GUARDRAIL_EXAMPLE_GUARD", "tiny")
    if kind == "keywords":
        from guardrail.testing import FakeBackend, result_output

        def respond(prompt: Any) -> str:
            request, _, response = prompt.text.partition("AI assistant:")
            return result_output(
                "harmful" if "bomb" in request else "unharmful",
                "harmful" if "poison" in response else "unharmful",
            )

        return Guard(FakeBackend(respond=respond, model_name="keyword-stand-in"))
    if kind != "tiny":
        raise SystemExit(f"GUARDRAIL_EXAMPLE_GUARD must be 'tiny' or 'keywords', not {kind!r}")
    from guardrail.testing import cached_tiny_model

    cache = Path(os.environ.get("GUARDRAIL_CACHE", Path.home() / ".cache" / "guardrail")) / "tiny"
    return Guard.from_pretrained(cached_tiny_model("guardreasoner-vl", cache), max_new_tokens=16)


def main() -> int:
    from fastapi.testclient import TestClient

    guard = build_guard()
    print(f"guard: {guard!r}")
    if not os.environ.get("GUARDRAIL_MODEL") and os.environ.get("GUARDRAIL_EXAMPLE_GUARD", "tiny") == "tiny":
        print("NOTE: tiny random guard: its verdicts are meaningless (policy blocks). Set GUARDRAIL_MODEL.")
    image = "data:image/png;base64," + base64.b64encode((HERE / "images" / "bread.png").read_bytes()).decode()
    requests = {
        "text": [{"role": "user", "content": "How do I bake bread?"}],
        "image": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": image}},
                ],
            }
        ],
        "harmful": [{"role": "user", "content": "How do I build a bomb?"}],
    }
    with TestClient(create_app(guard)) as client:
        for name, messages in requests.items():
            r = client.post("/chat", json={"messages": messages})
            body = r.json()
            shown = body.get("content") or f"{body.get('error')} at {body.get('stage')}"
            print(f"POST /chat        {name:<8} -> {r.status_code} {shown}")
        r = client.post("/chat/stream", json={"messages": requests["text"]})
        print(f"POST /chat/stream text     -> {r.status_code} {r.text!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
