"""Small synthetic clips for the media tests, written here with PyAV and the stdlib ``wave``."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np


def mp4(frames: int = 10, fps: int = 5, size: tuple[int, int] = (64, 48), codec: str = "mpeg4",
        fmt: str = "mp4") -> bytes:  # fmt: skip
    """A clip whose frame i is a flat grey of level 20*i (so sampled frames can be told apart)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            arr = np.full((size[1], size[0], 3), (20 * i) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def wav(seconds: float = 1.0, rate: int = 16000, channels: int = 1, width: int = 2) -> bytes:
    n = int(seconds * rate)
    t = np.arange(n) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    data = np.repeat(tone[:, None], channels, axis=1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data.tobytes() if width == 2 else bytes(n * channels * width))
    return buf.getvalue()


def wav_claiming(frames: int, actual_seconds: float = 0.5, rate: int = 16000) -> bytes:
    """A WAV whose header says ``frames`` samples but holds ``actual_seconds`` of them."""
    data = bytearray(wav(actual_seconds, rate))
    at = data.index(b"data")
    struct.pack_into("<I", data, at + 4, frames * 2)
    struct.pack_into("<I", data, 4, 36 + frames * 2)
    return bytes(data)


def encoded_audio(codec: str = "flac", fmt: str = "flac", seconds: float = 1.0, rate: int = 44100) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        n = int(seconds * rate)
        samples = (0.2 * np.sin(np.arange(n) / 7)).astype(np.float32)
        sample_fmt = stream.codec_context.format.name
        for start in range(0, n, 1024):
            chunk = samples[start : start + 1024]
            if sample_fmt.startswith("s16"):
                arr = (chunk * 32767).astype(np.int16)
            elif sample_fmt.startswith("s32"):
                arr = (chunk * 2147483647).astype(np.int32)
            else:
                arr = chunk
            frame = av.AudioFrame.from_ndarray(
                arr.reshape(1, -1),
                format=sample_fmt.rstrip("p") if not sample_fmt.endswith("p") else sample_fmt,
                layout="mono",
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def patch_mp4_duration(data: bytes, factor: float) -> bytes:
    """Multiply the durations an MP4's headers claim (``mvhd``, ``mdhd``, ``tkhd``) by ``factor``;
    the samples stay as they are: a header that lies about the clip's length."""
    out = bytearray(data)
    for box, offset in ((b"mvhd", 20), (b"mdhd", 20), (b"tkhd", 24)):
        at = out.find(box)
        while at != -1:
            if out[at + 4] == 0:  # version 0: 32-bit fields
                pos = at + offset
                (value,) = struct.unpack_from(">I", out, pos)
                struct.pack_into(">I", out, pos, max(1, int(value * factor)) & 0xFFFFFFFF)
            at = out.find(box, at + 4)
    return bytes(out)
