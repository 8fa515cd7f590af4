"""A scripted OpenAI-compatible chat-completions server for fault tests of the remote backend.

It is a real HTTP server (uvicorn on 127.0.0.1) whose answers the test controls: normal
answers, errors, slow or trickled answers, malformed bodies. Fidelity against a real engine is
tested separately against llama-cpp-python's own server.

Run alone: ``python -m tests.backends.chat_server --port 8765`` (used to kill a server mid-run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

GOOD = "<think>\nfine\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"
BAD = "<think>\nbad\n</think>\n<result>\nRequest: harmful\nResponse: None\n</result>"


@dataclass
class Script:
    """What the server does. ``plan`` is consumed one entry per request; when empty, ``default``."""

    plan: list[str] = field(default_factory=list)
    default: str = "ok"
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> str:
        with self.lock:
            return self.plan.pop(0) if self.plan else self.default


def completion(text: str, chat: bool = True) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {
        "id": "x",
        "object": "chat.completion" if chat else "text_completion",
        "choices": [choice],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 20},
    }


def create_app(script: Script) -> FastAPI:
    app = FastAPI()

    async def handle(request: Request, chat: bool) -> Response:
        body = await request.json()
        with script.lock:
            script.requests.append(body)
            script.headers.append(dict(request.headers))
            script.in_flight += 1
            script.max_in_flight = max(script.max_in_flight, script.in_flight)
        try:
            action = script.next()
            if script.delay_s:
                await asyncio.sleep(script.delay_s)
            if body.get("model") not in (None, "tiny-guard"):
                return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found"}}, 404)
            if action == "ok":
                text = BAD if "bad" in json.dumps(body) else GOOD
                return JSONResponse(completion(text, chat))
            if action.startswith("status:"):
                _, code, *retry = action.split(":")
                headers = {"Retry-After": retry[0]} if retry else None
                return JSONResponse({"error": {"message": f"scripted {code}"}}, int(code), headers=headers)
            if action == "malformed":
                return Response(b'{"choices": [', media_type="application/json")
            if action == "wrong-shape":
                return JSONResponse({"choices": []})
            if action.startswith("sleep:"):
                await asyncio.sleep(float(action.split(":")[1]))
                return JSONResponse(completion(GOOD, chat))
            if action.startswith("trickle:"):
                seconds = float(action.split(":")[1])

                async def dribble():
                    for _ in range(int(seconds * 10)):
                        yield b" "
                        await asyncio.sleep(0.1)
                    yield json.dumps(completion(GOOD, chat)).encode()

                return StreamingResponse(dribble(), media_type="application/json")
            raise AssertionError(f"unknown action {action}")
        finally:
            with script.lock:
                script.in_flight -= 1

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await handle(request, True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await handle(request, False)

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    uvicorn.run(create_app(Script(delay_s=args.delay)), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
