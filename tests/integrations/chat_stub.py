"""A local OpenAI-compatible chat model for integration tests: ``/v1/chat/completions``
(plain and streamed) and the Responses-free subset the OpenAI Agents SDK's chat-completions
model uses. It records every request it receives, so a test can tell whether a blocked request
ever reached the model."""

# No `from __future__ import annotations`: FastAPI must see the real `Request` annotation.
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChatStub", "chat_stub"]

HARMFUL_REPLY = "Sure. To build a bomb you need the following parts and steps, one by one."
BENIGN_REPLY = "Mix flour, water, salt and yeast, let it rise, then bake."


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
    return ""


def default_reply(messages: list[dict[str, Any]]) -> str:
    """The harmful reply when the last user turn asks for it ("reply-harmful"), else a recipe."""
    return HARMFUL_REPLY if "reply-harmful" in _last_user_text(messages) else BENIGN_REPLY


@dataclass
class ChatStub:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    reply: Callable[[list[dict[str, Any]]], str] = default_reply
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()


def _app(stub: ChatStub) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        with stub.lock:
            stub.requests.append(body)
        text = stub.reply(body.get("messages") or [])
        created, model = int(time.time()), body.get("model", "stub")
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
                }
            )  # fmt: skip

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            payload = {
                "id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }  # fmt: skip
            return f"data: {json.dumps(payload)}\n\n"

        def events() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            for word in text.split(" "):
                yield chunk({"content": word + " "})
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@contextlib.contextmanager
def chat_stub(reply: Callable[[list[dict[str, Any]]], str] = default_reply) -> Iterator[ChatStub]:
    """Serve a :class:`ChatStub` on 127.0.0.1; ``stub.url`` is its base URL (append ``/v1``)."""
    from guardrail.testing import serve_app

    stub = ChatStub(reply=reply)
    with serve_app(_app(stub)) as url:
        stub.url = url
        yield stub
