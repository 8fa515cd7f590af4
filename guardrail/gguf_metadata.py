"""GGUF metadata: the keys guardrail reads and writes, and the one reader for them.

The exporter writes the image processor's pixel bounds into the mmproj
(:mod:`guardrail.export._convert`, llama.cpp's own keys); the llama.cpp backend reads them back
with the projector's type and patch sizes (:func:`read_vision_projector`), and picks a profile
from the model's architecture. Reading needs the ``gguf`` package (``llamacpp`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guardrail._deps import require
from guardrail.errors import ConfigurationError, UnsupportedError

__all__ = [
    "ARCHITECTURE",
    "FILE_TYPE",
    "IMAGE_MAX_PIXELS",
    "IMAGE_MIN_PIXELS",
    "IMAGE_SIZE",
    "PATCH_SIZE",
    "PROJECTOR_TYPE",
    "SPATIAL_MERGE_SIZE",
    "VisionProjector",
    "architecture",
    "check_llama_cpp_runs",
    "read_gguf_metadata",
    "read_vision_projector",
]

# Language model
ARCHITECTURE = "general.architecture"
FILE_TYPE = "general.file_type"  # llama_ftype (see guardrail.export.gguf.QUANT_TYPES)
# Vision projector (mmproj)
PROJECTOR_TYPE = "clip.projector_type"
PATCH_SIZE = "clip.vision.patch_size"
SPATIAL_MERGE_SIZE = "clip.vision.spatial_merge_size"
IMAGE_MIN_PIXELS = "clip.vision.image_min_pixels"
IMAGE_MAX_PIXELS = "clip.vision.image_max_pixels"
IMAGE_SIZE = "clip.vision.image_size"


def read_gguf_metadata(path: str | os.PathLike[str], prefix: str = "") -> dict[str, Any]:
    """Scalar and string metadata of a GGUF file (arrays skipped), keys starting with ``prefix``.

    Uses the ``gguf`` package (``llamacpp`` extra); reads the header only.
    """
    gguf = require("gguf", extra="llamacpp")
    try:
        reader = gguf.GGUFReader(os.fspath(path), "r")
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path} is not a readable GGUF file: {exc}") from exc
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if not key.startswith(prefix) or not field.types:
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            continue
        try:
            out[key] = field.contents()
        except Exception:  # noqa: BLE001 - an odd field must not stop a metadata read
            continue
    return out


@dataclass(frozen=True)
class VisionProjector:
    """What an mmproj file says about image sizes: its projector type, the vision tower's patch
    and merge sizes (Qwen-VL's defaults, 14 and 2, when absent), and the image pixel bounds the
    exporter wrote (None when absent)."""

    projector_type: str
    patch_size: int = 14
    merge_size: int = 2
    min_pixels: int | None = None
    max_pixels: int | None = None
    #: the vision tower's square input side (``clip.vision.image_size``), None when absent
    image_size: int | None = None


def read_vision_projector(path: str | os.PathLike[str]) -> VisionProjector:
    """The :class:`VisionProjector` of the mmproj at ``path``."""
    meta = read_gguf_metadata(path, "clip.")
    return VisionProjector(
        projector_type=str(meta.get(PROJECTOR_TYPE, "")),
        patch_size=int(meta.get(PATCH_SIZE, 14)),
        merge_size=int(meta.get(SPATIAL_MERGE_SIZE, 2)),
        min_pixels=int(meta[IMAGE_MIN_PIXELS]) if meta.get(IMAGE_MIN_PIXELS) else None,
        max_pixels=int(meta[IMAGE_MAX_PIXELS]) if meta.get(IMAGE_MAX_PIXELS) else None,
        image_size=int(meta[IMAGE_SIZE]) if meta.get(IMAGE_SIZE) else None,
    )


def architecture(metadata: Mapping[str, Any] | None) -> str | None:
    """The ``general.architecture`` of a model's metadata (e.g. ``llama_cpp.Llama.metadata``)."""
    value = (metadata or {}).get(ARCHITECTURE)
    return str(value) if value else None


def check_llama_cpp_runs(metadata: Mapping[str, Any] | None) -> None:
    """Raise :class:`UnsupportedError` for a model that llama.cpp loads but would abort the
    process on at its first decode (a ``GGML_ASSERT``, which Python cannot catch).

    Llama 4 with chunked attention and fewer than 4 layers: llama.cpp builds the attention
    temperature input that only its NoPE layers (every 4th) read; with none, that input gets no
    buffer and the decode fails with ``tensor buffer not set``. Real Llama 4 models have 48
    layers; the project's tiny one has 4.
    """
    metadata = metadata or {}
    if architecture(metadata) != "llama4":
        return
    try:
        blocks = int(metadata.get("llama4.block_count", 4))
    except (TypeError, ValueError):
        return
    chunked = str(metadata.get("llama4.attention.sliding_window", "")).strip() not in ("0",)
    if blocks < 4 and chunked:
        raise UnsupportedError(
            f"this Llama 4 GGUF has {blocks} layer(s); llama.cpp needs at least 4 (one without RoPE) "
            "and would abort at the first decode ('tensor buffer not set'). Use the transformers "
            "backend for it, or a model with 4 or more layers"
        )
