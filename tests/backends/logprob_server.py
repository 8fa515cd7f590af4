"""A scripted OpenAI-compatible server that answers with prompt log-probabilities in vLLM's formats.

FORMAT AND FAULT TESTS ONLY: this is not a model. It is a real HTTP server (uvicorn on
127.0.0.1) that renders the request the way a chat template would (the messages' text, then the
final assistant message left open, as ``continue_final_message`` does), splits it into word-like
"tokens", and gives each token a log-probability the test chose. It answers in the two formats
the remote backend reads:

- chat completions: vLLM's top-level ``prompt_logprobs`` (``[null, {"<id>": {"logprob", "rank",
  "decoded_token"}}, ...]``, one entry per prompt token);
- completions with ``echo``: OpenAI's legacy ``choices[0].logprobs`` (``tokens``,
  ``token_logprobs``, ``text_offset``), prompt tokens followed by the generated one.

Label log-probabilities depend on their position in the assistant's answer: the first label
(``Request:``) takes ``first[token]``; a later label takes ``after[(first label, token)]``, so
the joint request/response scores are not independent and the test checks the marginals.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

TOKEN = re.compile(r"\n|\s?[A-Za-z]+|\s?\d+|\s?[^\sA-Za-z\d]+|\s+")
LABELS = (" harmful", " unharmful", " refusal", " compliance")


@dataclass
class LogprobScript:
    first: dict[str, float] = field(default_factory=lambda: {" harmful": -0.3, " unharmful": -1.5})
    after: dict[tuple[str, str], float] = field(default_factory=dict)
    other: float = -0.05
    # "vllm": answer with log-probabilities; "none": a server that ignores the logprob options;
    # "garbled": the tokens do not spell the prompt's end.
    mode: str = "vllm"
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _render(body: dict[str, Any]) -> tuple[str, str]:
    """(prompt text, the open assistant answer) as a template with continue_final_message would."""
    parts = []
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, list):
            content = "".join(p.get("text", "<image>") for p in content)
        parts.append(f"<{message['role']}>{content}")
    return "".join(parts), body["messages"][-1]["content"]


def _logprobs(script: LogprobScript, prompt: str, answer: str) -> tuple[list[str], list[float | None]]:
    tokens = TOKEN.findall(prompt)
    assert "".join(tokens) == prompt
    answer_start = len(prompt) - len(answer)
    values: list[float | None] = []
    seen_labels: list[str] = []
    pos = 0
    for i, tok in enumerate(tokens):
        in_answer = pos >= answer_start
        pos += len(tok)
        if i == 0:
            values.append(None)
        elif in_answer and tok in LABELS:
            if not seen_labels:
                values.append(script.first.get(tok, script.other))
            else:
                values.append(script.after.get((seen_labels[0], tok), script.other))
            seen_labels.append(tok)
        else:
            values.append(script.other)
    return tokens, values


def create_app(script: LogprobScript) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        with script.lock:
            script.requests.append(body)
        prompt, answer = _render(body)
        tokens, values = _logprobs(script, prompt, answer)
        if script.mode == "garbled":
            tokens[-1] = tokens[-1] + "x"
        data: dict[str, Any] = {
            "id": "x", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "\n"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": len(tokens), "completion_tokens": 1, "total_tokens": len(tokens) + 1},
        }  # fmt: skip
        if script.mode != "none" and body.get("prompt_logprobs") is not None:
            data["prompt_logprobs"] = [
                None if v is None else {str(1000 + i): {"logprob": v, "rank": 1, "decoded_token": t}}
                for i, (t, v) in enumerate(zip(tokens, values, strict=True))
            ]
        return JSONResponse(data)

    @app.post("/v1/completions")
    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        with script.lock:
            script.requests.append(body)
        prompt = body["prompt"]
        # the answer starts after the forced prefix's "Answers:" heading
        answer = prompt[prompt.rindex("Answers:") :]
        tokens, values = _logprobs(script, prompt, answer)
        choice: dict[str, Any] = {"index": 0, "text": prompt + " X" if body.get("echo") else " X",
                                  "finish_reason": "length"}  # fmt: skip
        if script.mode != "none" and body.get("echo") and body.get("logprobs") is not None:
            offsets, at = [], 0
            for t in tokens:
                offsets.append(at)
                at += len(t)
            choice["logprobs"] = {
                "tokens": [*tokens, " X"],
                "token_logprobs": [*values, -0.7],
                "text_offset": [*offsets, at],
                "top_logprobs": [
                    None,
                    *({t: v} for t, v in zip(tokens[1:], values[1:], strict=True)),
                    {" X": -0.7},
                ],
            }
        return JSONResponse({"id": "x", "object": "text_completion", "model": body.get("model"), "choices": [choice],
                             "usage": {"prompt_tokens": len(tokens), "completion_tokens": 1}})  # fmt: skip

    return app
