"""Part 2 of the main job, the channels: every way the guard plugs into an app, each moderating
the sample traffic (``@guard.check``, LangChain, llama.cpp on the GGUF export, the moderation
server called with the OpenAI client)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from demo_common import Console
from demo_traffic import (
    DEFAULT_REPLY,
    REFUSAL,
    CheckLog,
    Row,
    StandInLLM,
    Traffic,
    row_from_checks,
    row_from_verdict,
)

from guardrail import Guard, Verdict


def channel_decorator(guard: Guard, traffic: list[Traffic]) -> list[Row]:
    """An app handler guarded by ``@guard.check``: the request is checked before the handler
    runs, the reply with the request after it; a blocked one is replaced by a refusal."""
    llm = StandInLLM()

    @guard.check(message=REFUSAL)
    def chat(messages: list[dict[str, Any]]) -> str:
        """The app's chat endpoint (OpenAI-style messages, images as data URLs)."""
        return llm(messages)

    log = guard.add_observer(CheckLog())  # every verdict of the decorator's checks, with its stage
    rows = []
    try:
        for t in traffic:
            llm.reply = t.response or DEFAULT_REPLY
            log.checks.clear()
            answer = chat(t.openai_messages())
            row = row_from_checks("@guard.check", t, list(log.checks))
            row.reply = answer
            rows.append(row)
    finally:
        guard.remove_observer(log)
    return rows


def channel_langchain(guard: Guard, traffic: list[Traffic]) -> list[Row]:
    """A LangChain chain: prompt | guard.wrap(chat model) | parser. The guard's checks are read
    from the chain's callbacks (the ``guardrail_verdict`` event), as an app's tracing would."""
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

    class Verdicts(BaseCallbackHandler):
        def __init__(self) -> None:
            self.checks: list[tuple[str, Verdict]] = []

        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            if name == "guardrail_verdict":
                self.checks.append((data["stage"], Verdict.model_validate(data["verdict"])))

    prompt = ChatPromptTemplate.from_messages(
        [("system", "You answer briefly and kindly."), MessagesPlaceholder("messages")]
    )
    rows = []
    for t in traffic:
        llm = GenericFakeChatModel(messages=iter([AIMessage(t.response or DEFAULT_REPLY)]))
        chain = prompt | guard.wrap(llm, fallback=AIMessage(REFUSAL)) | StrOutputParser()
        content: list[Any] = [{"type": "image", "base64": u.split(",", 1)[1], "mime_type": "image/png"}
                              for u in t.data_urls()]  # fmt: skip
        if t.prompt:
            content.append({"type": "text", "text": t.prompt})
        handler = Verdicts()
        answer = chain.invoke({"messages": [HumanMessage(content=content)]}, {"callbacks": [handler]})
        row = row_from_checks("LangChain", t, handler.checks)
        row.reply = answer
        rows.append(row)
    return rows


def channel_llamacpp(guard: Guard, traffic: list[Traffic]) -> list[Row]:
    """The llama.cpp backend on the exported GGUF: one check of each request (and response)."""
    rows = []
    for t in traffic:
        verdict = guard.moderate(
            prompt=t.prompt, response=t.response, images=[str(p) for p in t.images] or None
        )
        rows.append(row_from_verdict("llama.cpp", t, verdict))
    return rows


def channel_server(guard: Guard, traffic: list[Traffic]) -> list[Row]:
    """The moderation server on 127.0.0.1, called with the OpenAI client: ``/v1/moderations``
    for requests, the native ``/v1/guard`` for prompt+response (OpenAI's API has no response)."""
    from openai import OpenAI

    from guardrail.server import ServerSettings, create_app
    from guardrail.server.schemas import REQUEST_HARMFUL
    from guardrail.testing import serve_app

    key = secrets.token_urlsafe(16)
    rows = []
    with serve_app(create_app(guard, ServerSettings(api_key=key))) as base_url:
        client = OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=600)
        for t in traffic:
            openai: list[str] | None = None
            if t.response is not None:
                body = {"prompt": t.prompt, "response": t.response, "images": t.data_urls() or None}
                verdict: dict[str, Any] = client.post("/guard", body=body, cast_to=object)  # type: ignore[arg-type]
            else:
                parts: Any = [{"type": "image_url", "image_url": {"url": u}} for u in t.data_urls()]
                if t.prompt:
                    parts.append({"type": "text", "text": t.prompt})
                result = client.moderations.create(model="guard", input=parts if t.images else t.prompt)
                data = result.results[0].model_dump()
                verdict = data["guardrail"]  # the native codes; OpenAI's keys through the policy's maps_to
                openai = [k for k, on in data["categories"].items() if on and k != REQUEST_HARMFUL]
            rows.append(row_from_verdict("server + OpenAI client", t, verdict, openai))
    return rows


CHANNELS: dict[str, Callable[[Guard, list[Traffic]], list[Row]]] = {
    "@guard.check": channel_decorator,
    "LangChain": channel_langchain,
    "llama.cpp": channel_llamacpp,
    "server + OpenAI client": channel_server,
}


def run_channels(console: Console, guard: Guard, gguf_guard: Guard | None, gguf_note: str | None,
                 traffic: list[Traffic]) -> tuple[list[Row], list[str]]:  # fmt: skip
    rows: list[Row] = []
    problems: list[str] = []
    for name, run in CHANNELS.items():
        target = gguf_guard if name == "llama.cpp" else guard
        if target is None:
            console.step(f"{name}: skipped - {gguf_note}")
            rows.extend(Row(name, t.name, t.kind, verdict="skipped", error=gguf_note) for t in traffic)
            continue
        t0 = time.perf_counter()
        try:
            got = run(target, traffic)
        except Exception as exc:  # noqa: BLE001 - a broken channel is reported, the others still run
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            console.step(f"{name}: FAILED - {type(exc).__name__}: {exc}")
            rows.extend(Row(name, t.name, t.kind, error=str(exc)) for t in traffic)
            continue
        problems.extend(f"{name} / {r.sample}: {r.error}" for r in got if r.error)
        console.step(f"{name}: {len(got)} requests in {time.perf_counter() - t0:.1f}s")
        rows.extend(got)
    return rows, problems
