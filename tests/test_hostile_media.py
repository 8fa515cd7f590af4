"""Hostile and broken video and audio: a typed ``InputError`` before anything reaches the model,
never a hang, a crash or a silent pass. The clips are made here (PyAV, ``wave``)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

pytest.importorskip("av", reason="the media extra is not installed")

from guardrail import Guard, InputError, InputLimits  # noqa: E402
from guardrail.errors import MediaError, MediaTooLargeError  # noqa: E402
from guardrail.testing import FakeBackend, result_output  # noqa: E402
from tests.media_clips import encoded_audio, mp4, patch_mp4_duration, wav, wav_claiming  # noqa: E402

GOOD = mp4(10, 5)
LONG = mp4(50, 5)  # 10 s


def omni_guard(**options) -> tuple[Guard, FakeBackend]:
    backend = FakeBackend(respond=lambda prompt: result_output("unharmful"))
    return Guard(backend, profile="guardreasoner-omni", **options), backend


# name -> (video source, expected error type name)
VIDEOS = {
    "zero bytes": (b"", "MediaError"),
    "garbage": (b"\x00\x01garbage" * 100, "MediaError"),
    "truncated half": (GOOD[: len(GOOD) // 2], "MediaError"),
    "truncated header": (GOOD[:40], "MediaError"),
    "truncated matroska": (mp4(50, 5, fmt="matroska")[:3000], "MediaError"),
    "header says 0.5 s of a 10 s clip": (patch_mp4_duration(LONG, 0.05), "MediaError"),
    "unsupported codec": (
        mp4(10, 5, fmt="matroska").replace(b"V_MPEG4/ISO/ASP", b"V_QQQQQ/ISO/ASP"),
        "MediaError",
    ),
    "an image is not a video": (
        base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
        ),
        "MediaError",
    ),
    "audio only, no video stream": (encoded_audio("flac", "flac"), "MediaError"),
    "text data URL": ("data:text/plain;base64," + base64.b64encode(GOOD).decode(), "MediaError"),
    "http URL": ("http://127.0.0.1:1/clip.mp4", "MediaError"),
    "frames without fps": ({"frames": [np.zeros((8, 8, 3), np.uint8)]}, "MediaError"),
    "frames with NaN fps": ({"frames": [np.zeros((8, 8, 3), np.uint8)], "fps": float("nan")}, "MediaError"),
    "zero frames": ({"frames": [], "fps": 1}, "MediaError"),
    "float frames": ({"frames": [np.zeros((8, 8, 3), np.float32)], "fps": 1}, "MediaError"),
    "a list of frames without a rate": ([np.zeros((8, 8, 3), np.uint8)], "MediaError"),
    "an int": (7, "MediaError"),
}

AUDIOS = {
    "zero bytes": (b"", "MediaError"),
    "empty WAV": (wav(0.0), "MediaError"),
    "WAV header claims 10 s, holds 0.5 s": (wav_claiming(16000 * 10), "MediaError"),
    "truncated WAV": (wav(1.0)[:60], "MediaError"),
    "garbage": (b"RIFF\xff\xff\xff\xffWAVEgarbage" * 10, "MediaError"),
    "truncated FLAC": (encoded_audio("flac", "flac")[:200], "MediaError"),
    "video only": (GOOD, "MediaError"),
    "array without rate": (np.zeros(16000, np.float32), "MediaError"),
    "NaN samples": ({"array": np.full(1600, np.nan, np.float32), "sampling_rate": 16000}, "MediaError"),
    "zero samples": ({"array": np.zeros(0, np.float32), "sampling_rate": 16000}, "MediaError"),
    "absurd rate": ({"array": np.zeros(100, np.float32), "sampling_rate": 10**9}, "MediaError"),
    "strings": ({"array": ["a", "b"], "sampling_rate": 16000}, "MediaError"),
    "bad base64": ({"data": "!!!", "format": "wav"}, "MediaError"),
}


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_bad_videos_never_reach_the_model(name):
    source, expected = VIDEOS[name]
    guard, backend = omni_guard()
    with pytest.raises(InputError) as info:
        guard.moderate(prompt="What happens here?", videos=[source])
    assert type(info.value).__name__ == expected, info.value
    assert backend.calls == []


@pytest.mark.parametrize("name", sorted(AUDIOS))
def test_bad_audio_never_reaches_the_model(name):
    source, expected = AUDIOS[name]
    guard, backend = omni_guard()
    with pytest.raises(InputError) as info:
        guard.moderate(prompt="What is said?", audios=[source])
    assert type(info.value).__name__ == expected, info.value
    assert backend.calls == []


def test_limits_each_raise_media_too_large():
    cases = [
        (InputLimits(max_video_bytes=1000), {"videos": [GOOD]}),
        (InputLimits(max_video_seconds=5), {"videos": [LONG]}),
        (InputLimits(max_video_source_frames=20), {"videos": [LONG]}),
        (InputLimits(max_video_frame_pixels=32 * 32), {"videos": [GOOD]}),
        (
            InputLimits(max_video_frame_pixels=32 * 32),
            {"videos": [{"frames": [np.zeros((48, 64, 3), np.uint8)], "fps": 1}]},
        ),
        (
            InputLimits(max_video_seconds=5),
            {"videos": [{"frames": [np.zeros((8, 8, 3), np.uint8)] * 60, "fps": 10}]},
        ),
        (InputLimits(max_videos=1), {"videos": [GOOD, GOOD]}),
        (InputLimits(max_audios=1), {"audios": [wav(0.2), wav(0.2)]}),
        (InputLimits(max_audio_bytes=1000), {"audios": [wav(1.0)]}),
        (InputLimits(max_audio_seconds=0.5), {"audios": [wav(1.0)]}),
        (InputLimits(max_audio_seconds=0.5), {"audios": [encoded_audio("flac", "flac")]}),
        (
            InputLimits(max_audio_seconds=0.5),
            {"audios": [{"array": np.zeros(16000, np.float32), "sampling_rate": 16000}]},
        ),
    ]
    for limits, media in cases:
        guard, backend = omni_guard(limits=limits)
        with pytest.raises(MediaTooLargeError):
            guard.moderate(prompt="x", **media)
        assert backend.calls == []


def test_a_decompression_bomb_is_refused_from_the_header():
    bomb = mp4(2, 5, size=(4096, 2160))  # 4096x2160 is over the default 3840x2160 budget
    guard, backend = omni_guard()
    with pytest.raises(MediaTooLargeError, match="pixels"):
        guard.moderate(prompt="x", videos=[bomb])
    assert backend.calls == []


def test_paths_can_be_turned_off_for_media(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(GOOD)
    guard, backend = omni_guard(limits=InputLimits(allow_paths=False))
    for media in ({"videos": [str(clip)]}, {"audios": [str(tmp_path / "nothing.wav")]}):
        with pytest.raises(MediaError, match="local file paths are not accepted"):
            guard.moderate(prompt="x", **media)
    assert backend.calls == []


def test_playlists_and_other_demuxers_are_refused():
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    concat = b"ffconcat version 1.0\nfile /etc/passwd\n"
    guard, backend = omni_guard()
    for data in (playlist, concat):
        with pytest.raises(MediaError):
            guard.moderate(prompt="x", videos=[data])
        with pytest.raises(MediaError):
            guard.moderate(prompt="x", audios=[data])
    assert backend.calls == []


def test_video_and_audio_are_refused_by_profiles_that_take_none():
    backend = FakeBackend(respond=lambda prompt: result_output("unharmful"))
    text_guard = Guard(backend, profile="guardreasoner")
    with pytest.raises(InputError, match="takes no video"):
        text_guard.moderate(prompt="x", videos=[GOOD])
    vl_guard = Guard(backend, profile="guardreasoner-vl")
    with pytest.raises(InputError, match="takes no audio"):
        vl_guard.moderate(prompt="x", audios=[wav(0.2)])
    assert backend.calls == []


def test_good_clips_reach_the_model_as_decoded_media():
    guard, backend = omni_guard()
    v = guard.moderate(prompt="x", videos=[GOOD], audios=[wav(0.5, 44100, 2)])
    assert v.decided_by == "model"
    (prompt,) = backend.calls[0]
    assert len(prompt.videos) == 1 and len(prompt.videos[0].frames) == 2
    assert prompt.audios[0].sample_rate == 16000 and len(prompt.audios[0].samples) == 8000


# ------------------------------------------------------------------------------- server
@pytest.fixture(scope="module")
def server():
    pytest.importorskip("fastapi", reason="the server extra is not installed")
    from guardrail.server import ServerSettings, create_app
    from guardrail.testing import serve_app

    guard, backend = omni_guard()
    with serve_app(create_app(guard, ServerSettings(max_body_bytes=4 * 1024 * 1024))) as url:
        yield url, backend


def b64(kind: str, data: bytes) -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode()


def test_server_checks_inline_video_and_audio(server):
    import httpx

    url, backend = server
    body = {
        "prompt": "what is this",
        "videos": [b64("video/mp4", GOOD)],
        "audios": [b64("audio/wav", wav(0.5))],
    }
    r = httpx.post(url + "/v1/guard", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["decided_by"] == "model"
    prompt = backend.calls[-1][0]
    assert len(prompt.videos[0].frames) == 2 and len(prompt.audios[0].samples) == 8000


@pytest.mark.parametrize(
    "field, value",
    [
        ("videos", "/etc/passwd"),
        ("videos", "http://127.0.0.1:1/x.mp4"),
        ("videos", b64("video/mp4", GOOD[: len(GOOD) // 2])),
        ("videos", b64("image/png", GOOD)),
        ("audios", "/etc/passwd"),
        ("audios", b64("audio/wav", wav(0.0))),
        ("audios", b64("audio/wav", b"garbage" * 50)),
    ],
)
def test_server_refuses_bad_or_non_inline_media_with_400(server, field, value):
    import httpx

    url, backend = server
    before = len(backend.calls)
    r = httpx.post(url + "/v1/guard", json={"prompt": "x", field: [value]}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in ("InputError", "MediaError")
    assert len(backend.calls) == before
