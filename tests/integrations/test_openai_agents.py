"""OpenAI Agents SDK guardrails backed by a Guard, run by the SDK's own Runner against a local
OpenAI-compatible chat stub (tests/integrations/chat_stub.py) that records what reached the model."""

from __future__ import annotations

import base64
import dataclasses
import os
import time

import pytest

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
agents = pytest.importorskip("agents", reason="the openai-agents extra is not installed")

import openai  # noqa: E402
from agents import (  # noqa: E402
    Agent,
    InputGuardrailTripwireTriggered,
    OpenAIChatCompletionsModel,
    OutputGuardrailTripwireTriggered,
    Runner,
)
from pydantic import BaseModel  # noqa: E402

from guardrail import Guard, Verdict  # noqa: E402
from guardrail.errors import ConfigurationError, InputError  # noqa: E402
from guardrail.integrations.openai_agents import (  # noqa: E402
    agent_output_text,
    agents_request,
    guard_input,
    guard_output,
)
from guardrail.testing import FakeBackend, result_output  # noqa: E402
from tests.backends.test_remote import free_port  # noqa: E402
from tests.conftest import make_image  # noqa: E402
from tests.integrations.chat_stub import BENIGN_REPLY, HARMFUL_REPLY, chat_stub  # noqa: E402

DATA_URL = "data:image/png;base64," + base64.b64encode(make_image()).decode()
BAD_IMAGE = "data:image/png;base64," + base64.b64encode(make_image(size=(7, 7))).decode()


def scripted(delay: float = 0.0):
    """A request is harmful when its user text says "bomb" or it has a 7x7 image; a response
    when it says "bomb"."""

    def respond(prompt) -> str:
        if delay:
            time.sleep(delay)
        request, _, response = prompt.text.partition("AI assistant:")
        request = request.rpartition("Human user:")[2]
        bad_image = any(image.size == (7, 7) for image in prompt.images)
        return result_output(
            "harmful" if "bomb" in request or bad_image else "unharmful",
            "harmful" if "bomb" in response else "unharmful",
        )

    return respond


@pytest.fixture(scope="module")
def stub():
    with chat_stub() as s:
        yield s


@pytest.fixture
async def model(stub):
    stub.reset()
    client = openai.AsyncOpenAI(base_url=stub.url + "/v1", api_key="unused", max_retries=0)
    yield OpenAIChatCompletionsModel(model="stub", openai_client=client)
    await client.close()


def make_agent(model, guard: Guard, **options) -> Agent:
    return Agent(
        name="assistant",
        instructions="You are a helpful assistant.",
        model=model,
        input_guardrails=[guard_input(guard, **options)],
        output_guardrails=[guard_output(guard)],
    )


def user(*parts) -> list[dict]:
    content = [{"type": "input_text", "text": p} if not p.startswith("data:") else {"type": "input_image", "image_url": p, "detail": "auto"} for p in parts]  # fmt: skip
    return [{"role": "user", "content": content}]


async def test_a_benign_run_reaches_the_model(model, stub):
    backend = FakeBackend(respond=scripted())
    result = await Runner.run(make_agent(model, Guard(backend)), "How do I bake bread?")
    assert result.final_output == BENIGN_REPLY
    assert len(stub.requests) == 1
    checked = result.input_guardrail_results[0].output.output_info
    assert isinstance(checked, Verdict) and checked.allowed
    out = result.output_guardrail_results[0].output.output_info
    assert out.allowed and out.response_harmful is False
    # the output was checked together with the request
    assert "How do I bake bread?" in backend.calls[-1][0].text and BENIGN_REPLY in backend.calls[-1][0].text


async def test_a_harmful_request_trips_before_the_model_is_called(model, stub):
    agent = make_agent(model, Guard(FakeBackend(respond=scripted(delay=0.5))))
    with pytest.raises(InputGuardrailTripwireTriggered) as info:
        await Runner.run(agent, "How do I build a bomb?")
    verdict = info.value.guardrail_result.output.output_info
    assert verdict.request_harmful is True and verdict.decided_by == "model"
    assert stub.requests == []


async def test_in_parallel_the_model_is_called_anyway(model, stub):
    """Why guard_input defaults to run_in_parallel=False: with the SDK's default the model gets
    the harmful request while the guard is still deciding."""
    agent = make_agent(model, Guard(FakeBackend(respond=scripted(delay=1.0))), run_in_parallel=True)
    with pytest.raises(InputGuardrailTripwireTriggered):
        await Runner.run(agent, "How do I build a bomb?")
    assert len(stub.requests) == 1


async def test_images_in_input_items(model, stub):
    guard = Guard(FakeBackend(respond=scripted()))
    result = await Runner.run(make_agent(model, guard), user("What is in this picture?", DATA_URL))
    assert result.final_output == BENIGN_REPLY
    assert stub.requests[0]["messages"][-1]["content"][1]["image_url"]["url"] == DATA_URL
    stub.reset()
    with pytest.raises(InputGuardrailTripwireTriggered) as info:
        await Runner.run(make_agent(model, guard), user("What is in this picture?", BAD_IMAGE))
    assert info.value.guardrail_result.output.output_info.request_harmful is True
    assert stub.requests == []


@pytest.mark.parametrize(
    ("part", "fragment"),
    [
        ({"type": "input_image", "image_url": "/etc/passwd"}, "local file paths are not accepted"),
        ({"type": "input_image", "file_id": "file-123"}, "file id"),
        ({"type": "input_file", "file_data": "data:application/pdf;base64,AAAA"}, "cannot check"),
        ({"type": "input_image", "image_url": "data:image/png;base64,AAAA"}, "image 0"),
    ],
)
async def test_content_the_guard_cannot_check_trips_by_default(model, stub, part, fragment):
    backend = FakeBackend(respond=scripted())
    items = [{"role": "user", "content": [{"type": "input_text", "text": "look"}, part]}]
    with pytest.raises(InputGuardrailTripwireTriggered) as info:
        await Runner.run(make_agent(model, Guard(backend)), items)
    verdict = info.value.guardrail_result.output.output_info
    assert verdict.decided_by == "policy" and fragment in verdict.error, verdict.error
    assert verdict.error.startswith("content the guard cannot check")
    assert stub.requests == [] and backend.calls == []


async def test_on_error_allow_and_raise(model, stub):
    items = [{"role": "user", "content": [{"type": "input_image", "image_url": "/etc/passwd"}]}]
    guard = Guard(FakeBackend(respond=scripted()))
    allowed = await Runner.run(make_agent(model, guard, on_error="allow"), items)
    assert allowed.input_guardrail_results[0].output.output_info.allowed is True
    with pytest.raises(InputError):
        await Runner.run(make_agent(model, guard, on_error="raise"), items)
    with pytest.raises(ConfigurationError):
        guard_input(guard, on_error="ignore")


async def test_a_harmful_output_trips(model, stub):
    backend = FakeBackend(respond=scripted())
    with pytest.raises(OutputGuardrailTripwireTriggered) as info:
        await Runner.run(make_agent(model, Guard(backend)), "Tell me, reply-harmful")
    verdict = info.value.guardrail_result.output.output_info
    assert verdict.response_harmful is True
    assert len(stub.requests) == 1
    assert HARMFUL_REPLY in backend.calls[-1][0].text and "reply-harmful" in backend.calls[-1][0].text


async def test_a_guard_endpoint_that_is_down_blocks(model, stub):
    """Fail closed: the guard's backend cannot be reached -> its on_error policy blocks."""
    down = Guard.from_endpoint(f"http://127.0.0.1:{free_port()}/v1", "guard", max_retries=0)
    with pytest.raises(InputGuardrailTripwireTriggered) as info:
        await Runner.run(make_agent(model, down), "How do I bake bread?")
    verdict = info.value.guardrail_result.output.output_info
    assert verdict.decided_by == "policy" and verdict.error.startswith("backend error")
    assert stub.requests == []
    permissive = Guard.from_endpoint(
        f"http://127.0.0.1:{free_port()}/v1", "guard", max_retries=0, on_error="allow"
    )
    result = await Runner.run(make_agent(model, permissive), "How do I bake bread?")
    assert result.final_output == BENIGN_REPLY


def test_which_items_are_the_request():
    items = [
        {"role": "system", "content": "no bombs"},
        {"role": "user", "content": "first"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "bomb"},
        {"role": "user", "content": [{"type": "input_text", "text": "second"}, {"type": "input_image", "image_url": DATA_URL}]},
    ]  # fmt: skip
    request = agents_request(items)
    assert request.prompt == "first\n\nsecond" and request.images == (DATA_URL,)
    assert agents_request("hello").prompt == "hello"
    assert agents_request([{"type": "function_call_output", "call_id": "c", "output": "x"}]).prompt is None


def test_structured_outputs_are_read_as_json():
    class Answer(BaseModel):
        text: str

    @dataclasses.dataclass
    class Plain:
        text: str

    assert agent_output_text("hi") == "hi"
    assert agent_output_text(Answer(text="a bomb")) == '{"text":"a bomb"}'
    assert agent_output_text(Plain(text="x")) == '{"text": "x"}'
    assert agent_output_text({"k": [1, 2]}) == '{"k": [1, 2]}'


@pytest.mark.slow
async def test_the_real_tiny_model(model, stub, vl_backend):
    """The real path: the tiny random model decides; the run does what its verdict says."""
    guard = Guard(vl_backend, max_new_tokens=16)
    direct = await guard.amoderate(prompt="What is in this picture?", images=[make_image()])
    agent = make_agent(model, guard)
    if direct.allowed:
        result = await Runner.run(agent, user("What is in this picture?", DATA_URL))
        assert result.input_guardrail_results[0].output.output_info.raw_output == direct.raw_output
    else:
        with pytest.raises(InputGuardrailTripwireTriggered) as info:
            await Runner.run(agent, user("What is in this picture?", DATA_URL))
        assert info.value.guardrail_result.output.output_info.raw_output == direct.raw_output
        assert stub.requests == []
