"""Images from network clients: the one door through which they reach the guard.

Every endpoint that takes images from a client (``/v1/moderations``, ``/v1/guard``, and any
later one) turns the client's strings into image *bytes* here, so no client string is ever
handed to :mod:`guardrail.inputs` where it could be read as a path on the server's disk:

- ``data:image/...;base64,...`` URLs are decoded;
- ``http(s)://`` URLs are fetched (with :mod:`guardrail.netfetch`: public addresses only,
  bounded size and time) only when the operator turned remote images on
  (``ServerSettings.allow_remote_images``, ``serve --allow-remote-images``);
- anything else (a path, ``file://``, any other scheme) is a 400 with one fixed message that
  says nothing about the server's files.

:class:`PixelBudget` bounds the decoded pixels held by all requests of one server at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from guardrail.errors import ImageError, ImageTooLargeError, InputError
from guardrail.inputs import InputLimits, data_url_bytes, fetch_image, header_pixels

__all__ = [
    "LOCAL_REFUSED",
    "NoRoom",
    "PixelBudget",
    "client_images",
    "client_media",
    "conversation_images",
    "decode_media",
    "request_pixels",
]

#: The one answer to an image source that is neither inline data nor an allowed URL.
LOCAL_REFUSED = "images must be given inline as data:image/...;base64 URLs"
_REMOTE_OFF = LOCAL_REFUSED + " (this server does not fetch http(s) image URLs)"


def client_images(sources: Sequence[Any], limits: InputLimits, *, allow_remote: bool) -> list[bytes]:
    """The encoded bytes of each image a client sent (blocking: call it in a worker thread).

    Raises :class:`~guardrail.errors.ImageError` with a fixed message for refused sources.
    """
    out = []
    for i, source in enumerate(sources):
        where = f"image {i}"
        if not isinstance(source, str):
            raise ImageError(f"{where}: {LOCAL_REFUSED}")
        scheme = source[:8].lower()
        if scheme.startswith("data:"):
            out.append(data_url_bytes(source, limits, where))
        elif scheme.startswith(("http://", "https://")):
            if not allow_remote:
                raise ImageError(f"{where}: {_REMOTE_OFF}")
            out.append(fetch_image(source, replace(limits, allow_remote_images=True), where))
        else:
            raise ImageError(f"{where}: {LOCAL_REFUSED}")
    return out


_SLOT = "guardrail-image-slot:"


def conversation_images(
    messages: Any, profile: Any, limits: InputLimits, *, allow_remote: bool
) -> tuple[list[Any], list[bytes]]:
    """A client's conversation with every image part replaced by the image's bytes (blocking).

    Only the images the guard's profile will show its model are loaded (a single-turn family
    sees the images of the checked turn only: a long chat's earlier images are neither fetched
    nor counted against the limits); the parts of the others are dropped. Structure errors are
    :class:`~guardrail.errors.InputError` (HTTP 400), as for the Python API.
    """
    from guardrail.conversation import IMAGE_PART_TYPES, parse_messages

    if not isinstance(messages, list):
        parse_messages(messages)  # raises the InputError that says what is wrong
    sources: list[Any] = []
    slotted: list[Any] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            slotted.append(message)
            continue
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") in IMAGE_PART_TYPES:
                parts.append({"type": "image_url", "image_url": {"url": f"{_SLOT}{len(sources)}"}})
                sources.append(_part_source(part))
            else:
                parts.append(part)
        slotted.append({**message, "content": parts})
    turns = parse_messages(slotted, max_messages=limits.max_messages, max_text_chars=limits.max_text_chars)
    view = profile.conversation_view(turns)
    used = sorted({int(src[len(_SLOT) :]) for src in view.images})
    if len(used) > limits.max_images:
        from guardrail.errors import TooManyImagesError

        raise TooManyImagesError(f"{len(used)} images given; the limit is {limits.max_images}")
    loaded = dict(zip(used, client_images([sources[i] for i in used], limits, allow_remote=allow_remote), strict=True))
    out = []
    for message in slotted:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            parts = []
            for part in content:
                url = part.get("image_url", {}).get("url", "") if isinstance(part, dict) else ""
                if isinstance(url, str) and url.startswith(_SLOT):
                    index = int(url[len(_SLOT) :])
                    if index in loaded:
                        parts.append({"type": "image_url", "image_url": {"url": loaded[index]}})
                    continue
                parts.append(part)
            message = {**message, "content": parts}
        out.append(message)
    return out, list(loaded.values())


def _part_source(part: dict[str, Any]) -> Any:
    value = part.get("image_url", part.get("url"))
    if isinstance(value, dict):
        value = value.get("url")
    return value


def request_pixels(images: Sequence[bytes], limits: InputLimits) -> int:
    """Pixels the images will take once decoded, from their headers; over the request's limit
    raises :class:`~guardrail.errors.ImageTooLargeError` before anything is decoded."""
    total = sum(header_pixels(data) for data in images)
    if total > limits.max_request_pixels:
        raise ImageTooLargeError(
            f"the request's images have {total} pixels together; the limit is {limits.max_request_pixels}"
        )
    return total


class NoRoom(Exception):
    """No room in the :class:`PixelBudget` in time (the server answers 503)."""


class PixelBudget:
    """At most ``capacity`` decoded pixels held by the server's requests at once; a request
    waits (up to ``timeout_s``) for room, then gets :class:`NoRoom`."""

    def __init__(self, capacity: int, timeout_s: float):
        self.capacity = capacity
        self.timeout_s = timeout_s
        self.used = 0
        self._cond: asyncio.Condition | None = None

    def hold(self, pixels: int) -> _Hold:
        return _Hold(self, min(pixels, self.capacity))


class _Hold:
    def __init__(self, budget: PixelBudget, pixels: int):
        self.budget, self.pixels = budget, pixels

    async def __aenter__(self) -> None:
        b = self.budget
        if self.pixels <= 0:
            return
        if b._cond is None:
            b._cond = asyncio.Condition()
        async with b._cond:
            try:
                await asyncio.wait_for(
                    b._cond.wait_for(lambda: b.used + self.pixels <= b.capacity), b.timeout_s
                )
            except TimeoutError:
                raise NoRoom() from None
            b.used += self.pixels

    async def __aexit__(self, *exc: Any) -> None:
        b = self.budget
        if self.pixels <= 0 or b._cond is None:
            return
        async with b._cond:
            b.used -= self.pixels
            b._cond.notify_all()


# ------------------------------------------------------------------------- video and audio
def client_media(videos: Sequence[Any] | None, audios: Sequence[Any] | None) -> dict[str, list[str]]:
    """A client's videos and audio clips: inline ``data:video/...`` / ``data:audio/...`` base64
    URLs only (never a path, never a URL to fetch); anything else is an
    :class:`~guardrail.errors.InputError` naming the clip."""
    out: dict[str, list[str]] = {}
    for key, kind, sources in (("videos", "video", videos), ("audios", "audio", audios)):
        for i, source in enumerate(sources or ()):
            if not isinstance(source, str) or not source.startswith("data:"):
                raise InputError(f"{kind} {i}: send the {kind} inline as a data:{kind}/...;base64 URL")
        if sources:
            out[key] = list(sources)
    return out


def decode_media(guard: Any, item: dict[str, Any]) -> dict[str, Any]:
    """Decode an item's clips with the guard's limits and profile sampling (paths off); the
    guard then takes the decoded clips as they are. Raises
    :class:`~guardrail.errors.InputError`."""
    from guardrail.inputs import normalize_input

    profile = guard.profile
    for key, ok in (("videos", profile.supports_video), ("audios", profile.supports_audio)):
        if item.get(key) and not ok:
            raise InputError(f"the '{profile.name}' profile takes no {key[:-1]}; this request has {key}")
    limits = replace(guard.limits, allow_paths=False)
    decoded = normalize_input(
        "", None, None, limits=limits, videos=item.get("videos"), audios=item.get("audios"),
        sampling=profile.video_sampling,
    )  # fmt: skip
    return {"videos": list(decoded.videos) or None, "audios": list(decoded.audios) or None}
