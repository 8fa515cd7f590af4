"""Reading a media source into bytes under a byte limit, and opening it with PyAV safely."""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from collections.abc import Mapping
from typing import Any

from guardrail._deps import require
from guardrail.errors import MediaError, MediaTooLargeError

__all__ = ["DEMUXERS", "first_stream", "open_container", "source_bytes"]

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.DOTALL)

#: The container formats PyAV may open (FFmpeg demuxer names). Anything else (playlists such as
#: HLS or concat lists that name other files or URLs, image sequences, devices) is refused.
DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "mpegts",
    "flv",
    "ogg",
    "wav",
    "mp3",
    "flac",
    "aac",
    "gif",
)
_ALLOWED = frozenset(name for entry in DEMUXERS for name in entry.split(","))


def source_bytes(
    source: Any, *, kind: str, mime: str, max_bytes: int, allow_paths: bool, where: str
) -> bytes:
    """The encoded bytes of ``source``: ``bytes``, a base64 ``data:{mime}/...`` URL (also as
    ``{"url": ...}``) or, when ``allow_paths``, a file path. Raises
    :class:`~guardrail.errors.MediaError` / :class:`~guardrail.errors.MediaTooLargeError`."""
    if isinstance(source, Mapping) and isinstance(source.get("url"), str):
        source = source["url"]
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if isinstance(text, str) and text.startswith("data:"):
            data = _data_url(text, mime, max_bytes, where)
        elif isinstance(text, str) and text.startswith(("http://", "https://")):
            raise MediaError(f"{where}: {kind} URLs are not fetched; send the {kind} inline")
        elif not allow_paths:
            raise MediaError(f"{where}: local file paths are not accepted here")
        else:
            data = _read_file(text, max_bytes, where)
    else:
        raise MediaError(f"{where}: unsupported {kind} type {type(source).__name__}")
    if not data:
        raise MediaError(f"{where}: zero bytes")
    if len(data) > max_bytes:
        raise MediaTooLargeError(f"{where}: {len(data)} bytes; the limit is {max_bytes}")
    return data


def _data_url(url: str, mime: str, max_bytes: int, where: str) -> bytes:
    m = _DATA_URL.match(url)
    if not m or ";base64" not in (m.group("params") or ""):
        raise MediaError(f"{where}: only base64 data URLs are supported (data:{mime}/...;base64,...)")
    kind = (m.group("mime") or "").lower()
    if kind and not kind.startswith(mime + "/") and kind != "application/octet-stream":
        raise MediaError(f"{where}: data URL type {kind!r} is not {mime}")
    data = m.group("data").strip()
    if len(data) * 3 // 4 > max_bytes:
        raise MediaTooLargeError(f"{where}: data URL larger than {max_bytes} bytes")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError(f"{where}: data URL is not valid base64 ({exc})") from None


def _read_file(path: str, max_bytes: int, where: str) -> bytes:
    try:
        size = os.path.getsize(path)
    except (OSError, ValueError) as exc:
        raise MediaError(
            f"{where}: cannot read file {path[:200]!r}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if size > max_bytes:
        raise MediaTooLargeError(f"{where}: file is {size} bytes; the limit is {max_bytes}")
    if not os.path.isfile(path):
        raise MediaError(f"{where}: {path[:200]!r} is not a regular file")
    try:
        with open(path, "rb") as fh:
            return fh.read(max_bytes + 1)
    except OSError as exc:
        raise MediaError(f"{where}: cannot read file {path[:200]!r}: {exc.strerror or exc}") from None


def open_container(data: bytes, where: str) -> Any:
    """Open ``data`` with PyAV, only as one of :data:`DEMUXERS` (never a playlist, a device or
    a file it names). Raises :class:`~guardrail.errors.MediaError`."""
    av = require("av", extra="media")
    try:
        container = av.open(
            io.BytesIO(data), mode="r", options={"format_whitelist": ",".join(DEMUXERS)},
            metadata_errors="ignore",
        )  # fmt: skip
    except (av.error.FFmpegError, ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise MediaError(f"{where}: not a readable media container ({_reason(exc)})") from None
    names = set((container.format.name or "").split(","))
    if not names & _ALLOWED:
        container.close()
        raise MediaError(f"{where}: container format {container.format.name!r} is not accepted")
    return container


def first_stream(container: Any, kind: str, where: str) -> Any:
    """The first ``kind`` ("video" or "audio") stream of ``container`` whose codec FFmpeg can
    decode, or :class:`~guardrail.errors.MediaError`."""
    streams = getattr(container.streams, kind)
    if not streams:
        raise MediaError(f"{where}: no {kind} stream")
    stream = streams[0]
    ctx = stream.codec_context
    if ctx is None or getattr(ctx, "codec", None) is None or not ctx.codec.name or ctx.codec.name == "none":
        raise MediaError(f"{where}: unsupported {kind} codec")
    return stream


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "strerror", None) or exc)
    return text.split(":")[0][:200] or type(exc).__name__
