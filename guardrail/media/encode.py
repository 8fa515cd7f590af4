"""Re-encoding decoded media for backends that take files (the remote backend's data URLs).

A remote OpenAI-compatible server (vLLM) takes a video as a ``video_url`` and audio as an
``input_audio`` part. What is sent is what the guard decided the model sees: the sampled frames
as an MPEG-4 clip at the sampled rate (so a server that samples at 1 fps or more gets every one
of them), and the 16 kHz samples as a 16-bit PCM WAV.
"""

from __future__ import annotations

import base64
import io
import wave

from guardrail._deps import require
from guardrail.media.types import Audio, Video

__all__ = ["audio_wav", "video_data_url", "video_mp4"]


def video_mp4(video: Video) -> bytes:
    """The sampled frames of ``video`` as an MP4 (MPEG-4 Part 2, best quality) at their rate."""
    av = require("av", extra="media")
    from fractions import Fraction

    buf = io.BytesIO()
    w, h = video.size
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=Fraction(video.fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.qscale = 1
        for frame in video.frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def video_data_url(video: Video) -> str:
    return "data:video/mp4;base64," + base64.b64encode(video_mp4(video)).decode("ascii")


def audio_wav(audio: Audio) -> bytes:
    """``audio`` as a mono 16-bit PCM WAV at its rate."""
    np = require("numpy", extra="media")
    pcm = (np.clip(audio.samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(audio.sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()
