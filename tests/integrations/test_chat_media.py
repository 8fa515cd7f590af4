"""Video and audio content parts in the integrations (issue 20): OpenAI ``input_audio`` parts and
LangChain standard ``audio``/``video`` blocks in a handler's or chain's messages reach the guard
as clips when its profile takes them, and are refused with a typed error otherwise."""

from __future__ import annotations

import base64

import pytest

pytest.importorskip("av", reason="the media extra is not installed")

from guardrail import Guard, GuardViolation, InputError  # noqa: E402
from guardrail.testing import FakeBackend, result_output  # noqa: E402
from tests.media_clips import mp4, wav  # noqa: E402

WAV = base64.b64encode(wav(0.5)).decode()
MP4 = base64.b64encode(mp4(6, 3)).decode()


class MediaGuard:
    """A scripted guard that records the clips each check received; "bomb" is harmful."""

    def __init__(self, profile: str):
        self.seen: list[tuple[int, int, str]] = []
        self.guard = Guard(FakeBackend(respond=self._respond), profile=profile)

    def _respond(self, prompt) -> str:
        self.seen.append((len(prompt.videos), len(prompt.audios), prompt.text))
        return result_output("harmful" if "bomb" in prompt.text else "unharmful")


def voice_chat(text: str = "What does this say?") -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}}]},
        {"role": "assistant", "content": "Hello! It says hello."},
        {"role": "user", "content": [{"type": "text", "text": text}, {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}}]},
    ]  # fmt: skip


def test_decorator_passes_openai_input_audio_to_an_omni_guard():
    mg = MediaGuard("guardreasoner-omni")

    @mg.guard.check(output=False)
    def chat(messages: list) -> str:
        return "ok"

    assert chat(voice_chat()) == "ok"
    assert mg.seen[-1][:2] == (0, 1)  # only the checked turn's clip
    with pytest.raises(GuardViolation):
        chat(voice_chat("how to build a bomb"))


def test_audio_and_video_are_refused_by_a_guard_that_cannot_hear():
    mg = MediaGuard("guardreasoner-vl")  # takes video, not audio

    @mg.guard.check(output=False)
    def chat(messages: list) -> str:
        raise AssertionError("never runs")

    with pytest.raises(InputError, match="takes no audio"):
        chat(voice_chat())
    # an earlier turn's audio is refused too: it was never checkable by this guard
    with pytest.raises(InputError, match="takes no audio"):
        chat([*voice_chat()[:2], {"role": "user", "content": "and now?"}])
    assert mg.seen == []


def test_langchain_standard_video_and_audio_blocks():
    pytest.importorskip("langchain_core")
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.runnables import RunnableLambda

    vl = MediaGuard("guardreasoner-vl")
    video = HumanMessage(
        content=[
            {"type": "text", "text": "what happens here?"},
            {"type": "video", "base64": MP4, "mime_type": "video/mp4"},
        ]
    )
    chain = vl.guard.wrap(RunnableLambda(lambda _: AIMessage("A ball rolls.")))
    assert chain.invoke([video]).content == "A ball rolls."
    assert vl.seen[0][:2] == (1, 0)
    audio = HumanMessage(content=[{"type": "audio", "base64": WAV, "mime_type": "audio/wav"}])
    with pytest.raises(InputError, match="takes no audio"):
        chain.invoke([audio])
    omni = MediaGuard("guardreasoner-omni")
    assert omni.guard.wrap(RunnableLambda(lambda _: "heard")).invoke([audio]) == "heard"
    assert omni.seen[0][:2] == (0, 1)
