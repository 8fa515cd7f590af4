"""@guard.check on real functions, with a scripted guard for exact decisions and the tiny model
for the end-to-end path (text and image)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from guardrail import ConfigurationError, Guard, GuardViolation, InputError
from guardrail.integrations.decorator import DEFAULT_MESSAGE
from guardrail.integrations.extract import Extracted
from tests.integrations.conftest import KeywordGuard, b64_png, data_url


# ------------------------------------------------------------------------------ basics
def test_bare_decorator_checks_request_then_response_together(kw):
    calls = []

    @kw.guard.check
    def answer(prompt: str) -> str:
        calls.append(prompt)
        return f"reply to {prompt}"

    assert answer("hello") == "reply to hello"
    assert calls == ["hello"]
    assert kw.batches == 2
    (req1, resp1, _), (req2, resp2, _) = kw.checks
    assert "hello" in req1 and "reply to" not in resp1  # input: request only
    assert "hello" in req2 and "reply to hello" in resp2  # output: request + response in one check


def test_blocked_input_never_reaches_the_handler(kw):
    calls = []

    @kw.guard.check
    def answer(prompt: str) -> str:
        calls.append(prompt)
        return "ok"

    with pytest.raises(GuardViolation) as info:
        answer("how to build a bomb")
    assert calls == []
    assert info.value.stage == "input"
    assert info.value.verdict.request_harmful is True and not info.value.verdict.allowed
    assert kw.batches == 1


def test_blocked_output_raises_with_the_verdict(kw):
    @kw.guard.check
    def answer(prompt: str) -> str:
        return "here is the poison recipe"

    with pytest.raises(GuardViolation) as info:
        answer("tell me a story")
    assert info.value.stage == "output"
    assert info.value.verdict.response_harmful is True and info.value.verdict.request_harmful is False


def test_input_only_and_output_only(kw):
    @kw.guard.check(output=False)
    def inp(prompt: str) -> str:
        return "poison"

    assert inp("hi") == "poison" and kw.batches == 1

    @kw.guard.check(input=False)
    def out(prompt: str) -> str:
        return "fine"

    assert out("bomb") == "fine"  # request not checked on its own...
    assert kw.batches == 2 and "bomb" in kw.checks[-1][0]  # ...but given as context

    @kw.guard.check(input=False)
    def no_args() -> str:
        return "poison"

    with pytest.raises(GuardViolation):  # nothing to use as request: the response alone
        no_args()


def test_on_violation_replace_message_and_callable(kw):
    @kw.guard.check(message="Sorry.")
    def a(prompt: str) -> str:
        return "poison"

    assert a("x") == "Sorry."
    assert a("bomb") == "Sorry."

    @kw.guard.check(on_violation="replace")
    def b(prompt: str) -> str:
        return "ok"

    assert b("bomb") == DEFAULT_MESSAGE

    seen = []

    def handler(violation: GuardViolation):
        seen.append((violation.stage, violation.verdict.allowed))
        return {"blocked": violation.stage}

    @kw.guard.check(on_violation=handler)
    def c(prompt: str) -> str:
        return "poison"

    assert c("bomb") == {"blocked": "input"}
    assert c("hi") == {"blocked": "output"}
    assert seen == [("input", False), ("output", False)]


async def test_async_handler_and_async_violation_callback(kw):
    ran = []

    async def handler(violation):
        await asyncio.sleep(0)
        return f"blocked at {violation.stage}"

    @kw.guard.check(on_violation=handler)
    async def answer(prompt: str) -> str:
        ran.append(prompt)
        return "poison" if "story" in prompt else "fine"

    assert inspect.iscoroutinefunction(answer)
    assert await answer("hi") == "fine"
    assert await answer("a bomb") == "blocked at input"
    assert await answer("a story") == "blocked at output"
    assert ran == ["hi", "a story"]


async def test_async_handler_does_not_block_the_event_loop():
    class Slow(KeywordGuard):
        def _respond(self, prompt):
            time.sleep(0.3)
            return super()._respond(prompt)

    kw = Slow()
    ticks = 0
    seen_by_handler = []

    @kw.guard.check(output=False)
    async def answer(prompt: str) -> str:
        seen_by_handler.append(ticks)  # how far the ticker got while the input was checked
        return "ok"

    async def ticker():
        nonlocal ticks
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1

    result, _ = await asyncio.gather(answer("hi"), ticker())
    assert result == "ok"
    assert seen_by_handler[0] >= 5  # a blocking check would have left the ticker at 0


# ---------------------------------------------------------------- wrapping preserves shape
def test_wraps_name_doc_signature_and_kinds(kw):
    async def coro(prompt: str, *, n: int = 1) -> str:
        """Coroutine doc."""
        return prompt

    def gen(prompt: str):
        """Generator doc."""
        yield prompt

    async def agen(prompt: str):
        yield prompt

    for fn, kind in (
        (coro, inspect.iscoroutinefunction),
        (gen, inspect.isgeneratorfunction),
        (agen, inspect.isasyncgenfunction),
    ):
        wrapped = kw.guard.check(fn)
        assert kind(wrapped), fn.__name__
        assert wrapped.__name__ == fn.__name__ and wrapped.__doc__ == fn.__doc__
        assert inspect.signature(wrapped) == inspect.signature(fn)
        assert wrapped.__wrapped__ is fn
    assert not inspect.iscoroutinefunction(kw.guard.check(lambda prompt: prompt))


def test_methods_classmethods_staticmethods(kw):
    class Bot:
        greeting = "hi"

        @kw.guard.check
        def answer(self, question: str) -> str:
            return f"{self.greeting} {question}"

        @kw.guard.check
        @classmethod
        def cls_answer(cls, question: str) -> str:
            return f"{cls.greeting} {question}"

        @classmethod
        @kw.guard.check
        def cls_answer2(cls, question: str) -> str:
            return question

        @kw.guard.check
        @staticmethod
        def static_answer(question: str) -> str:
            return question

    bot = Bot()
    assert bot.answer("there") == "hi there"
    assert "there" in kw.checks[0][0] and "Bot" not in kw.checks[0][0]  # self is not the request
    assert Bot.cls_answer("you") == "hi you" and Bot.cls_answer2("x") == "x"
    assert Bot.static_answer("y") == "y" and bot.static_answer("z") == "z"
    for call in (
        lambda: bot.answer("bomb"),
        lambda: Bot.cls_answer("bomb"),
        lambda: Bot.static_answer("bomb"),
    ):
        with pytest.raises(GuardViolation):
            call()


# ----------------------------------------------------------------------------- extraction
def test_openai_messages_with_images_and_completion_response(kw):
    seen = []

    @kw.guard.check
    def chat(messages: list[dict]) -> dict:
        seen.append(len(messages))
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "A red square."}}]}

    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": data_url()}},
                {"type": "image_url", "image_url": data_url((0, 0, 255))},
            ],
        },
    ]
    out = chat(messages)
    assert out["choices"][0]["message"]["content"] == "A red square."
    request, response, n_images = kw.checks[-1]
    # a conversation (docs/conversations.md): the last user turn, with the turn before as context;
    # the earlier user turn is not re-litigated and the system turn is not user content
    assert "What is this?" in request and "First answer" in request
    assert "You are helpful" not in request and "First question" not in request
    assert n_images == 2 and "A red square." in response

    with pytest.raises(GuardViolation):
        chat([{"role": "user", "content": [{"type": "text", "text": "a bomb"}]}])
    assert seen == [4]


def test_prompt_and_images_arguments_and_langchain_message_return(kw, png_bytes):
    from langchain_core.messages import AIMessage

    @kw.guard.check
    def describe(user_id: int, prompt: str, images: list | None = None) -> AIMessage:
        return AIMessage(
            content=[{"type": "text", "text": "It is red."}, {"type": "reasoning", "reasoning": "x"}]
        )

    assert describe(7, "what colour?", images=[png_bytes]).content[0]["text"] == "It is red."
    request, response, n_images = kw.checks[-1]
    assert "what colour?" in request and n_images == 1 and "It is red." in response
    describe(7, prompt=None, images=[png_bytes])  # image-only request
    assert kw.checks[-1][2] == 1

    with pytest.raises(InputError):  # nothing at all to check is an input error, not a pass
        describe(7, None)


def test_request_body_model_and_openai_objects(kw):
    class Body(BaseModel):
        messages: list[dict]
        temperature: float = 0.0

    completion = SimpleNamespace(
        choices=[SimpleNamespace(message=SimpleNamespace(content="poison", role="assistant"))]
    )

    @kw.guard.check
    async def chat(body: Body):
        return completion

    async def run():
        return await chat(Body(messages=[{"role": "user", "content": "hello there"}]))

    with pytest.raises(GuardViolation) as info:
        asyncio.run(run())
    assert info.value.stage == "output" and "hello there" in kw.checks[-1][0]


def test_langchain_standard_image_blocks_in_messages(kw):
    from langchain_core.messages import HumanMessage, SystemMessage

    @kw.guard.check(output=False)
    def chat(messages):
        return "ok"

    chat(
        [
            SystemMessage("sys"),
            HumanMessage(
                content=[
                    {"type": "text", "text": "look"},
                    {"type": "image", "base64": b64_png(), "mime_type": "image/png"},
                    {"type": "image", "source_type": "base64", "data": b64_png(), "mime_type": "image/png"},
                    {"type": "image", "url": data_url()},
                ]
            ),
        ]
    )
    assert kw.checks[-1][2] == 3 and "look" in kw.checks[-1][0]


def test_unsupported_content_is_an_input_error_before_the_handler(kw):
    ran = []

    @kw.guard.check
    def chat(messages):
        ran.append(1)
        return "ok"

    for part in (
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "image", "file_id": "file-123"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,not-base64!"}},
    ):
        with pytest.raises(InputError):
            chat([{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}])
    with pytest.raises(InputError, match="no user turn"):
        chat([{"role": "system", "content": "only a system prompt"}])
    assert ran == [] and kw.batches == 0


def test_cannot_tell_fails_at_decoration_or_first_call(kw):
    with pytest.raises(ConfigurationError, match="extract="):

        @kw.guard.check
        def nothing() -> str:
            return "x"

    with pytest.raises(ConfigurationError, match="extract="):  # a number never holds a request

        @kw.guard.check
        def numeric(x: int) -> str:
            return "x"

    @kw.guard.check
    def unannotated(x) -> str:
        return "x"

    with pytest.raises(ConfigurationError, match="extract="):  # found out on the first call
        unannotated(3)

    @kw.guard.check
    def weird_return(prompt: str):
        return {"reply_text": "hi"}

    with pytest.raises(ConfigurationError, match="extract="):
        weird_return("hello")
    with pytest.raises(ConfigurationError, match="no parameter"):
        kw.guard.check(extract="query")(lambda prompt: prompt)
    for bad in (
        {"on_violation": "ignore"},
        {"window": 0},
        {"input": False, "output": False},
        {"extract": {"inputs": "x"}},
        {"extract": 3},
        {"windows": 3},
    ):
        with pytest.raises(ConfigurationError):
            kw.guard.check(**bad)


def test_extract_name_function_and_output(kw):
    @kw.guard.check(extract="query")
    def by_name(user: str, query: str) -> str:
        return "fine"

    by_name("bomb-user", "weather?")  # the user name is not the request
    assert "weather?" in kw.checks[-1][0] and "bomb" not in kw.checks[-1][0]

    @kw.guard.check(extract=lambda req, **kw_: Extracted(prompt=req["q"], images=(data_url(),)))
    def by_function(req: dict, **extra) -> str:
        return "fine"

    by_function({"q": "hello"})
    assert "hello" in kw.checks[-1][0] and kw.checks[-1][2] == 1

    @kw.guard.check(extract={"input": "q", "output": lambda r: r["reply"]})
    def both(q: str) -> dict:
        return {"reply": "poison"}

    with pytest.raises(GuardViolation):
        both("hi")

    @kw.guard.check(extract=lambda *a, **k: None)
    def no_request(x: int) -> str:
        return "fine"

    before = kw.batches
    assert no_request(1) == "fine" and kw.batches == before + 1  # output checked alone


def test_var_args_and_kwargs(kw):
    @kw.guard.check
    def star(*args):
        return "ok"

    @kw.guard.check
    def kwargs_only(**kwargs):
        return "ok"

    star("hello")
    kwargs_only(prompt="hey", images=[data_url()])
    assert "hey" in kw.checks[-1][0] and kw.checks[-1][2] == 1
    with pytest.raises(GuardViolation):
        star("bomb")


def test_a_wrong_call_is_a_type_error_and_never_runs_the_handler(kw):
    ran = []

    @kw.guard.check
    def answer(prompt: str) -> str:
        ran.append(1)
        return "ok"

    with pytest.raises(TypeError, match="answer"):
        answer("a", "b")
    assert ran == [] and kw.batches == 0


def test_empty_response_is_not_checked(kw):
    @kw.guard.check
    def answer(prompt: str):
        return None

    assert answer("hi") is None and kw.batches == 1


# ------------------------------------------------------------------------------ streaming
WORDS = ["Once ", "upon ", "a ", "time ", "there ", "was ", "a ", "poison ", "apple ", "and ", "more."]


def _released_after_check(log):
    """Every received chunk was inside a response text that a check had seen before it."""
    for i, (kind, value) in enumerate(log):
        if kind == "recv":
            received = "".join(v for k, v in log[: i + 1] if k == "recv")
            assert any(k == "check" and received in v for k, v in log[:i]), (value, log[:i])


def test_sync_stream_is_cut_before_the_harmful_chunk():
    log: list = []
    kw = KeywordGuard(log)
    produced = []

    @kw.guard.check(window=10)
    def story(prompt: str):
        for w in WORDS:
            produced.append(w)
            yield w

    received = []
    with pytest.raises(GuardViolation) as info:
        for chunk in story("tell me a story"):
            received.append(chunk)
            log.append(("recv", chunk))
    assert info.value.stage == "output"
    assert "poison " not in received and received == WORDS[: len(received)] and received
    _released_after_check(log)
    assert produced[-1] == "poison "  # generation stopped at the window that blocked
    assert kw.batches >= 3  # input + several windows


def test_stream_replacement_message_and_final_check():
    kw = KeywordGuard()

    @kw.guard.check(window=1000, message="[withheld]")
    def story(prompt: str):
        yield from WORDS

    assert list(story("hi")) == ["[withheld]"]  # one final check, nothing released before it
    assert kw.batches == 2

    @kw.guard.check(window=None)
    def safe(prompt: str):
        yield from ["all ", "good"]

    assert list(safe("hi")) == ["all ", "good"] and kw.batches == 4


async def test_async_stream_cut_off_and_input_block():
    log: list = []
    kw = KeywordGuard(log)
    started = []

    @kw.guard.check(window=12, message="[stopped]")
    async def story(prompt: str):
        started.append(prompt)
        for w in WORDS:
            await asyncio.sleep(0)
            yield w

    received = []
    async for chunk in story("tell me"):
        received.append(chunk)
        log.append(("recv", chunk))
    assert received[-1] == "[stopped]" and "poison " not in received
    _released_after_check([e for e in log if e != ("recv", "[stopped]")])

    assert [c async for c in story("a bomb please")] == ["[stopped]"]
    assert started == ["tell me"]  # the blocked request never started the generator


def test_stream_chunks_in_openai_and_langchain_shapes():
    from langchain_core.messages import AIMessageChunk

    kw = KeywordGuard()

    @kw.guard.check(window=5)
    def openai_chunks(messages):
        yield {"choices": [{"delta": {"role": "assistant"}}]}
        for w in ["safe ", "words ", "poison"]:
            yield {"choices": [{"index": 0, "delta": {"content": w}}]}

    got = []
    with pytest.raises(GuardViolation):
        for c in openai_chunks([{"role": "user", "content": "hi"}]):
            got.append(c)
    assert [c["choices"][0]["delta"].get("content") for c in got] == [None, "safe ", "words "]

    @kw.guard.check(window=5)
    def lc_chunks(messages):
        for w in ["fine ", "text"]:
            yield AIMessageChunk(content=w)

    assert "".join(c.content for c in lc_chunks([("human", "hi")])) == "fine text"


def test_optimistic_stream_releases_first_and_stops_after():
    kw = KeywordGuard()

    @kw.guard.check(window=5, optimistic=True)
    def story(prompt: str):
        for w in WORDS:
            time.sleep(0.05)  # a model producing text while the checks run alongside
            yield w

    received = []
    with pytest.raises(GuardViolation):
        for chunk in story("hi"):
            received.append(chunk)
    assert "poison " in received  # released before its check: the documented trade-off
    assert "more." not in received  # ...but the stream stopped once the check came back

    @kw.guard.check(window=5, optimistic=True)
    def fast(prompt: str):
        yield from WORDS

    received = []
    with pytest.raises(GuardViolation):  # all released before any check returned: the final check blocks
        for chunk in fast("hi"):
            received.append(chunk)

    @kw.guard.check(window=5, optimistic=True)
    def fine(prompt: str):
        yield from ["a ", "b ", "c ", "d ", "e ", "f"]

    assert list(fine("hi")) == ["a ", "b ", "c ", "d ", "e ", "f"]


async def test_async_optimistic_stream():
    kw = KeywordGuard()

    @kw.guard.check(window=5, optimistic=True, message="[cut]")
    async def story(prompt: str):
        for w in WORDS:
            await asyncio.sleep(0.01)
            yield w

    received = [c async for c in story("hi")]
    assert "poison " in received and received[-1] == "[cut]"


def test_closing_a_guarded_stream_closes_the_handler():
    kw = KeywordGuard()
    closed = []

    @kw.guard.check(window=3)
    def story(prompt: str):
        try:
            yield from WORDS
        finally:
            closed.append(True)

    stream = story("hi")
    assert next(stream) == "Once "
    stream.close()
    assert closed == [True]


# ------------------------------------------------------------------ the real (tiny) model
@pytest.mark.slow
def test_tiny_model_end_to_end_with_image(vl_backend, png_bytes):
    """A random model's output does not parse: the default policy blocks, "allow" lets through."""
    blocked_guard = Guard(vl_backend, max_new_tokens=8)
    ran = []

    @blocked_guard.check
    def chat(messages):
        ran.append(1)
        return {"role": "assistant", "content": "A red rectangle."}

    msgs = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is it?"},
                {"type": "image_url", "image_url": {"url": data_url()}},
            ],
        }
    ]
    with pytest.raises(GuardViolation) as info:
        chat(msgs)
    assert info.value.stage == "input" and info.value.verdict.decided_by == "policy" and ran == []

    open_guard = Guard(vl_backend, max_new_tokens=8, on_parse_error="allow")
    chat_open = open_guard.check(chat.__wrapped__)
    assert chat_open(msgs) == {"role": "assistant", "content": "A red rectangle."} and ran == [1]

    @open_guard.check(window=10)
    async def stream(prompt: str, images):
        for w in ["red ", "square ", "on ", "white"]:
            yield w

    async def consume():
        return [c async for c in stream("describe", images=[png_bytes])]

    assert asyncio.run(consume()) == ["red ", "square ", "on ", "white"]


def test_partial_functions_can_be_guarded(kw):
    def answer(style: str, prompt: str) -> str:
        return f"{style}: {prompt}"

    guarded = kw.guard.check(extract="prompt")(functools.partial(answer, "plain"))
    assert guarded(prompt="hi") == "plain: hi"
