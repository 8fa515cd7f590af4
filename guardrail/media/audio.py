"""Decoding audio: every accepted source becomes one mono 16 kHz :class:`Audio`.

Sources: encoded bytes (WAV through the standard library's ``wave``; MP3, FLAC, Ogg/Opus,
AAC/M4A and non-PCM WAV through PyAV), a base64 ``data:audio/...`` URL, OpenAI's
``input_audio`` shape (``{"data": base64, "format": "wav"}``), a file path (trusted callers
only), or samples with their rate: ``{"array": samples, "sampling_rate": 16000}`` (the Hugging
Face datasets shape), ``{"samples": ..., "sample_rate": ...}`` or ``(samples, rate)``. Samples
are floats in [-1, 1] (or int16/int32 PCM), mono or ``(frames, channels)``; channels are
averaged, and any rate other than 16 kHz is resampled with FFmpeg's resampler (PyAV).

Limits: ``max_audio_bytes`` (encoded), ``max_audio_seconds`` (checked from the WAV header before
its samples are read, and while decoding anything else: a clip stops decoding once it is over).
Every failure is a :class:`~guardrail.errors.MediaError`.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import warnings
import wave
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from guardrail._deps import require
from guardrail.errors import MediaError, MediaTooLargeError
from guardrail.media.source import _reason, first_stream, open_container, source_bytes
from guardrail.media.types import AUDIO_SAMPLE_RATE, Audio

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.inputs import InputLimits

__all__ = ["load_audio"]

_SECONDS_SLACK = 2.0


def load_audio(source: Any, *, limits: InputLimits, index: int = 0) -> Audio:
    """Decode and check one audio clip (see the module docstring)."""
    where = f"audio {index}"
    if isinstance(source, Audio):
        return _from_samples(source.samples, source.sample_rate, limits, where)
    if isinstance(source, tuple) and len(source) == 2 and not isinstance(source[0], (str, bytes)):
        return _from_samples(source[0], source[1], limits, where)
    if isinstance(source, Mapping):
        if "array" in source or "samples" in source:
            samples = source.get("array", source.get("samples"))
            rate = source.get("sampling_rate", source.get("sample_rate"))
            return _from_samples(samples, rate, limits, where)
        if isinstance(source.get("data"), str):  # OpenAI input_audio
            source = _b64(source["data"], limits, where)
    if hasattr(source, "shape") and hasattr(source, "dtype"):
        raise MediaError(
            f"{where}: give samples with their rate: {{'array': samples, 'sampling_rate': rate}}"
        )
    data = source_bytes(
        source, kind="audio", mime="audio", max_bytes=limits.max_audio_bytes,
        allow_paths=limits.allow_paths, where=where,
    )  # fmt: skip
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        pcm = _read_wav(data, limits, where)
        if pcm is not None:
            return _from_samples(*pcm, limits, where)
    return _decode(data, limits, where)


def _b64(text: str, limits: InputLimits, where: str) -> bytes:
    if len(text) * 3 // 4 > limits.max_audio_bytes:
        raise MediaTooLargeError(f"{where}: larger than {limits.max_audio_bytes} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError(f"{where}: 'data' is not valid base64 ({exc})") from None


# --------------------------------------------------------------------------------- WAV
def _read_wav(data: bytes, limits: InputLimits, where: str) -> tuple[Any, int] | None:
    """PCM WAV with the standard library: ``(samples, rate)``, or None for a WAV ``wave``
    cannot read (IEEE float, A-law...: PyAV reads those)."""
    np = require("numpy", extra="media")
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, width, rate, frames = (
                wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes(),
            )  # fmt: skip
            if rate <= 0 or channels <= 0 or width not in (1, 2, 3, 4):
                raise MediaError(
                    f"{where}: bad WAV header ({channels} channels, {width}-byte samples, {rate} Hz)"
                )
            if frames == 0:
                raise MediaError(f"{where}: zero-length audio")
            if frames / rate > limits.max_audio_seconds:
                raise MediaTooLargeError(
                    f"{where}: {frames / rate:.1f} s; the limit is {limits.max_audio_seconds} s"
                )
            raw = wav.readframes(frames)
    except MediaError:
        raise
    except wave.Error:
        return None
    except (EOFError, ValueError, OSError, MemoryError) as exc:
        raise MediaError(f"{where}: cannot read WAV ({exc or type(exc).__name__})") from None
    got = len(raw) // (width * channels)
    if got == 0:
        raise MediaError(f"{where}: zero-length audio")
    if got < frames * 0.95 - 1:
        raise MediaError(f"{where}: the header says {frames} samples; the file holds {got} (truncated)")
    raw = raw[: got * width * channels]
    if width == 1:
        pcm = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        pcm = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        pcm = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    else:
        pcm = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
    return pcm.reshape(-1, channels), rate


# ------------------------------------------------------------------------------ samples
def _from_samples(samples: Any, rate: Any, limits: InputLimits, where: str) -> Audio:
    np = require("numpy", extra="media")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 1000 <= rate <= 384_000:
        raise MediaError(f"{where}: a sample rate between 1000 and 384000 Hz is needed, not {rate!r}")
    try:
        arr = np.asarray(samples)
    except (TypeError, ValueError) as exc:
        raise MediaError(f"{where}: samples are not numbers ({exc})") from None
    if arr.dtype.kind not in "fiu" or arr.ndim not in (1, 2):
        raise MediaError(f"{where}: samples must be a 1-D (or frames x channels) numeric array")
    if arr.ndim == 2:
        if arr.shape[0] <= 8 < arr.shape[1]:
            arr = arr.T  # (channels, frames)
        if arr.shape[1] > 8:
            raise MediaError(f"{where}: {arr.shape[1]} channels; at most 8")
    if arr.shape[0] == 0:
        raise MediaError(f"{where}: zero-length audio")
    if arr.shape[0] / rate > limits.max_audio_seconds:
        raise MediaTooLargeError(
            f"{where}: {arr.shape[0] / rate:.1f} s; the limit is {limits.max_audio_seconds} s"
        )
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max + 1)
    arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = arr.mean(axis=1)
    if not np.isfinite(arr).all():
        raise MediaError(f"{where}: samples hold NaN or infinity")
    arr = np.clip(arr, -1.0, 1.0)
    if rate != AUDIO_SAMPLE_RATE:
        arr = _resample(arr, int(rate), where)
    return Audio(samples=np.ascontiguousarray(arr, dtype=np.float32))


def _resample(samples: Any, rate: int, where: str) -> Any:
    av = require("av", extra="media")
    np = require("numpy", extra="media")
    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_SAMPLE_RATE)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    out = [f.to_ndarray().reshape(-1) for f in (*resampler.resample(frame), *resampler.resample(None))]
    if not out:
        raise MediaError(f"{where}: too short to resample")
    return np.concatenate(out)


# ------------------------------------------------------------------------------- PyAV
def _decode(data: bytes, limits: InputLimits, where: str) -> Audio:
    av = require("av", extra="media")
    np = require("numpy", extra="media")
    errors = (av.error.FFmpegError, ValueError, OSError, EOFError, MemoryError)
    container = open_container(data, where)
    cap = int(limits.max_audio_seconds * AUDIO_SAMPLE_RATE)
    chunks, total = [], 0
    try:
        stream = first_stream(container, "audio", where)
        header_s = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        if header_s is not None and header_s > limits.max_audio_seconds + _SECONDS_SLACK:
            raise MediaTooLargeError(f"{where}: {header_s:.1f} s; the limit is {limits.max_audio_seconds} s")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_SAMPLE_RATE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    total += len(chunk)
                    if total > cap + AUDIO_SAMPLE_RATE * _SECONDS_SLACK:
                        raise MediaTooLargeError(f"{where}: longer than {limits.max_audio_seconds} s")
                    chunks.append(chunk)
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except MediaError:
        raise
    except errors as exc:
        raise MediaError(f"{where}: cannot decode audio ({_reason(exc)})") from None
    finally:
        container.close()
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise MediaError(f"{where}: zero-length audio")
    seconds = samples.size / AUDIO_SAMPLE_RATE
    if seconds > limits.max_audio_seconds:
        raise MediaTooLargeError(f"{where}: {seconds:.1f} s; the limit is {limits.max_audio_seconds} s")
    if header_s is not None and abs(header_s - seconds) > max(_SECONDS_SLACK, 0.25 * seconds):
        raise MediaError(f"{where}: the header says {header_s:.1f} s; the stream lasts {seconds:.1f} s")
    if not np.isfinite(samples).all() or math.isnan(float(samples.sum())):
        raise MediaError(f"{where}: decoded samples hold NaN or infinity")
    return Audio(samples=np.ascontiguousarray(np.clip(samples, -1.0, 1.0), dtype=np.float32))
