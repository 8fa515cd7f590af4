"""Image content anywhere in a handler's arguments or a chain's input: nothing the guard cannot
see passes silently.

The request fields (:mod:`guardrail.integrations.fields`) give the text; every **other**
argument, field, dict value and list item is searched here, recursively (at most
:data:`MAX_DEPTH` levels and :data:`MAX_NODES` values; more raises), for content:

- **checked as images**: PIL images; ``bytes``/``bytearray``/``memoryview`` and binary file
  objects (``io.BytesIO``, an open file) whose first bytes are an image signature; upload objects
  (FastAPI/Starlette ``UploadFile``: read from ``.file``, or with ``await upload.read()`` in async
  handlers, and put back where they were; over ``InputLimits.max_image_bytes`` is refused from
  ``.size`` before reading); ``data:image/...`` URLs; base64 strings of an image; ``http(s)://``
  and ``file://`` URLs and local paths that end in an image extension, or that sit in a field
  whose name says image (:func:`~guardrail.integrations.fields.names_an_image`: ``photo``,
  ``image_url``, ``attachments``...). URLs are fetched only where ``allow_remote_images`` is on and
  paths read only where ``allow_paths`` is on; otherwise they raise ``ImageError``, as everywhere;
  chat messages found there give their images (:func:`~guardrail.integrations.extract.split_content`);
- **refused** with :class:`~guardrail.errors.UncheckableContentError` naming the argument: audio,
  video, documents, archives and unknown binary data (bytes, file objects, uploads, data URLs,
  base64 strings, URLs and paths with an audio/video extension); file objects and uploads holding
  anything but an image (text files too: they are content the guard would not see);
- **ignored**: numbers, other strings (they are not the request: name the field with ``extract=``
  to have its text checked), bytes holding UTF-8 text, framework objects.

Objects of unknown types are looked through one level: their public attributes are classified,
but containers and objects inside them are not searched (a FastAPI ``Request``, a database
session, a user record are not content). An explicit ``extract=`` (or ``key=`` for LangChain)
turns this search off: the app then says exactly where the request is.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import inspect
import os
import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guardrail.errors import ImageTooLargeError, InputError, UncheckableContentError
from guardrail.integrations import sniff
from guardrail.integrations.fields import names_an_image

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.inputs import InputLimits

__all__ = ["MAX_DEPTH", "MAX_NODES", "Pending", "amaterialize", "materialize", "scan", "scan_fields"]

#: Levels of nesting searched; deeper content raises UncheckableContentError.
MAX_DEPTH = 16
#: Values searched in one request; more raises UncheckableContentError.
MAX_NODES = 100_000

_FIX = "pass extract= to say what to check"
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,]*)?,", re.IGNORECASE)
_URL = re.compile(r"^(?P<scheme>https?|file)://\S+$", re.IGNORECASE)
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{64,}={0,2}")
_SPACE = re.compile(r"\s")
_PATH_START = re.compile(r"^(/|\./|\.\./|~[/\\]|[A-Za-z]:[\\/])")
_SCALARS = (int, float, complex, bool)


@dataclass(frozen=True)
class Pending:
    """A file object or upload found at ``where``: read (and classified) when the request's
    images are loaded, so that async handlers can read uploads asynchronously."""

    source: Any
    where: str


def scan(value: Any, where: str) -> list[Any]:
    """The image sources in ``value`` (see the module docstring), in order; raises
    :class:`~guardrail.errors.UncheckableContentError` for content it cannot check."""
    walker = _Walker()
    walker.visit(value, where, names_an_image(where.rsplit(".", 1)[-1]), 0)
    return walker.found


def scan_fields(value: Any, where: str, skip: Set[str]) -> list[Any]:
    """The image sources in the fields of ``value`` (a mapping or an object) other than ``skip``:
    the fields the request extraction has read already."""
    walker = _Walker()
    walker.fields(value, where, False, 0, skip=skip)
    return walker.found


def uncheckable(where: str, kind: str, detail: str = "") -> UncheckableContentError:
    return UncheckableContentError(
        f"{where} holds {kind}{detail}, which the guard cannot check (it checks text and images); "
        f"remove it from the request or {_FIX}",
        where=where,
        kind=kind,
    )


class _Walker:
    def __init__(self) -> None:
        self.found: list[Any] = []
        self.nodes = 0
        self.path: set[int] = set()  # containers being searched (cycles)

    # --------------------------------------------------------------------------- values
    def visit(self, v: Any, where: str, imagey: bool, depth: int, *, shallow: bool = False) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise UncheckableContentError(
                f"{where}: more than {MAX_NODES} values to search for images; {_FIX}", where=where
            )
        if depth > MAX_DEPTH:
            raise UncheckableContentError(
                f"{where}: nested deeper than {MAX_DEPTH} levels to search for images; {_FIX}", where=where
            )
        if v is None or isinstance(v, _SCALARS):
            return
        if isinstance(v, str):
            self.string(v, where, imagey, shallow)
        elif isinstance(v, (bytes, bytearray, memoryview)):
            self.blob(v, where)
        elif _is_pil(v):
            self.found.append(v)
        elif isinstance(v, os.PathLike):
            if not shallow:
                self.string(os.fspath(v), where, True, False)
        elif is_upload(v) or is_file(v):
            self.found.append(Pending(v, where))
        elif _is_image_array(v):
            from PIL import Image

            self.found.append(Image.fromarray(v))
        elif not shallow and not _opaque(v):
            if id(v) in self.path:
                return
            self.path.add(id(v))
            try:
                self.container(v, where, imagey, depth)
            finally:
                self.path.discard(id(v))

    def container(self, v: Any, where: str, imagey: bool, depth: int) -> None:
        from guardrail.integrations.extract import _is_message, split_content

        if _is_message(v):
            content = v.get("content") if isinstance(v, Mapping) else getattr(v, "content", None)
            self.found.extend(split_content(content, where=where)[1])
        elif isinstance(v, Mapping) or _declared_fields(v) is not None:
            self.fields(v, where, imagey, depth)
        elif isinstance(v, (Sequence, Set)):
            for i, item in enumerate(v):
                self.visit(item, f"{where}[{i}]", imagey, depth + 1)
        else:  # an object of unknown type: its public attributes, one level
            for name, item in _public_attributes(v):
                self.visit(item, f"{where}.{name}", imagey or names_an_image(name), depth + 1, shallow=True)

    def fields(self, v: Any, where: str, imagey: bool, depth: int, *, skip: Set[str] = frozenset()) -> None:
        if isinstance(v, Mapping):
            items: list[tuple[Any, Any]] = list(v.items())
        else:
            names = _declared_fields(v)
            if names is None:
                self.visit(v, where, imagey, depth)
                return
            items = [(n, getattr(v, n, None)) for n in names]
        for key, item in items:
            name = str(key)
            if name in skip:
                continue
            sub = f"{where}.{name}" if name.isidentifier() else f"{where}[{key!r}]"
            self.visit(item, sub, imagey or names_an_image(name), depth + 1)

    # ---------------------------------------------------------------------------- leaves
    def string(self, s: str, where: str, imagey: bool, shallow: bool) -> None:
        m = _DATA_URL.match(s)
        if m:
            mime = (m.group("mime") or "").lower()
            if mime and not mime.startswith("image/"):
                raise uncheckable(where, f"a data URL of type {mime}")
            self.found.append(s)
            return
        if shallow or not s or _SPACE.search(s):
            return
        if len(s) > 8192:  # too long for a URL or a path: maybe base64
            self.base64(s, where)
            return
        ext = _extension(s)
        if ext in sniff.AUDIO_EXTENSIONS | sniff.VIDEO_EXTENSIONS and (_URL.match(s) or _is_path(s)):
            kind = "audio" if ext in sniff.AUDIO_EXTENSIONS else "video"
            raise uncheckable(where, f"a link to {kind} (.{ext})")
        if _URL.match(s) or _is_path(s):
            if ext in sniff.IMAGE_EXTENSIONS or imagey:
                self.found.append(s)  # fetched/read under the limits, or refused there
            return
        self.base64(s, where)

    def base64(self, s: str, where: str) -> None:
        if len(s) < 64 or not _BASE64.fullmatch(s):
            return
        try:
            head = base64.b64decode(s[:88].replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            return
        category, fmt = sniff.sniff(head)
        if category == sniff.IMAGE:
            data = s.replace("-", "+").replace("_", "/")
            self.found.append(f"data:image/{fmt.lower()};base64,{data}")
        elif category in (sniff.AUDIO, sniff.VIDEO, sniff.DOCUMENT, sniff.ARCHIVE):
            raise uncheckable(where, sniff.describe(category, fmt), " (base64)")

    def blob(self, data: bytes | bytearray | memoryview, where: str) -> None:
        category, fmt = sniff.sniff(data)
        if category == sniff.IMAGE:
            self.found.append(bytes(data))
        elif category not in (sniff.TEXT, sniff.EMPTY):
            raise uncheckable(where, sniff.describe(category, fmt))


# ----------------------------------------------------------------------------- reading
def is_upload(v: Any) -> bool:
    """An upload object (Starlette/FastAPI ``UploadFile`` and look-alikes): ``.filename`` and a
    file object in ``.file``."""
    return hasattr(v, "filename") and is_file(getattr(v, "file", None))


def is_file(v: Any) -> bool:
    """A file object (``read`` and ``seek``), not a string or bytes."""
    return (
        v is not None
        and not isinstance(v, (str, bytes, bytearray, type))
        and callable(getattr(v, "read", None))
        and callable(getattr(v, "seek", None))
    )


def materialize(images: Sequence[Any], limits: InputLimits) -> tuple[Any, ...]:
    """``images`` with file objects and uploads read (their images as bytes, the files put back
    where they were); raises UncheckableContentError for anything but an image."""
    return tuple(_read_sync(img, i, limits) for i, img in enumerate(images))


async def amaterialize(images: Sequence[Any], limits: InputLimits) -> tuple[Any, ...]:
    """:func:`materialize` for async handlers: uploads are read with their async ``read``."""
    out = []
    for i, img in enumerate(images):
        source, where = (img.source, img.where) if isinstance(img, Pending) else (img, f"image {i}")
        if is_upload(source) and inspect.iscoroutinefunction(getattr(source, "read", None)):
            out.append(await _read_upload_async(source, where, limits))
        elif is_upload(source) or is_file(source):
            out.append(await asyncio.to_thread(_read_sync, img, i, limits))
        else:
            out.append(source)
    return tuple(out)


def _read_sync(img: Any, index: int, limits: InputLimits) -> Any:
    source, where = (img.source, img.where) if isinstance(img, Pending) else (img, f"image {index}")
    if is_upload(source):
        _check_size(source, where, limits)
        return _read_file(source.file, where, limits)
    if is_file(source):
        return _read_file(source, where, limits)
    return source


def _check_size(upload: Any, where: str, limits: InputLimits) -> None:
    size = getattr(upload, "size", None)
    if isinstance(size, int) and size > limits.max_image_bytes:
        raise ImageTooLargeError(f"{where}: upload is {size} bytes; the limit is {limits.max_image_bytes}")


def _classify(head: Any, where: str) -> None:
    if isinstance(head, str):
        raise uncheckable(where, "a text file")
    category, fmt = sniff.sniff(head)
    if category != sniff.IMAGE:
        what = "an empty file" if category == sniff.EMPTY else sniff.describe(category, fmt)
        raise uncheckable(where, what)


def _finish(head: bytes, rest: bytes, where: str, limits: InputLimits) -> bytes:
    data = head + rest
    if len(data) > limits.max_image_bytes:
        raise ImageTooLargeError(f"{where}: more than {limits.max_image_bytes} bytes (the image limit)")
    return data


def _read_file(f: Any, where: str, limits: InputLimits) -> bytes:
    try:
        if not f.seekable():
            raise uncheckable(where, "a stream that cannot be read back after checking")
    except AttributeError:
        pass
    try:
        pos = f.tell()
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"{where}: cannot read the file object ({exc})") from None
    try:
        head = f.read(sniff.HEADER_BYTES)
        _classify(head, where)
        return _finish(head, f.read(limits.max_image_bytes + 1 - len(head)), where, limits)
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"{where}: cannot read the file object ({exc})") from None
    finally:
        f.seek(pos)


async def _read_upload_async(upload: Any, where: str, limits: InputLimits) -> bytes:
    _check_size(upload, where, limits)
    try:
        pos = upload.file.tell()
    except (OSError, ValueError, AttributeError):
        pos = 0
    try:
        head = await upload.read(sniff.HEADER_BYTES)
        _classify(head, where)
        return _finish(head, await upload.read(limits.max_image_bytes + 1 - len(head)), where, limits)
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"{where}: cannot read the upload ({exc})") from None
    finally:
        await upload.seek(pos)


# ------------------------------------------------------------------------------ helpers
def _is_pil(v: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a core dependency
        return False
    return isinstance(v, Image.Image)


def _is_image_array(v: Any) -> bool:
    """A numpy uint8 array shaped like a picture (H x W, or H x W x 1/3/4)."""
    shape, dtype = getattr(v, "shape", None), getattr(v, "dtype", None)
    if not hasattr(v, "__array_interface__") or not isinstance(shape, tuple) or str(dtype) != "uint8":
        return False
    return len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))


def _opaque(v: Any) -> bool:
    """Values never searched: types, functions, modules, coroutines, iterators (searching would
    consume them), framework objects (requests, responses, background tasks)."""
    if isinstance(v, type) or inspect.ismodule(v) or inspect.isroutine(v) or inspect.isawaitable(v):
        return True
    if inspect.isgenerator(v) or inspect.isasyncgen(v) or hasattr(v, "__next__"):
        return True
    module = type(v).__module__ or ""
    return module.split(".", 1)[0] in ("starlette", "fastapi", "enum", "datetime", "decimal", "uuid")


def _declared_fields(v: Any) -> list[str] | None:
    """The field names of a pydantic model or dataclass instance; None for other values."""
    cls = type(v)
    model_fields = getattr(cls, "model_fields", None)
    if isinstance(model_fields, Mapping) and hasattr(v, "model_dump"):
        extra = getattr(v, "model_extra", None) or {}
        return [*model_fields, *extra]
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return [f.name for f in dataclasses.fields(v)]
    return None


def _public_attributes(v: Any) -> list[tuple[str, Any]]:
    try:
        attrs = dict(vars(v))
    except TypeError:
        attrs = {}
    for name in getattr(type(v), "__slots__", ()) or ():
        if isinstance(name, str) and hasattr(v, name):
            attrs.setdefault(name, getattr(v, name))
    return [(k, x) for k, x in attrs.items() if isinstance(k, str) and not k.startswith("_")]


def _extension(s: str) -> str:
    path = s.split("?", 1)[0].split("#", 1)[0]
    tail = path.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    return tail.rsplit(".", 1)[-1].lower() if "." in tail else ""


def _is_path(s: str) -> bool:
    """A string that reads as a local path: it starts like one, or has a directory and an
    extension (``uploads/cat.png``); ``image/png`` (a media type) does not."""
    if _PATH_START.match(s):
        return True
    return ("/" in s or "\\" in s) and bool(_extension(s))
