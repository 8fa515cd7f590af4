"""Input validation: texts and images are checked here, before anything reaches a model.

Every problem raises an :class:`~guardrail.errors.InputError` subclass with a message that says
what was wrong. Images may be given as:

- a ``PIL.Image.Image``;
- ``bytes``/``bytearray`` holding an encoded image (PNG, JPEG, WebP, GIF, BMP, TIFF);
- a file path (``str`` or ``os.PathLike``);
- a base64 ``data:image/...;base64,...`` URL (a dict ``{"url": ...}`` as in OpenAI's
  ``image_url`` content parts also works);
- an ``http(s)://`` URL, only when ``InputLimits.allow_remote_images`` is True (it is off by
  default: fetching URLs chosen by users is a server-side request forgery risk); fetched by
  :mod:`guardrail.netfetch`, which refuses internal addresses.

File paths are for trusted callers (the app itself): the moderation server never passes a
client's string to this module as a path (see ``guardrail.server.media``).

Decoded images are converted to RGB (palette/CMYK/16-bit converted) and rotated by their EXIF
orientation. Each image becomes one picture that shows everything a model could be shown of it
(see :mod:`guardrail._imageops`): alpha composited on white, side by side with the alpha-dropped
rendering when transparency hides non-uniform colour; every frame of an animation, tiled.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from guardrail.conversation import parse_messages
from guardrail.errors import (
    ImageError,
    ImageTooLargeError,
    InputError,
    MediaTooLargeError,
    TextTooLongError,
    TooManyImagesError,
)
from guardrail.policies import Policy, resolve_policy
from guardrail.profiles import effective_policy
from guardrail.profiles.base import ModerationInput, Profile, RenderedPrompt

__all__ = [
    "InputLimits",
    "Prepared",
    "check_batch",
    "conversation_input",
    "data_url_bytes",
    "fetch_image",
    "header_pixels",
    "load_image",
    "normalize_input",
    "prepare",
]

log = logging.getLogger("guardrail")


@dataclass(frozen=True)
class InputLimits:
    """Limits applied to every request. Defaults suit the released guard models.

    - ``max_images``: images per request (GuardReasoner-VL serving setups allow up to 10).
    - ``max_image_bytes``: size of one encoded image.
    - ``max_image_pixels``: width x height of one image, checked from the header before the
      pixels are decoded, so decompression bombs are refused cheaply.
    - ``max_request_pixels``: the pixels of all images of one request together, checked from
      each header before that image is decoded (a few small files can decode to gigabytes).
    - ``max_text_chars``: length of the prompt and of the response, each.
    - ``allow_remote_images``: fetch ``http(s)`` image URLs (off by default).
    - ``remote_timeout_s``: time limit for such a fetch, redirects and body included.
    - ``remote_allowed_networks``: non-public networks (CIDR) that fetches may reach; by
      default only public addresses are (see :mod:`guardrail.netfetch`).
    - ``allow_paths``: read ``str``/``os.PathLike`` sources as local files. The integrations
      (``@guard.check``, LangChain runnables) turn it off for content users send, unless the app
      opts in; the Python API keeps it on (the caller is the app).
    - ``max_frames``: frames of an animated image, all checked (tiled into one picture); more
      raise :class:`~guardrail.errors.ImageTooLargeError`.
    - ``max_messages``: turns of a conversation given as ``messages=``.

    Video and audio (:mod:`guardrail.media`; each violation a
    :class:`~guardrail.errors.MediaTooLargeError`):

    - ``max_videos`` / ``max_audios``: clips per request.
    - ``max_video_bytes`` / ``max_audio_bytes``: size of one encoded clip.
    - ``max_video_seconds``: length of a clip, counted from its packets before decoding (a
      header that disagrees with them is refused).
    - ``max_video_source_frames``: frames in the clip (likewise counted before decoding).
    - ``max_video_frame_pixels``: width x height of the clip's frames (from the codec header
      first, then every decoded frame).
    - ``max_video_frames``: frames shown to the model after sampling (the profile's sampling
      takes at most this many; not an error).
    - ``max_audio_seconds``: length of an audio clip (300 s: Qwen2.5-Omni's feature extractor
      pads or cuts to that window).
    """

    max_images: int = 8
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 25_000_000
    max_request_pixels: int = 50_000_000
    max_text_chars: int = 200_000
    allow_remote_images: bool = False
    remote_timeout_s: float = 10.0
    remote_allowed_networks: tuple[str, ...] = ()
    allow_paths: bool = True
    max_frames: int = 16
    max_messages: int = 256
    max_videos: int = 2
    max_audios: int = 2
    max_video_bytes: int = 200 * 1024 * 1024
    max_video_seconds: float = 600.0
    max_video_source_frames: int = 36_000
    max_video_frame_pixels: int = 3840 * 2160
    max_video_frames: int = 128
    max_audio_bytes: int = 50 * 1024 * 1024
    max_audio_seconds: float = 300.0


_SURROGATE = re.compile("[\ud800-\udfff]")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.DOTALL)


def normalize_input(
    prompt: Any = None,
    response: Any = None,
    images: Any = None,
    *,
    limits: InputLimits | None = None,
    videos: Any = None,
    audios: Any = None,
    sampling: Any = None,
) -> ModerationInput:
    """Validate one request and decode its images, videos and audio clips.

    Raises :class:`~guardrail.errors.InputError` (or a subclass) for an empty request, a
    non-string text, too many images, or any unusable image or clip. ``sampling``: the
    profile's :class:`~guardrail.media.VideoSampling` (default: GuardReasoner-Omni's).
    """
    limits = limits or InputLimits()
    prompt = _check_text("prompt", prompt, limits)
    response = _check_text("response", response, limits)
    image_list = _as_image_list(images)
    if len(image_list) > limits.max_images:
        raise TooManyImagesError(f"{len(image_list)} images given; the limit is {limits.max_images}")
    decoded, budget = [], limits.max_request_pixels
    for i, img in enumerate(image_list):
        image = load_image(img, limits=limits, index=i, pixel_budget=budget)
        budget -= image.width * image.height
        decoded.append(image)
    decoded = tuple(decoded)
    clips, sounds = _media(videos, audios, limits, sampling)
    if prompt is None and response is None and not decoded and not clips and not sounds:
        raise InputError("nothing to moderate: give a prompt, a response, images, videos or audio")
    if prompt is not None and not prompt.strip() and not (decoded or clips or sounds) and response is None:
        raise InputError("the prompt is empty")
    return ModerationInput(prompt=prompt, response=response, images=decoded, videos=clips, audios=sounds)


def _media(
    videos: Any, audios: Any, limits: InputLimits, sampling: Any
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Decoded videos and audio clips (:mod:`guardrail.media`, imported only when given)."""
    if videos is None and audios is None:
        return (), ()
    from guardrail.media import load_audio, load_video
    from guardrail.media.video import Frames

    video_list = _as_media_list(videos, "videos", (Frames,))
    audio_list = _as_media_list(audios, "audios", (tuple,))
    if len(video_list) > limits.max_videos:
        raise MediaTooLargeError(f"{len(video_list)} videos given; the limit is {limits.max_videos}")
    if len(audio_list) > limits.max_audios:
        raise MediaTooLargeError(f"{len(audio_list)} audio clips given; the limit is {limits.max_audios}")
    clips = tuple(load_video(v, limits=limits, sampling=sampling, index=i) for i, v in enumerate(video_list))
    sounds = tuple(load_audio(a, limits=limits, index=i) for i, a in enumerate(audio_list))
    return clips, sounds


def _as_media_list(value: Any, name: str, single: tuple[type, ...]) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, bytearray, memoryview, os.PathLike, Mapping, *single)):
        return [value]
    if hasattr(value, "shape"):  # one array: its rate is needed, load_* says so
        return [value]
    if isinstance(value, Iterable):
        return list(value)
    raise InputError(f"{name} must be a clip or a list of clips, not {type(value).__name__}")


@dataclass(frozen=True)
class Prepared:
    """One validated request and its rendered prompt: what a check hands the backend."""

    item: ModerationInput
    prompt: RenderedPrompt


_ITEM_KEYS = frozenset({"prompt", "response", "images", "videos", "audios", "messages", "policy"})


def prepare(
    profile: Profile,
    item: Mapping[str, Any] | ModerationInput,
    limits: InputLimits,
    policy: Policy | None = None,
) -> Prepared:
    """Validate one request and render it with ``profile`` (raises
    :class:`~guardrail.errors.InputError`; a policy the profile cannot take raises
    :class:`~guardrail.policies.PolicyError`).

    ``item`` is a mapping with ``prompt``/``response``/``images``, or with ``messages`` (a
    conversation, see :mod:`guardrail.conversation`), and optionally ``policy`` (overrides
    ``policy``, the guard's). The policy in effect (given, else the profile's default) is
    stored in the item, so it is part of the cache key and decides the verdict's ``allowed``.
    """
    if not isinstance(item, ModerationInput):
        if not isinstance(item, Mapping):
            raise InputError(
                f"a batch item must be a dict with prompt/response/images or messages, not {type(item).__name__}"
            )
        unknown = set(item) - _ITEM_KEYS
        if unknown:
            raise InputError(f"unknown keys in request: {', '.join(sorted(map(str, unknown)))}")
        if item.get("policy") is not None:
            policy = resolve_policy(item["policy"])
        if item.get("messages") is not None:
            given = [k for k in ("prompt", "response", "images", "videos", "audios") if item.get(k) not in (None, [], ())]
            if given:
                raise InputError(f"give either messages or {'/'.join(given)}, not both")
            item = conversation_input(profile, item["messages"], limits)
        else:
            for key, ok in (("videos", profile.supports_video), ("audios", profile.supports_audio)):
                if item.get(key) is not None and not ok:  # refused before anything is decoded
                    raise InputError(f"the '{profile.name}' profile takes no {key[:-1]}; this request has {key}")
            item = normalize_input(
                item.get("prompt"), item.get("response"), item.get("images"), limits=limits,
                videos=item.get("videos"), audios=item.get("audios"), sampling=profile.video_sampling,
            )  # fmt: skip
    elif item.policy is not None:
        policy = item.policy
    if item.images and not profile.supports_images:
        raise InputError(f"the '{profile.name}' profile is text-only; this request has images")
    if item.videos and not profile.supports_video:
        raise InputError(f"the '{profile.name}' profile takes no video; this request has videos")
    if item.audios and not profile.supports_audio:
        raise InputError(f"the '{profile.name}' profile takes no audio; this request has audio")
    item = replace(item, policy=effective_policy(profile, policy))
    prompt = profile.render(item)
    if not prompt.prefix:  # the hint for prefix caching (backends/prefix_cache.py)
        prompt = dataclasses.replace(prompt, prefix=profile.fixed_prefix())
    return Prepared(item=item, prompt=prompt)


def conversation_input(profile: Profile, messages: Any, limits: InputLimits) -> ModerationInput:
    """A conversation as ``profile`` checks it: the turns are validated, the profile picks what
    its model sees (:meth:`~guardrail.profiles.Profile.conversation_view`), and only the images
    it shows are decoded and counted against the limits."""
    turns = parse_messages(messages, max_messages=limits.max_messages, max_text_chars=limits.max_text_chars)
    return conversation_turns_input(profile, turns, limits)


def conversation_turns_input(profile: Profile, turns: Sequence[Any], limits: InputLimits) -> ModerationInput:
    """:func:`conversation_input` for turns already validated (:class:`guardrail.conversation.Message`).
    A video or audio part in any turn is refused when the profile takes none (never passed unseen)."""
    for kind, ok in (("videos", profile.supports_video), ("audios", profile.supports_audio)):
        if not ok and any(getattr(t, kind, ()) for t in turns):
            raise InputError(f"the '{profile.name}' profile takes no {kind[:-1]}; the messages have {kind}")
    view = profile.conversation_view(turns)
    item = normalize_input(
        view.prompt, view.response, list(view.images), limits=limits,
        videos=list(view.videos) or None, audios=list(view.audios) or None, sampling=profile.video_sampling,
    )  # fmt: skip
    return replace(item, conversation=view.turns, response_only=view.response_only)


def check_batch(items: Sequence[Any]) -> None:
    """Raise :class:`~guardrail.errors.InputError` unless ``items`` is a list of requests."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise InputError("moderate_batch takes a list of dicts with prompt/response/images")


def _check_text(name: str, value: Any, limits: InputLimits) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{name} is not valid UTF-8 text: {exc}") from None
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, not {type(value).__name__}")
    if len(value) > limits.max_text_chars:
        raise TextTooLongError(f"{name} has {len(value)} characters; the limit is {limits.max_text_chars}")
    if _SURROGATE.search(value):
        # Lone surrogates (e.g. from a JSON "\ud800" escape) are not text and tokenizers refuse
        # them: replace each with U+FFFD, which keeps every other character where it was.
        value = _SURROGATE.sub("\ufffd", value)
    return value


def _as_image_list(images: Any) -> list[Any]:
    if images is None:
        return []
    if isinstance(images, (str, bytes, bytearray, os.PathLike, Mapping)) or _is_pil(images):
        return [images]
    if isinstance(images, Iterable):
        return list(images)
    raise InputError(f"images must be an image or a list of images, not {type(images).__name__}")


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a core dependency
        return False
    return isinstance(obj, Image.Image)


def load_image(
    source: Any, *, limits: InputLimits | None = None, index: int = 0, pixel_budget: int | None = None
) -> Any:
    """Decode one image from any accepted source into an RGB ``PIL.Image``.

    ``pixel_budget`` is what is left of the request's ``max_request_pixels``.
    Raises :class:`~guardrail.errors.ImageError` or :class:`~guardrail.errors.ImageTooLargeError`.
    """
    from PIL import Image

    limits = limits or InputLimits()
    where = f"image {index}"
    if isinstance(source, Image.Image):
        _check_pixels(source.size, limits, where, pixel_budget)
        return _to_rgb(source, where, limits)
    if isinstance(source, Mapping):
        url = source.get("url") if isinstance(source.get("url"), str) else None
        if url is None:
            raise ImageError(f"{where}: a dict image must have a 'url' string (OpenAI image_url form)")
        source = url
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(bytes(source), limits, where, pixel_budget)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, str):
        if source.startswith("data:"):
            data = _data_url_bytes(source, limits, where)
        elif source.startswith(("http://", "https://")):
            data = _fetch(source, limits, where)
        elif not limits.allow_paths:  # one message whatever the path: nothing is looked up
            raise ImageError(f"{where}: local file paths are not accepted here")
        else:
            data = _read_file(source, limits, where)
        return _decode(data, limits, where, pixel_budget)
    raise ImageError(f"{where}: unsupported image type {type(source).__name__}")


def header_pixels(data: bytes) -> int:
    """Width x height read from an encoded image's header (nothing is decoded); 0 when the header
    cannot be read (decoding the image then reports why)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                return max(img.width, 0) * max(img.height, 0)
    except Exception:  # noqa: BLE001 - undecodable: load_image says why
        return 0


def data_url_bytes(url: str, limits: InputLimits, where: str = "image") -> bytes:
    """The bytes of a base64 ``data:image/...`` URL (``ImageError`` when it is not one)."""
    return _data_url_bytes(url, limits, where)


def _data_url_bytes(url: str, limits: InputLimits, where: str) -> bytes:
    m = _DATA_URL.match(url)
    if not m or ";base64" not in (m.group("params") or ""):
        raise ImageError(f"{where}: only base64 data URLs are supported (data:image/...;base64,...)")
    mime = (m.group("mime") or "").lower()
    if mime and not mime.startswith("image/"):
        raise ImageError(f"{where}: data URL type {mime!r} is not an image")
    data = m.group("data").strip()
    if len(data) * 3 // 4 > limits.max_image_bytes:
        raise ImageTooLargeError(f"{where}: data URL larger than {limits.max_image_bytes} bytes")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"{where}: data URL is not valid base64 ({exc})") from None


def _read_file(path: str, limits: InputLimits, where: str) -> bytes:
    try:
        size = os.path.getsize(path)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ImageError(
            f"{where}: cannot read file {path[:200]!r}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if size > limits.max_image_bytes:
        raise ImageTooLargeError(f"{where}: file is {size} bytes; the limit is {limits.max_image_bytes}")
    if not os.path.isfile(path):
        raise ImageError(f"{where}: {path[:200]!r} is not a regular file")
    try:
        with open(path, "rb") as fh:
            return fh.read(limits.max_image_bytes + 1)
    except OSError as exc:
        raise ImageError(f"{where}: cannot read file {path!r}: {exc.strerror or exc}") from None


def _fetch(url: str, limits: InputLimits, where: str) -> bytes:
    if not limits.allow_remote_images:
        raise ImageError(
            f"{where}: fetching image URLs is disabled (set InputLimits(allow_remote_images=True) to allow it)"
        )
    return fetch_image(url, limits, where)


def fetch_image(url: str, limits: InputLimits, where: str = "image") -> bytes:
    """Fetch an image URL with :mod:`guardrail.netfetch` under ``limits``. Every failure is one
    fixed :class:`~guardrail.errors.ImageError` message (the detail is logged at DEBUG), so
    whoever chose the URL learns nothing about the network behind the guard."""
    from guardrail.netfetch import FetchError, FetchPolicy, fetch

    policy = FetchPolicy(
        timeout_s=limits.remote_timeout_s,
        max_bytes=limits.max_image_bytes,
        allowed_networks=limits.remote_allowed_networks,
    )
    try:
        return fetch(url, policy)
    except FetchError as exc:
        log.debug("image fetch refused or failed: %s", redact_url(url), exc_info=exc)
        raise ImageError(f"{where}: {FETCH_FAILED}") from None


FETCH_FAILED = "the image URL could not be fetched (refused, unreachable, too large or too slow)"


def redact_url(url: str) -> str:
    """``url`` without credentials or query, for logs."""
    return re.sub(r"^([a-z]+://)[^/@]*@", r"\1***@", url.split("?", 1)[0], flags=re.IGNORECASE)[:300]


def _decode(data: bytes, limits: InputLimits, where: str, pixel_budget: int | None = None) -> Any:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(f"{where}: zero bytes")
    if len(data) > limits.max_image_bytes:
        raise ImageTooLargeError(f"{where}: {len(data)} bytes; the limit is {limits.max_image_bytes}")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit applies (PIL's bomb check would warn at another threshold), and
            # PIL's warnings about damaged metadata ("Corrupt EXIF data") are not the caller's
            # business: the image either decodes or raises ImageError below.
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            _check_pixels(img.size, limits, where, pixel_budget)  # header only: nothing decoded yet
            img.load()
            return _to_rgb(img, where, limits)
    except (ImageError, InputError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{where}: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{where}: not a recognised raster image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # PIL raises OSError for truncated data, SyntaxError/ValueError for broken headers.
        raise ImageError(f"{where}: cannot decode image ({exc})") from None


def _check_pixels(size: tuple[int, int], limits: InputLimits, where: str, budget: int | None = None) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"{where}: empty image ({w}x{h})")
    if w * h > limits.max_image_pixels:
        raise ImageTooLargeError(f"{where}: {w}x{h} pixels is over the limit of {limits.max_image_pixels}")
    if budget is not None and w * h > budget:
        raise ImageTooLargeError(
            f"{where}: {w}x{h} pixels takes the request's images over max_request_pixels "
            f"({limits.max_request_pixels})"
        )


def _to_rgb(img: Any, where: str, limits: InputLimits) -> Any:
    from guardrail._imageops import flatten

    try:
        return flatten(img, where=where, max_frames=limits.max_frames, max_pixels=limits.max_image_pixels)
    except ImageError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise ImageError(f"{where}: cannot convert image to RGB ({exc})") from None
