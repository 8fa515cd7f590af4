"""Images for the llama.cpp backend: the mmproj (llama.cpp's multimodal "mtmd" context),
Qwen2.5-VL image resizing, and images turned into mtmd chunks and evaluated.

Images are resized here exactly as the reference Qwen2.5-VL processor does
(:func:`qwen_smart_resize`, bicubic), so llama.cpp's own resizer is never used; Gemma 3's
(ShieldGemma 2's) square images are resized as ``Gemma3ImageProcessor`` does (bilinear, to
the tower's ``image_size``); see ``docs/backends/llamacpp.md``.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail._deps import require
from guardrail.backends.llamacpp_decode import Cancelled
from guardrail.errors import BackendError, ConfigurationError
from guardrail.gguf_metadata import read_vision_projector

__all__ = [
    "QWEN25VL_MAX_PIXELS",
    "QWEN25VL_MIN_PIXELS",
    "EncodedImage",
    "ImageTokens",
    "VisionContext",
    "qwen_smart_resize",
]

_EXTRA = "llamacpp"
log = logging.getLogger("guardrail.llamacpp")

# Projectors whose images we resize like Qwen2-VL/2.5-VL's processor, and that processor's
# default bounds (preprocessor_config.json of Qwen2.5-VL-*-Instruct: 4 to 16384 image tokens).
_QWEN_PROJECTORS = ("qwen2vl_merger", "qwen2.5vl_merger")
# Projectors whose images we resize to the tower's square side, bilinear, as Gemma 3's processor
# does (llama.cpp's own bilinear resize gives different pixels: scores off by ~1e-2 on a tiny model).
_SQUARE_BILINEAR_PROJECTORS = ("gemma3",)
QWEN25VL_MIN_PIXELS = 56 * 56
QWEN25VL_MAX_PIXELS = 28 * 28 * 16384
#: On a CPU, an image of more image tokens than this is logged once per backend as a warning:
#: the vision tower's cost grows faster than its token count (a full-size 3B guard: 7.5 s for
#: 256 tokens, about 70 s for 999). The reference bounds stay the default (the same input as
#: the reference processor); ``image_max_pixels=256 * 28 * 28`` caps it.
CPU_IMAGE_TOKENS_WARN = 256


@dataclass(frozen=True)
class ImageTokens:
    """How one image enters the model: ``n_tokens`` embeddings taking ``n_pos`` positions,
    from the image resized to ``width`` x ``height``."""

    index: int
    n_tokens: int
    n_pos: int
    width: int
    height: int


@dataclass
class EncodedImage:
    """One preprocessed image and its mtmd chunks (free them with :meth:`VisionContext.free`)."""

    info: ImageTokens
    chunks: Any  # mtmd_input_chunks_p: [<|vision_start|>] [image] [<|vision_end|>]


class VisionContext:
    """The mmproj at ``path`` loaded for ``llama``'s model.

    ``min_pixels`` / ``max_pixels`` bound the resized image (default: the mmproj file's values,
    written by ``guardrail export gguf``, else Qwen2.5-VL's processor defaults); other
    projectors than Qwen-VL's take no bounds.
    """

    def __init__(
        self, llama: Any, path: str, *, min_pixels: int | None = None, max_pixels: int | None = None,
        verbose: bool = False, model_name: str | None = None,
    ):  # fmt: skip
        self._llama_cpp = require("llama_cpp", extra=_EXTRA, package="llama-cpp-python")
        mtmd = require("llama_cpp.mtmd_cpp", extra=_EXTRA, package="llama-cpp-python", feature="images")
        if not os.path.isfile(path):
            raise ConfigurationError(f"no mmproj file at {path}")
        projector = read_vision_projector(path)
        #: (factor, min_pixels, max_pixels) of the Qwen resize rule, or None (llama.cpp resizes)
        self.resize: tuple[int, int, int] | None = None
        if projector.projector_type in _QWEN_PROJECTORS:
            factor = projector.patch_size * projector.merge_size
            lo = int(min_pixels or projector.min_pixels or QWEN25VL_MIN_PIXELS)
            hi = int(max_pixels or projector.max_pixels or QWEN25VL_MAX_PIXELS)
            if not 0 < lo <= hi:
                raise ConfigurationError(f"bad image pixel bounds: min {lo}, max {hi}")
            self.resize = (factor, lo, hi)
        elif min_pixels or max_pixels:
            raise ConfigurationError(
                f"image pixel bounds are supported for Qwen-VL projectors, not {projector.projector_type!r}"
            )
        #: the square side images are resized to (bilinear) before llama.cpp, or None
        self.square: int | None = None
        if projector.projector_type in _SQUARE_BILINEAR_PROJECTORS and projector.image_size:
            self.square = projector.image_size
        _install_mtmd_log(mtmd)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = bool(getattr(getattr(llama, "model_params", None), "n_gpu_layers", 0))
        params.print_timings = verbose
        params.n_threads = int(getattr(llama, "n_threads", 0) or os.cpu_count() or 1)
        params.warmup = False  # a warm-up image of the largest size costs seconds on a CPU
        params.flash_attn_type = self._llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        if self.resize is not None:
            factor, lo, hi = self.resize
            # llama.cpp re-checks the size against its own bounds: make ours pass unchanged
            params.image_min_tokens = max(1, lo // (factor * factor))
            params.image_max_tokens = max(1, math.ceil(hi / (factor * factor)))
        ctx = mtmd.mtmd_init_from_file(path.encode(), llama.model, params)
        if not ctx:
            raise BackendError(f"cannot load mmproj {path} for model {model_name}", retryable=False)
        if not mtmd.mtmd_support_vision(ctx):
            mtmd.mtmd_free(ctx)
            raise ConfigurationError(f"{path} has no vision encoder")
        self.mtmd, self.ctx = mtmd, ctx
        self._on_cpu = not params.use_gpu
        self._warned = False

    def encode(self, image: Any, index: int) -> EncodedImage:
        """Resize image number ``index`` (a PIL image) and preprocess it into mtmd chunks."""
        mtmd = self.mtmd
        image = image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image
        if self.resize is not None:
            factor, lo, hi = self.resize
            height, width = qwen_smart_resize(image.height, image.width, factor, lo, hi)
            if (width, height) != image.size:
                from PIL import Image

                image = image.resize((width, height), Image.Resampling.BICUBIC)
        elif self.square is not None and image.size != (self.square, self.square):
            from PIL import Image

            image = image.resize((self.square, self.square), Image.Resampling.BILINEAR)
        data = image.tobytes()
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bitmap = mtmd.mtmd_bitmap_init(image.width, image.height, buf)
        if not bitmap:
            raise BackendError(f"llama.cpp could not take image {index}", retryable=False)
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            part = mtmd.mtmd_input_part(text=None, bitmap=bitmap)
            parts = (ctypes.POINTER(mtmd.mtmd_input_part) * 1)(ctypes.pointer(part))
            rc = mtmd.mtmd_tokenize_from_parts(self.ctx, chunks, parts, 1, False)
        finally:
            mtmd.mtmd_bitmap_free(bitmap)
        if rc != 0:
            mtmd.mtmd_input_chunks_free(chunks)
            raise BackendError(f"llama.cpp could not preprocess image {index} (error {rc})", retryable=False)
        n_tokens = n_pos = 0
        for chunk in self._chunks(chunks, text=False):
            n_tokens += int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
            n_pos += int(mtmd.mtmd_input_chunk_get_n_pos(chunk))
        info = ImageTokens(
            index=index, n_tokens=n_tokens, n_pos=n_pos, width=image.width, height=image.height
        )
        if self._on_cpu and n_tokens > CPU_IMAGE_TOKENS_WARN and not self._warned:
            self._warned = True
            log.warning(
                "an image takes %d image tokens (%dx%d) on a CPU: its vision encoding alone may take "
                "a minute for a 3B guard; image_max_pixels=%d caps images at %d tokens "
                "(docs/backends/llamacpp.md). Logged once.",
                n_tokens, image.width, image.height, CPU_IMAGE_TOKENS_WARN * 28 * 28, CPU_IMAGE_TOKENS_WARN,
            )  # fmt: skip
        return EncodedImage(info=info, chunks=chunks)

    def parts(self, image: EncodedImage) -> Iterator[tuple[str, Any]]:
        """(``"tokens"``, ids) for mtmd's text chunks (the vision start/end tokens) and
        (``"image"``, image) once, where its embeddings go."""
        mtmd = self.mtmd
        placed = False
        for i in range(mtmd.mtmd_input_chunks_size(image.chunks)):
            chunk = mtmd.mtmd_input_chunks_get(image.chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                yield "tokens", [int(ptr[j]) for j in range(n.value)]
            elif not placed:
                placed = True
                yield "image", image

    def evaluate(
        self, image: EncodedImage, llama_ctx: Any, pos: int, n_batch: int, cancelled: Callable[[], bool]
    ) -> int:
        """Evaluate the image's embeddings from position ``pos`` (with Qwen2.5-VL's 3-D
        positions, by llama.cpp's mtmd helper); return the next text position."""
        mtmd, lc = self.mtmd, self._llama_cpp
        for chunk in self._chunks(image.chunks, text=False):
            # its vision start/end tokens are in the neighbouring token runs
            new_pos = lc.llama_pos(0)
            rc = mtmd.mtmd_helper_eval_chunk_single(
                self.ctx, llama_ctx, chunk, pos, 0, n_batch, False, ctypes.byref(new_pos)
            )
            if rc != 0:
                if cancelled():
                    raise Cancelled
                raise BackendError(
                    f"llama.cpp failed on image {image.info.index} (code {rc})", retryable=False
                )
            pos = int(new_pos.value)
        return pos

    def _chunks(self, chunks: Any, *, text: bool) -> Iterator[Any]:
        mtmd = self.mtmd
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if (mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT) == text:
                yield chunk

    def free(self, parts: Sequence[Any]) -> None:
        """Free the chunks of the encoded images among ``parts``."""
        for p in parts:
            if isinstance(p, EncodedImage) and p.chunks:
                self.mtmd.mtmd_input_chunks_free(p.chunks)
                p.chunks = None

    def close(self) -> None:
        if self.ctx is not None:
            self.mtmd.mtmd_free(self.ctx)
            self.ctx = None


def qwen_smart_resize(
    height: int, width: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """Qwen2-VL's image size rule (transformers ``smart_resize``): both sides multiples of
    ``factor``, area within bounds, aspect ratio kept. Python's rounding (half to even) is part
    of the rule: llama.cpp's C++ rounding differs at exact halves.

    >>> qwen_smart_resize(48, 64, 28, 784, 12544)
    (56, 56)
    """
    if max(height, width) / min(height, width) > 200:
        raise BackendError(f"image aspect ratio {width}x{height} is over 200", retryable=False)
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


_MTMD_LOG: Any = None
_GGML_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}


def _install_mtmd_log(mtmd: Any) -> None:
    """Send llama.cpp's multimodal log to the ``guardrail.llamacpp`` logger (silent unless the
    app configures logging) instead of stderr."""
    global _MTMD_LOG
    if _MTMD_LOG is not None:
        return
    llama_cpp = require("llama_cpp", extra=_EXTRA, package="llama-cpp-python")
    last = [logging.DEBUG]

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, _user_data: Any) -> None:
        lvl = _GGML_LEVELS.get(level, last[0])  # 5 = continuation of the previous line
        last[0] = lvl
        if log.isEnabledFor(lvl):
            log.log(lvl, "%s", text.decode("utf-8", errors="replace").rstrip("\n"))

    mtmd.mtmd_log_set(callback, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(callback, ctypes.c_void_p(0))
    _MTMD_LOG = callback
