"""What a run of bytes is, from its first bytes (the file signature): an image the guard can
check, or audio, video, a document, an archive, text or unknown binary data, which it cannot.

Used by :mod:`guardrail.integrations.content` to classify bytes, file objects and uploads found in
a handler's arguments before anything is decoded: only images go on to the image decoder.
"""

from __future__ import annotations

import codecs

__all__ = [
    "AUDIO",
    "AUDIO_EXTENSIONS",
    "BINARY",
    "HEADER_BYTES",
    "IMAGE",
    "IMAGE_EXTENSIONS",
    "TEXT",
    "VIDEO",
    "VIDEO_EXTENSIONS",
    "describe",
    "sniff",
]

IMAGE, AUDIO, VIDEO, DOCUMENT, ARCHIVE, TEXT, BINARY, EMPTY = (
    "image",
    "audio",
    "video",
    "document",
    "archive",
    "text",
    "binary",
    "empty",
)
#: Bytes read from a file or upload to classify it (the longest signature checked is shorter).
HEADER_BYTES = 64
_TEXT_PROBE = 1024

IMAGE_EXTENSIONS = frozenset(
    {"png", "jpg", "jpeg", "jpe", "jfif", "gif", "webp", "bmp", "tif", "tiff", "ico", "heic", "heif"}
    | {"avif", "svg", "jp2", "psd"}
)
AUDIO_EXTENSIONS = frozenset(
    {"mp3", "wav", "oga", "opus", "flac", "m4a", "aac", "aiff", "aif", "wma", "mid", "midi", "amr"}
)
VIDEO_EXTENSIONS = frozenset(
    {"mp4", "m4v", "mov", "webm", "mkv", "avi", "wmv", "flv", "mpeg", "mpg", "3gp", "ogv", "ogg"}
)

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}


def sniff(data: bytes | bytearray | memoryview) -> tuple[str, str]:
    """``(category, format)`` of ``data``: the category is ``"image"``, ``"audio"``,
    ``"video"``, ``"document"``, ``"archive"``, ``"text"``, ``"binary"`` or ``"empty"``."""
    head = bytes(data[:HEADER_BYTES])
    if not head:
        return EMPTY, "empty"
    found = _image(head) or _audio_video(head) or _other(head)
    if found:
        return found
    if _is_text(bytes(data[:_TEXT_PROBE])):
        return TEXT, "text"
    return BINARY, "unknown binary data"


def describe(category: str, fmt: str) -> str:
    """``"audio (WAV)"``, ``"a PDF document"``, ``"unknown binary data"``: for error messages."""
    if category in (IMAGE, AUDIO, VIDEO):
        return f"{category} ({fmt})"
    if category in (DOCUMENT, ARCHIVE):
        return f"a {fmt} {category}"
    return fmt


def _image(head: bytes) -> tuple[str, str] | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return IMAGE, "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return IMAGE, "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return IMAGE, "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return IMAGE, "WebP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return IMAGE, "TIFF"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return IMAGE, "BMP"
    if head[:4] == b"\x00\x00\x01\x00" and len(head) >= 6 and head[4:6] != b"\x00\x00":
        return IMAGE, "ICO"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return IMAGE, "HEIF"
    if head[4:8] == b"ftyp" and head[8:12] in _AVIF_BRANDS:
        return IMAGE, "AVIF"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head[:4] == b"\xff\x4f\xff\x51":
        return IMAGE, "JPEG 2000"
    if head[:4] == b"8BPS":
        return IMAGE, "PSD"
    if head[:5] == b"<?xml" and b"<svg" in head or head[:4] == b"<svg":
        return IMAGE, "SVG"
    return None


def _audio_video(head: bytes) -> tuple[str, str] | None:
    if head[:4] == b"RIFF":
        kind = head[8:12]
        if kind == b"WAVE":
            return AUDIO, "WAV"
        if kind == b"AVI ":
            return VIDEO, "AVI"
    if head[4:8] == b"ftyp":
        return (AUDIO, "M4A") if head[8:12] in _AUDIO_BRANDS else (VIDEO, "MP4/QuickTime")
    if head[:3] == b"ID3" or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return AUDIO, "MP3"
    if head[:2] in (b"\xff\xf1", b"\xff\xf9"):
        return AUDIO, "AAC"
    if head[:4] == b"OggS":
        return AUDIO, "Ogg"
    if head[:4] == b"fLaC":
        return AUDIO, "FLAC"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return AUDIO, "AIFF"
    if head[:4] == b"MThd":
        return AUDIO, "MIDI"
    if head[:5] == b"#!AMR":
        return AUDIO, "AMR"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return VIDEO, "WebM/Matroska"
    if head[:3] == b"FLV":
        return VIDEO, "FLV"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return VIDEO, "MPEG"
    if head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":
        return VIDEO, "ASF/WMV"
    return None


def _other(head: bytes) -> tuple[str, str] | None:
    if head[:5] == b"%PDF-":
        return DOCUMENT, "PDF"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return ARCHIVE, "ZIP"
    if head[:2] == b"\x1f\x8b":
        return ARCHIVE, "gzip"
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return ARCHIVE, "7z"
    return None


def _is_text(probe: bytes) -> bool:
    """UTF-8 without control characters other than whitespace (a cut last character allowed)."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(probe, final=False)
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\n\r\f" for c in text)
