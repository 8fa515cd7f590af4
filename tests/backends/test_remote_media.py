"""Video and audio on the wire: the remote backend sends vLLM's OpenAI-compatible ``video_url``
and ``input_audio`` parts holding what the guard decided the model sees; llama.cpp refuses
video and audio with a clear ``UnsupportedError``."""

from __future__ import annotations

import base64
import io
import json
import wave

import httpx
import numpy as np
import pytest

pytest.importorskip("av", reason="the media extra is not installed")

from guardrail import Guard  # noqa: E402
from guardrail.backends.base import refuse_media  # noqa: E402
from guardrail.backends.remote import RemoteBackend  # noqa: E402
from guardrail.errors import UnsupportedError  # noqa: E402
from guardrail.inputs import InputLimits, prepare  # noqa: E402
from guardrail.profiles import get_profile  # noqa: E402
from tests.media_clips import mp4, wav  # noqa: E402

GOOD = "<think>\nfine\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"


def test_remote_sends_video_url_and_input_audio_parts():
    import av

    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        choice = {"index": 0, "message": {"role": "assistant", "content": GOOD}, "finish_reason": "stop"}
        return httpx.Response(200, json={"choices": [choice]})

    backend = RemoteBackend("http://guard.test/v1", "omni", transport=httpx.MockTransport(handler))
    guard = Guard(backend, profile="guardreasoner-omni", max_new_tokens=64)
    verdict = guard.moderate(prompt="what is this", videos=[mp4(20, 5)], audios=[wav(0.5, 44100)])
    assert verdict.decided_by == "model" and verdict.allowed
    (body,) = bodies
    system, user = body["messages"]
    assert system == {"role": "system", "content": get_profile("guardreasoner-omni").system_prompt}
    kinds = [p["type"] for p in user["content"]]
    assert kinds == ["text", "video_url", "input_audio", "text"]
    assert user["content"][0]["text"] == "Human User:\n"
    url = user["content"][1]["video_url"]["url"]
    assert url.startswith("data:video/mp4;base64,")
    with av.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as clip:
        frames = list(clip.decode(video=0))
    assert len(frames) == 4 and (frames[0].width, frames[0].height) == (56, 56)  # 4 s at 1 fps, sized
    audio = user["content"][2]["input_audio"]
    assert audio["format"] == "wav"
    with wave.open(io.BytesIO(base64.b64decode(audio["data"]))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (16000, 1, 8000)


def test_llamacpp_and_other_media_less_backends_refuse_clearly():
    prepared = prepare(
        get_profile("guardreasoner-omni"), {"prompt": "x", "videos": [mp4(4, 2)]}, InputLimits()
    )
    with pytest.raises(UnsupportedError, match="llama.cpp backend takes no video"):
        refuse_media([prepared.prompt], "llama.cpp")
    audio = prepare(
        get_profile("guardreasoner-omni"),
        {"prompt": "x", "audios": [{"array": np.zeros(1600, np.float32), "sampling_rate": 16000}]},
        InputLimits(),
    )
    with pytest.raises(UnsupportedError, match="takes no audio"):
        refuse_media([audio.prompt], "llama.cpp")
    refuse_media([audio.prompt], "x", audio=True)  # allowed: no error


def test_llamacpp_backend_refuses_video(tiny_gguf):
    from guardrail.errors import InputError

    guard = Guard.from_gguf(tiny_gguf.model, mmproj=tiny_gguf.mmproj, max_new_tokens=4)
    with pytest.raises(UnsupportedError, match="takes no video"):
        guard.moderate(prompt="x", videos=[{"frames": [np.zeros((28, 28, 3), np.uint8)], "fps": 1}])
    with pytest.raises(InputError):  # the VL profile takes no audio at all
        guard.moderate(prompt="x", audios=[wav(0.2)])
