"""Decoding and sampling video: every accepted source becomes one :class:`Video`.

Sources: encoded bytes (MP4, WebM/Matroska, AVI, MPEG-TS, FLV, Ogg, GIF), a base64
``data:video/...`` URL, a file path (trusted callers only, as for images), frames with their
rate (``{"frames": [...], "fps": 2.0}`` or :class:`Frames`; PIL images or ``uint8`` arrays
``(h, w, 3)``), or a :class:`Video` already decoded here (kept as it is, its frame count and
sizes re-checked against the limits).

Decoding uses PyAV (the ``media`` extra) in two passes over the bytes in memory: the first reads
the packets only (no decoding) and counts the frames and the time they span; the limits
(``max_video_seconds``, ``max_video_source_frames``) and the header's own claims are checked
against that count before any frame is decoded, so a header that lies about its length is
caught and a clip over a limit costs no decoding. The second pass decodes and keeps the sampled
frames only, each scaled by FFmpeg to the profile's pixel budget as it is decoded (a 4K frame is
never converted to RGB at full size). Every failure is a
:class:`~guardrail.errors.MediaError`; nothing reaches a model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from guardrail._deps import require
from guardrail.errors import MediaError, MediaTooLargeError
from guardrail.media.sampling import frame_count, frame_indices, smart_resize
from guardrail.media.source import _reason, first_stream, open_container, source_bytes
from guardrail.media.types import Video, VideoSampling

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.inputs import InputLimits

__all__ = ["Frames", "load_video"]

#: How far a header's frame count or duration may be from what the stream holds.
_FRAME_SLACK, _SECONDS_SLACK = 0.25, 1.0


@dataclass(frozen=True)
class Frames:
    """A clip given as frames (PIL images or ``uint8`` arrays ``(h, w, 3)``) at ``fps``."""

    frames: Sequence[Any]
    fps: float


def load_video(
    source: Any, *, limits: InputLimits, sampling: VideoSampling | None = None, index: int = 0
) -> Video:
    """Decode, check and sample one clip (see the module docstring)."""
    sampling = sampling or VideoSampling()
    where = f"video {index}"
    if isinstance(source, Video):  # decoded here before (the server decodes off its event loop)
        return _checked(source, limits, where)
    if isinstance(source, Frames):
        return _from_frames(list(source.frames), source.fps, limits, sampling, where)
    if isinstance(source, Mapping) and "frames" in source:
        return _from_frames(source["frames"], source.get("fps"), limits, sampling, where)
    if isinstance(source, (list, tuple)):
        raise MediaError(f"{where}: give frames as {{'frames': [...], 'fps': rate}} (the rate is needed)")
    data = source_bytes(
        source, kind="video", mime="video", max_bytes=limits.max_video_bytes,
        allow_paths=limits.allow_paths, where=where,
    )  # fmt: skip
    return _decode(data, limits, sampling, where)


# ------------------------------------------------------------------------------- frames
def _checked(video: Video, limits: InputLimits, where: str) -> Video:
    if not video.frames or len(video.frames) > max(limits.max_video_frames, 2):
        raise MediaTooLargeError(
            f"{where}: {len(video.frames)} decoded frames; the limit is {limits.max_video_frames}"
        )
    for frame in video.frames:
        _check_frame_pixels(int(frame.shape[1]), int(frame.shape[0]), limits, where)
    return video


def _from_frames(frames: Any, fps: Any, limits: InputLimits, sampling: VideoSampling, where: str) -> Video:
    np = require("numpy", extra="media")
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not 0 < float(fps) <= 1000:
        raise MediaError(f"{where}: frames need an fps between 0 and 1000, not {fps!r}")
    fps = float(fps)
    if isinstance(frames, (str, bytes, Mapping)) or not isinstance(frames, Sequence):
        raise MediaError(f"{where}: 'frames' must be a list of images")
    if not frames:
        raise MediaError(f"{where}: zero frames")
    _check_length(len(frames), len(frames) / fps, limits, where)
    n = frame_count(len(frames), fps, sampling, limits.max_video_frames)
    indices = frame_indices(len(frames), n)
    arrays = [_frame_array(frames[i], i, limits, where, np) for i in sorted(set(indices))]
    h, w = smart_resize(*arrays[0].shape[:2], sampling)
    scaled = {i: _resize(a, w, h) for i, a in zip(sorted(set(indices)), arrays, strict=True)}
    return Video(
        frames=tuple(scaled[i] for i in indices), fps=n / len(frames) * fps, source_fps=fps,
        source_frames=len(frames), duration_s=len(frames) / fps, indices=tuple(indices),
    )  # fmt: skip


def _frame_array(frame: Any, i: int, limits: InputLimits, where: str, np: Any) -> Any:
    from PIL import Image

    if isinstance(frame, Image.Image):
        _check_frame_pixels(frame.width, frame.height, limits, where)
        return np.asarray(frame.convert("RGB"))
    if not hasattr(frame, "shape") or not hasattr(frame, "dtype"):
        raise MediaError(f"{where}: frame {i} is a {type(frame).__name__}, not an image or array")
    arr = np.asarray(frame)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise MediaError(f"{where}: frame {i} has shape {arr.shape}; expected (height, width, 3)")
    _check_frame_pixels(arr.shape[1], arr.shape[0], limits, where)
    if arr.dtype != np.uint8:
        raise MediaError(f"{where}: frame {i} has dtype {arr.dtype}; expected uint8")
    return np.ascontiguousarray(arr[:, :, :3])


def _resize(arr: Any, w: int, h: int) -> Any:
    import numpy as np
    from PIL import Image

    if arr.shape[0] == h and arr.shape[1] == w:
        return arr
    return np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.BICUBIC))


# ----------------------------------------------------------------------------- decoding
def _decode(data: bytes, limits: InputLimits, sampling: VideoSampling, where: str) -> Video:
    av = require("av", extra="media")
    errors = (av.error.FFmpegError, ValueError, OSError, EOFError, MemoryError)
    count, seconds, rate = _survey(data, limits, where, errors)
    n = frame_count(count, rate, sampling, limits.max_video_frames)
    indices = frame_indices(count, n)
    wanted = set(indices)
    kept: dict[int, Any] = {}
    decoded = 0
    size: tuple[int, int] | None = None
    container = open_container(data, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                _check_frame_pixels(frame.width, frame.height, limits, where)
                if decoded in wanted:
                    if size is None:
                        size = smart_resize(frame.height, frame.width, sampling)
                    h, w = size
                    kept[decoded] = frame.to_ndarray(
                        width=w, height=h, format="rgb24", interpolation="BICUBIC"
                    )
                decoded += 1
                if decoded > count + max(2, int(count * _FRAME_SLACK)):
                    raise MediaError(f"{where}: the stream decodes to more frames than it holds packets")
    except MediaError:
        raise
    except errors as exc:
        raise MediaError(f"{where}: cannot decode video ({_reason(exc)})") from None
    finally:
        container.close()
    if not kept:
        raise MediaError(f"{where}: no frame could be decoded")
    if decoded < count * (1 - _FRAME_SLACK) - 1:
        raise MediaError(f"{where}: only {decoded} of {count} frames decode (damaged or truncated stream)")
    # a decoder may drop a frame or two: a missing index takes the nearest earlier frame
    frames, last = [], kept[min(kept)]
    for i in indices:
        last = kept.get(i, last)
        frames.append(last)
    return Video(
        frames=tuple(frames), fps=n / count * rate, source_fps=rate, source_frames=count,
        duration_s=seconds, indices=tuple(indices),
    )  # fmt: skip


def _survey(
    data: bytes, limits: InputLimits, where: str, errors: tuple[type[BaseException], ...]
) -> tuple[int, float, float]:
    """``(frames, seconds, fps)`` of the first video stream, from its packets (nothing is
    decoded), checked against the limits and against the header."""
    container = open_container(data, where)
    try:
        stream = first_stream(container, "video", where)
        ctx = stream.codec_context
        if ctx.width and ctx.height:
            _check_frame_pixels(ctx.width, ctx.height, limits, where)
        tb = stream.time_base or Fraction(1, 1)
        count, first, end = 0, None, None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                count += 1
                if count > limits.max_video_source_frames:
                    raise MediaTooLargeError(
                        f"{where}: more than {limits.max_video_source_frames} frames (max_video_source_frames)"
                    )
                t = packet.pts if packet.pts is not None else packet.dts
                if t is not None:
                    first = t if first is None else min(first, t)
                    stop = t + (packet.duration or 0)
                    end = stop if end is None else max(end, stop)
                    if float((end - first) * tb) > limits.max_video_seconds + _SECONDS_SLACK:
                        raise MediaTooLargeError(
                            f"{where}: longer than {limits.max_video_seconds} s (max_video_seconds)"
                        )
        header_rate = float(stream.average_rate) if stream.average_rate else 0.0
        header_frames, header_s = int(stream.frames or 0), _header_seconds(stream, container)
    except MediaError:
        raise
    except errors as exc:
        raise MediaError(f"{where}: cannot read video ({_reason(exc)})") from None
    finally:
        container.close()
    if count == 0:
        raise MediaError(f"{where}: the video stream holds no frames")
    seconds = float((end - first) * tb) if first is not None and end is not None and end > first else 0.0
    if seconds <= 0:
        seconds = count / header_rate if header_rate > 0 else 0.0
    if seconds <= 0 or not math.isfinite(seconds):
        raise MediaError(f"{where}: the video has no timing (no timestamps and no frame rate)")
    rate = count / seconds
    if header_rate > 0 and abs(header_rate - rate) <= 0.1 * rate:
        rate = header_rate  # the reference uses the container's average rate
    _check_length(count, seconds, limits, where)
    if header_frames and abs(header_frames - count) > max(2, count * _FRAME_SLACK):
        raise MediaError(f"{where}: the header says {header_frames} frames; the stream holds {count}")
    if header_s is not None and abs(header_s - seconds) > max(_SECONDS_SLACK, seconds * _FRAME_SLACK):
        raise MediaError(f"{where}: the header says {header_s:.1f} s; the stream lasts {seconds:.1f} s")
    return count, seconds, rate


def _header_seconds(stream: Any, container: Any) -> float | None:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _check_length(frames: int, seconds: float, limits: InputLimits, where: str) -> None:
    if frames > limits.max_video_source_frames:
        raise MediaTooLargeError(
            f"{where}: {frames} frames; the limit is {limits.max_video_source_frames} (max_video_source_frames)"
        )
    if seconds > limits.max_video_seconds:
        raise MediaTooLargeError(f"{where}: {seconds:.1f} s; the limit is {limits.max_video_seconds} s")


def _check_frame_pixels(width: int, height: int, limits: InputLimits, where: str) -> None:
    if width <= 0 or height <= 0:
        raise MediaError(f"{where}: empty frame ({width}x{height})")
    if width * height > limits.max_video_frame_pixels:
        raise MediaTooLargeError(
            f"{where}: {width}x{height} frames are over the limit of {limits.max_video_frame_pixels} pixels"
        )
