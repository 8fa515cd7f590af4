"""guard.as_runnable() and guard.wrap() in real langchain-core chains; fake chat models stand in
for the app's LLM, a scripted guard gives exact decisions, the tiny model runs end to end."""

from __future__ import annotations

import sys
from itertools import cycle
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
)
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompt_values import ImagePromptValue, StringPromptValue  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler  # noqa: E402

from guardrail import (  # noqa: E402
    ConfigurationError,
    Guard,
    GuardViolation,
    ImageError,
    InputError,
    MissingDependencyError,
)
from guardrail.integrations.langchain import TRACE_EVENT, GuardRunnable  # noqa: E402
from tests.integrations.conftest import (  # noqa: E402
    BAD_REQUEST,
    NO_PATHS,
    b64_png,
    data_url,
    opened,
    path_sources,
)

PROMPT = ChatPromptTemplate.from_messages([("system", "You are a kind assistant."), ("human", "{question}")])
STORY = "Once upon a time there was a poison apple and a lot more text after it."


def llm(*replies: str) -> GenericFakeChatModel:
    """A chat model answering with ``replies`` in turn (streams word by word)."""
    return GenericFakeChatModel(messages=cycle([AIMessage(r) for r in replies] or [AIMessage("Hello!")]))


class Recorder(RunnableLambda):
    """A runnable that records what reached it (the app's LLM, from the guard's point of view)."""

    def __init__(self, reply: Any = "fine"):
        self.seen: list[Any] = []
        super().__init__(self._call, name="recorder")
        self.reply = reply

    def _call(self, value):
        self.seen.append(value)
        return self.reply


# --------------------------------------------------------------------------- as_runnable
def test_as_runnable_passes_input_through_unchanged(kw):
    head = kw.guard.as_runnable()
    for value in (
        "hello",
        {"question": "hi", "other": 1},
        [HumanMessage("hi")],
        StringPromptValue(text="hi"),
        ImagePromptValue(image_url={"url": data_url()}),
        HumanMessage(
            content=[
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": data_url()}},
            ]
        ),
    ):
        assert head.invoke(value) is value
    assert kw.checks[-1][2] == 1 and "look" in kw.checks[-1][0]
    assert kw.batches == 6  # input checks only, one each


def test_blocked_input_at_the_head_never_reaches_the_chain(kw):
    rest = Recorder()
    chain = kw.guard.as_runnable() | PROMPT | rest
    assert chain.invoke({"question": "how are you"}) == "fine"
    with pytest.raises(GuardViolation) as info:
        chain.invoke({"question": "build a bomb"})
    assert info.value.stage == "input" and info.value.verdict.request_harmful
    assert len(rest.seen) == 1
    # a chain-level fallback with LangChain's own mechanism
    safe = chain.with_fallbacks([RunnableLambda(lambda _: "Sorry.")], exceptions_to_handle=(GuardViolation,))
    assert safe.invoke({"question": "a bomb"}) == "Sorry." and len(rest.seen) == 1


def test_as_runnable_refuses_a_fallback_and_bad_options(kw):
    with pytest.raises(ConfigurationError, match="guard.wrap"):
        kw.guard.as_runnable(fallback="no")
    with pytest.raises(ConfigurationError):
        kw.guard.wrap("not a runnable")
    with pytest.raises(ConfigurationError):
        kw.guard.wrap(llm(), input=False, output=False)
    with pytest.raises(ConfigurationError):
        kw.guard.wrap(llm(), window=0)


# ---------------------------------------------------------------------------------- wrap
def test_wrap_checks_input_then_output_with_the_request(kw):
    chain = PROMPT | kw.guard.wrap(llm("Happy to help with cooking.")) | StrOutputParser()
    assert chain.invoke({"question": "how do I boil an egg"}) == "Happy to help with cooking."
    (req_in, resp_in, _), (req_out, resp_out, _) = kw.checks
    assert "boil an egg" in req_in and "kind assistant" not in req_in  # system prompt is context
    assert "boil an egg" in req_out and "Happy to help" in resp_out


def test_wrap_output_block_raises_or_returns_fallback(kw):
    with pytest.raises(GuardViolation) as info:
        (PROMPT | kw.guard.wrap(llm(STORY))).invoke({"question": "a story"})
    assert info.value.stage == "output" and info.value.verdict.response_harmful

    fallback = AIMessage("Sorry, I can't help with that.")
    rest = Recorder(AIMessage("poison"))
    chain = PROMPT | kw.guard.wrap(rest, fallback=fallback) | StrOutputParser()
    assert chain.invoke({"question": "a story"}) == "Sorry, I can't help with that."
    assert chain.invoke({"question": "a bomb"}) == "Sorry, I can't help with that."
    assert len(rest.seen) == 1  # the blocked input did not reach it


def test_multimodal_inputs_openai_parts_and_standard_blocks(kw):
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Describe images."), MessagesPlaceholder("messages")]
    )
    model = Recorder(AIMessage("Two squares."))
    chain = prompt | kw.guard.wrap(model)
    message = HumanMessage(
        content=[
            {"type": "text", "text": "What do you see?"},
            {"type": "image_url", "image_url": {"url": data_url()}},
            {"type": "image", "base64": b64_png(), "mime_type": "image/png"},
        ]
    )
    assert chain.invoke({"messages": [message]}).content == "Two squares."
    request, response, n_images = kw.checks[-1]
    assert "What do you see?" in request and n_images == 2 and "Two squares." in response

    # an image in a template variable
    tpl = ChatPromptTemplate.from_messages(
        [("human", [{"type": "text", "text": "{q}"}, {"type": "image_url", "image_url": {"url": "{img}"}}])]
    )
    (tpl | kw.guard.wrap(Recorder(AIMessage("ok")))).invoke({"q": "and this?", "img": data_url()})
    assert kw.checks[-1][2] == 1


def test_dict_inputs_with_configured_keys(kw):
    inner = Recorder("ok")
    guarded = kw.guard.wrap(inner, key="query", image_key="picture")
    assert guarded.invoke({"query": "hello", "picture": data_url(), "question": "a bomb"}) == "ok"
    assert "hello" in kw.checks[0][0] and "bomb" not in kw.checks[0][0] and kw.checks[0][2] == 1
    with pytest.raises(ConfigurationError, match="key="):
        kw.guard.wrap(inner).invoke({"unrelated": "x"})
    out = kw.guard.wrap(RunnableLambda(lambda x: {"answer": "poison"}), output_key="answer")
    with pytest.raises(GuardViolation):
        out.invoke("hi")
    with pytest.raises(GuardViolation):  # "answer" is a response field of the shared vocabulary
        kw.guard.wrap(RunnableLambda(lambda x: {"answer": "poison"})).invoke("hi")
    with pytest.raises(ConfigurationError, match="output_key="):
        kw.guard.wrap(RunnableLambda(lambda x: {"reply_text": "poison"})).invoke("hi")


def test_bad_image_is_an_input_error(kw):
    inner = Recorder()
    bad = HumanMessage(content=[{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])
    with pytest.raises(InputError):
        kw.guard.wrap(inner).invoke([bad])
    assert inner.seen == []


# ---------------------------------------------------------------------------------- batch
def test_batch_makes_one_guard_call_per_stage(kw):
    model = Recorder(AIMessage("fine answer"))
    guarded = kw.guard.wrap(model)
    inputs = ["hello", "a bomb", "how are you", "ok"]
    out = guarded.batch(inputs, return_exceptions=True)
    assert [o.content if isinstance(o, AIMessage) else type(o).__name__ for o in out] == [
        "fine answer",
        "GuardViolation",
        "fine answer",
        "fine answer",
    ]
    assert kw.batches == 2  # one batched call for the 4 inputs, one for the 3 outputs
    assert [len(c) for c in kw.backend.calls] == [4, 3]
    assert model.seen == ["hello", "how are you", "ok"]  # the blocked input never ran
    with pytest.raises(GuardViolation):
        guarded.batch(inputs)
    assert kw.guard.wrap(model, fallback="no").batch(["a bomb", "hi"]) == ["no", AIMessage("fine answer")]


def test_batch_errors_stay_with_their_item(kw):
    bad = [HumanMessage(content=[{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])]
    out = kw.guard.wrap(Recorder(AIMessage("x"))).batch(["hi", bad, {"no": "key"}], return_exceptions=True)
    assert (
        isinstance(out[0], AIMessage)
        and isinstance(out[1], InputError)
        and isinstance(out[2], ConfigurationError)
    )


async def test_abatch_and_ainvoke(kw):
    model = Recorder(AIMessage("poison" + " text"))
    guarded = kw.guard.wrap(model, fallback="blocked")
    assert await guarded.abatch(["hi", "a bomb"]) == ["blocked", "blocked"]
    assert [len(c) for c in kw.backend.calls] == [2, 1]
    assert await kw.guard.wrap(Recorder(AIMessage("good"))).ainvoke("hi") == AIMessage("good")
    with pytest.raises(GuardViolation):
        await kw.guard.as_runnable().ainvoke("a bomb")


# ------------------------------------------------------------------------------ streaming
def test_stream_is_cut_before_the_harmful_chunk(kw):
    chain = PROMPT | kw.guard.wrap(llm(STORY), window=10) | StrOutputParser()
    received: list[str] = []
    with pytest.raises(GuardViolation) as info:
        for chunk in chain.stream({"question": "a story"}):
            received.append(chunk)
            kw.log.append(("recv", chunk))
    assert info.value.stage == "output"
    text = "".join(received)
    assert text and STORY.startswith(text) and "poison" not in text
    # every released chunk was inside a response the guard had checked before
    for i, (kind, _) in enumerate(kw.log):
        if kind == "recv":
            so_far = "".join(v for k, v in kw.log[: i + 1] if k == "recv")
            assert any(k == "check" and so_far in v for k, v in kw.log[:i])


def test_stream_with_fallback_and_clean_stream(kw):
    chain = (
        PROMPT | kw.guard.wrap(llm(STORY), window=20, fallback=AIMessage("[withheld]")) | StrOutputParser()
    )
    text = "".join(chain.stream({"question": "a story"}))
    assert text.endswith("[withheld]") and "poison" not in text
    clean = PROMPT | kw.guard.wrap(llm("All good here, friend."), window=8) | StrOutputParser()
    assert "".join(clean.stream({"question": "hi"})) == "All good here, friend."
    assert list((kw.guard.as_runnable() | RunnableLambda(lambda x: x.upper())).stream("hi")) == ["HI"]
    with pytest.raises(GuardViolation):
        list(kw.guard.wrap(llm("x")).stream("a bomb"))


async def test_astream_cut_off_and_optimistic(kw):
    gated = PROMPT | kw.guard.wrap(llm(STORY), window=10, fallback="[cut]") | StrOutputParser()
    chunks = [c async for c in gated.astream({"question": "a story"})]
    assert chunks[-1] == "[cut]" and "poison" not in "".join(chunks)

    optimistic = PROMPT | kw.guard.wrap(llm(STORY), window=10, optimistic=True) | StrOutputParser()
    received = []
    with pytest.raises(GuardViolation):
        async for c in optimistic.astream({"question": "a story"}):
            received.append(c)
    assert "poison" in "".join(received)  # released first, checked after: the documented trade-off


def test_sync_optimistic_stream(kw):
    chain = kw.guard.wrap(llm("fine words only, nothing else to see"), window=6, optimistic=True)
    assert "".join(c.content for c in chain.stream("hi")) == "fine words only, nothing else to see"


# -------------------------------------------------------------------------------- tracing
class EventCatcher(BaseCallbackHandler):
    def __init__(self):
        self.events: list[tuple[str, Any]] = []

    def on_custom_event(self, name, data, *, run_id, tags=None, metadata=None, **kwargs):
        self.events.append((name, data))


def _find(run, name):
    if run.name == name:
        yield run
    for child in run.child_runs:
        yield from _find(child, name)


def test_verdicts_are_recorded_as_child_runs_and_custom_events(kw):
    tracer, catcher = RunCollectorCallbackHandler(), EventCatcher()
    chain = PROMPT | kw.guard.wrap(llm("A fine answer."), name="guarded_llm") | StrOutputParser()
    chain.invoke({"question": "hi"}, {"callbacks": [tracer, catcher]})
    root = tracer.traced_runs[0]
    (wrapper,) = _find(root, "guarded_llm")
    names = [c.name for c in wrapper.child_runs]
    assert names == ["guardrail_input_check", "GenericFakeChatModel", "guardrail_output_check"]
    check = wrapper.child_runs[2]
    assert {"guardrail", "guardrail:output", "guardrail:allowed"} <= set(check.tags)
    meta = check.extra["metadata"]
    assert meta["guardrail_stage"] == "output" and meta["guardrail_blocked"] is False
    assert meta["guardrail_response_harmful"] is False and meta["guardrail_model"] == "fake-guard"
    assert check.outputs["verdict"]["allowed"] is True and check.parent_run_id == wrapper.id
    assert [(n, d["stage"]) for n, d in catcher.events] == [(TRACE_EVENT, "input"), (TRACE_EVENT, "output")]

    tracer = RunCollectorCallbackHandler()
    with pytest.raises(GuardViolation):
        chain.invoke({"question": "a bomb"}, {"callbacks": [tracer]})
    (wrapper,) = _find(tracer.traced_runs[0], "guarded_llm")
    (check,) = wrapper.child_runs
    assert "guardrail:blocked" in check.tags and check.extra["metadata"]["guardrail_request_harmful"] is True
    assert "GuardViolation" in wrapper.error


async def test_astream_events_show_the_verdicts(kw):
    chain = PROMPT | kw.guard.wrap(llm("Fine."), window=4) | StrOutputParser()
    events = [e async for e in chain.astream_events({"question": "hi"}, version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert [e["data"]["stage"] for e in custom][:1] == ["input"] and custom[-1]["data"]["stage"] == "output"
    checks = [e for e in events if e["event"] == "on_chain_end" and e["name"] == "guardrail_input_check"]
    assert checks and "guardrail:input" in checks[0]["tags"]


def test_batch_records_a_trace_per_item(kw):
    tracer = RunCollectorCallbackHandler()
    kw.guard.wrap(Recorder(AIMessage("ok")), name="g").batch(["a", "b"], {"callbacks": [tracer]})
    for root in tracer.traced_runs:
        assert [c.name for c in root.child_runs if c.name.startswith("guardrail")] == [
            "guardrail_input_check",
            "guardrail_output_check",
        ]


# ------------------------------------------------------------------------------ extras
def test_missing_langchain_names_the_extra(monkeypatch, kw):
    monkeypatch.delitem(sys.modules, "guardrail.integrations.langchain")
    monkeypatch.setitem(sys.modules, "langchain_core", None)
    with pytest.raises(MissingDependencyError, match=r"guardrail-vl\[langchain\]"):
        kw.guard.as_runnable()


def test_runnable_types_follow_the_wrapped_runnable(kw):
    guarded = kw.guard.wrap(PROMPT)
    assert isinstance(guarded, GuardRunnable)
    assert guarded.get_input_schema().model_json_schema()["properties"].keys() == {"question"}
    assert "GuardRunnable" in repr(guarded)


# ---------------------------------------------------------- hostile: what the guard checks
CHAT = ChatPromptTemplate.from_messages(
    [("system", "You are kind."), MessagesPlaceholder("messages"), ("human", "{input}")]
)


def test_wrap_checks_every_field_the_chain_receives(kw):
    model = Recorder(AIMessage("fine"))
    chain = kw.guard.wrap(CHAT | model)
    hostile = {"input": "hello", "messages": [HumanMessage(f"how to build a {BAD_REQUEST}")]}
    with pytest.raises(GuardViolation) as info:
        chain.invoke(hostile)
    assert info.value.stage == "input" and model.seen == []
    with pytest.raises(GuardViolation):
        (kw.guard.as_runnable() | CHAT | model).invoke(hostile)
    assert model.seen == []

    benign = {"input": "hello", "messages": [HumanMessage("earlier question"), AIMessage("earlier answer")]}
    assert chain.invoke(benign) == AIMessage("fine")
    request = kw.checks[-1][0]
    # a history is a conversation (docs/conversations.md): the other field is a new user turn after
    # it, judged with the turn before as context; the earlier user turn is not re-litigated
    assert "hello" in request and "earlier answer" in request and "earlier question" not in request
    # a field without a human turn is context; the other field is the request
    assert chain.invoke({"input": "hi", "messages": [AIMessage("an answer")]}) == AIMessage("fine")
    assert "an answer" in kw.checks[-2][0] and "hi" in kw.checks[-2][0]
    with pytest.raises(InputError, match="no user turn"):
        chain.invoke({"messages": [AIMessage("x")], "question": None})
    with pytest.raises(InputError, match="holds a user turn"):
        chain.invoke({"messages": [AIMessage("x")], "query": [AIMessage("y")]})
    # every other request key too, and the images of both image keys
    with pytest.raises(GuardViolation):
        kw.guard.wrap(model).invoke({"question": "hi", "query": BAD_REQUEST, "prompt": "p"})
    kw.guard.wrap(model).invoke({"input": "two", "image": data_url(), "images": [data_url((0, 0, 255))]})
    assert kw.checks[-2][2] == 2


def test_explicit_keys_name_exactly_the_checked_fields(kw):
    model = Recorder("ok")
    guarded = kw.guard.wrap(model, key=["question", "context"], image_key=["picture"])
    with pytest.raises(GuardViolation):
        guarded.invoke({"question": "hi", "context": BAD_REQUEST})
    assert guarded.invoke({"question": "hi", "picture": data_url(), "input": "ignored"}) == "ok"
    with pytest.raises(ConfigurationError):
        kw.guard.wrap(model, key=["question", 3])
    with pytest.raises(ConfigurationError):
        kw.guard.wrap(model, allow_paths=1)


def test_message_chunks_are_user_turns(kw):
    model = Recorder(AIMessage("fine"))
    guarded = kw.guard.wrap(model)
    for value in (
        HumanMessageChunk(content=f"a {BAD_REQUEST}"),
        [HumanMessageChunk(content=f"a {BAD_REQUEST}")],
        [HumanMessage("hi"), HumanMessageChunk(content=f"and a {BAD_REQUEST}")],
        {"input": "hi", "messages": [HumanMessageChunk(content=BAD_REQUEST)]},
        [{"type": "HumanMessageChunk", "content": BAD_REQUEST}],
    ):
        with pytest.raises(GuardViolation):
            guarded.invoke(value)
    assert model.seen == []
    # an AI chunk is not a user turn
    assert guarded.invoke([HumanMessage("hi"), AIMessageChunk(content=BAD_REQUEST)]) == AIMessage("fine")
    # a streamed input: the chunks are merged (HumanMessageChunk + HumanMessageChunk), then checked
    head = kw.guard.as_runnable()
    with pytest.raises(GuardViolation):
        list(
            head.transform(
                iter([HumanMessageChunk(content="how to make a "), HumanMessageChunk(content="bomb")])
            )
        )

    # the decorator too
    @kw.guard.check
    def chat(messages):
        return "ok"

    with pytest.raises(GuardViolation):
        chat([HumanMessageChunk(content=BAD_REQUEST)])


def test_wrap_never_opens_an_image_path(kw, png_file, monkeypatch):
    reads = opened(monkeypatch)
    model = Recorder(AIMessage("A photo."))
    guarded = kw.guard.wrap(model)
    for source in path_sources(png_file):
        s = str(source)
        for value in (
            [
                HumanMessage(
                    content=[{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": s}}]
                )
            ],
            [HumanMessage(content=[{"type": "image", "url": s}])],
            ImagePromptValue(image_url={"url": s}),
            {"input": "what is this?", "image": source},
            {"input": "what is this?", "images": [{"url": s}]},
        ):
            with pytest.raises(ImageError) as info:
                guarded.invoke(value)
            assert str(info.value) == NO_PATHS
    assert model.seen == [] and reads == []
    # in a batch the refusal stays with its item
    out = guarded.batch(["hi", {"input": "x", "image": str(png_file)}], return_exceptions=True)
    assert out[0] == AIMessage("A photo.") and isinstance(out[1], ImageError)
    with pytest.raises(ImageError, match=NO_PATHS):
        list(guarded.stream({"input": "x", "image": str(png_file)}))
    # opting in
    trusted = kw.guard.wrap(model, allow_paths=True)
    assert trusted.invoke({"input": "what is this?", "image": str(png_file)}) == AIMessage("A photo.")
    assert kw.checks[-1][2] == 1


async def test_async_wrap_never_opens_an_image_path(kw, png_file):
    guarded = kw.guard.wrap(llm("x"))
    with pytest.raises(ImageError, match=NO_PATHS):
        await guarded.ainvoke({"input": "x", "image": str(png_file)})
    with pytest.raises(ImageError, match=NO_PATHS):
        [c async for c in guarded.astream({"input": "x", "image": str(png_file)})]
    out = await guarded.abatch([{"input": "x", "image": str(png_file)}, "hi"], return_exceptions=True)
    assert isinstance(out[0], ImageError) and out[1].content == "x"
    assert (
        await kw.guard.wrap(RunnableLambda(lambda _: "ok"), allow_paths=True).ainvoke(
            {"input": "x", "image": str(png_file)}
        )
        == "ok"
    )


def test_as_runnable_refuses_paths_too(kw, png_file):
    with pytest.raises(ImageError, match=NO_PATHS):
        kw.guard.as_runnable().invoke({"input": "x", "image": str(png_file)})
    value = {"input": "x", "image": str(png_file)}
    assert kw.guard.as_runnable(allow_paths=True).invoke(value) is value


# -------------------------------------------------------------------- the tiny real model
@pytest.mark.slow
def test_tiny_model_chain_with_image(vl_backend):
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Describe images."), MessagesPlaceholder("messages")]
    )
    message = HumanMessage(
        content=[
            {"type": "text", "text": "What is this?"},
            {"type": "image", "base64": b64_png(), "mime_type": "image/png"},
        ]
    )
    strict = Guard(vl_backend, max_new_tokens=8)
    with pytest.raises(GuardViolation) as info:
        (prompt | strict.wrap(llm("A green square."))).invoke({"messages": [message]})
    assert info.value.stage == "input" and info.value.verdict.decided_by == "policy"

    lenient = Guard(vl_backend, max_new_tokens=8, on_parse_error="allow")
    chain = prompt | lenient.wrap(llm("A green square.")) | StrOutputParser()
    assert chain.invoke({"messages": [message]}) == "A green square."
    out = lenient.wrap(llm("ok")).batch([[SystemMessage("s"), message], "plain text"])
    assert [o.content for o in out] == ["ok", "ok"]
