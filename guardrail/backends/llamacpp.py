"""llama.cpp backend (llama-cpp-python): on-device CPU moderation with GGUF guard models.

Install with ``pip install "guardrail-vl[llamacpp]"``. Load with
:meth:`guardrail.Guard.from_gguf` (its backend is ``guard.backend``), or wrap a
``llama_cpp.Llama`` the app already loaded (``LlamaCppBackend(llama, mmproj="mmproj.gguf")``).

How a prompt runs (one at a time, under a lock):

- The prompt is our own rendering (the profile's :class:`~guardrail.profiles.RenderedPrompt`,
  the same one the transformers backend gets); no chat template of llama-cpp-python is used.
  Text parts are tokenized as plain text (``<|im_end|>`` typed by a user stays text), template
  special tokens by name, and each image slot becomes llama.cpp's multimodal (mtmd) chunk:
  ``<|vision_start|>`` + the mmproj's image embeddings + ``<|vision_end|>``, right where the
  transformers backend puts its vision tokens.
- Images are resized here exactly as the reference Qwen2.5-VL image processor does (its
  ``smart_resize`` and bicubic resampling, bounds from the mmproj file or Qwen2.5-VL's
  defaults), so llama.cpp's own resizer (a different rounding and filter) is never used.
- Image embeddings get Qwen2.5-VL's 3-D (M-RoPE) positions from llama.cpp's mtmd helper, and
  text after an image continues at ``start + max(rows, cols)``, as in transformers.
- Decoding is greedy by default with the transformers backend's stop rules: end-of-turn tokens
  (``<|im_end|>``, ``<|endoftext|>``, Llama's ``<|eot_id|>``/``<|end_of_text|>``) end the
  output and count in ``output_tokens``; vision tokens are never generated; ``max_new_tokens``
  caps the output (``finish_reason="length"``); a full context also ends it with ``"length"``.
  ``temperature``/``top_p``/``seed`` sample (numpy RNG, reproducible with a seed). A stop
  string ends the output after the token that completes it; with the profile's
  ``answer_end`` check (the guard passes it) only one that ends the model's own answer does.

Fast mode (:meth:`LlamaCppBackend.score`): the prompt, with the forced answer, is evaluated
once; the candidate label lines form a token trie, and the trie is walked on the same context:
each run of tokens down to a branching point is evaluated in one call with the logits of every
token kept, then removed from the KV cache before the next branch. A candidate whose tokens all
hang off the prompt needs no extra call (the prompt's last logits give it).

Errors: a prompt longer than the context, an unusable image or a failed decode is returned as
that item's ``Generation.error`` (a :class:`~guardrail.errors.BackendError`; the guard's
``on_error`` policy decides the verdict); a closed backend raises
:class:`~guardrail.errors.BackendUnavailableError`.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guardrail import _deprecated
from guardrail._deps import require
from guardrail.backends.base import Backend, Generation, GenerationOptions, ScoreRequest, ScoreResult
from guardrail.backends.scoring import TokenTrie, build_trie
from guardrail.errors import BackendError, BackendTimeoutError, BackendUnavailableError, ConfigurationError
from guardrail.profiles.base import ImageSlot, RenderedPrompt, Special, merge_text

__all__ = ["EncodedPrompt", "ImageTokens", "LlamaCppBackend", "from_llamacpp"]

_EXTRA = "llamacpp"
log = logging.getLogger("guardrail.llamacpp")

# Same token names as the transformers backend: never generated / end of the output.
_VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>")
_IMAGE_MARKER = "<|image_pad|>"  # stands for an image's embeddings in EncodedPrompt.text

# GGUF general.architecture -> profile.
_ARCH_PROFILES = {"qwen2vl": "guardreasoner-vl", "llama": "guardreasoner"}
# Projectors whose images we resize like Qwen2-VL/2.5-VL's processor, and that processor's
# default bounds (preprocessor_config.json of Qwen2.5-VL-*-Instruct: 4 to 16384 image tokens).
_QWEN_PROJECTORS = ("qwen2vl_merger", "qwen2.5vl_merger")
QWEN25VL_MIN_PIXELS = 56 * 56
QWEN25VL_MAX_PIXELS = 28 * 28 * 16384
# Llama options that change speed or logging, not outputs: left out of the cache identity.
_NOT_IDENTITY = frozenset({"n_threads", "n_threads_batch", "verbose"})


@dataclass(frozen=True)
class ImageTokens:
    """How one image enters the model: ``n_tokens`` embeddings taking ``n_pos`` positions,
    from the image resized to ``width`` x ``height``."""

    index: int
    n_tokens: int
    n_pos: int
    width: int
    height: int


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt as llama.cpp sees it: runs of token ids and images, in order."""

    parts: tuple[tuple[int, ...] | ImageTokens, ...]
    text: str  # the tokens rendered back (special tokens included), each image as <|image_pad|>

    @property
    def n_tokens(self) -> int:
        return sum(p.n_tokens if isinstance(p, ImageTokens) else len(p) for p in self.parts)

    def token_ids(self, image_token_id: int) -> list[int]:
        """All ids, each image expanded to ``n_tokens`` copies of ``image_token_id`` (the layout
        of the transformers backend's ``input_ids``)."""
        ids: list[int] = []
        for p in self.parts:
            ids.extend([image_token_id] * p.n_tokens if isinstance(p, ImageTokens) else p)
        return ids


class _Cancelled(Exception):
    """The async caller went away: stop generating."""


@dataclass
class _Image:
    info: ImageTokens
    chunks: Any  # mtmd_input_chunks_p: [<|vision_start|>] [image] [<|vision_end|>]


class LlamaCppBackend(Backend):
    """Run a GGUF guard with llama.cpp. See the module docstring for what happens per prompt.

    ``llama`` is a ``llama_cpp.Llama``; ``mmproj`` the path of the vision projector GGUF
    (needed for images). ``image_min_pixels`` / ``image_max_pixels`` bound the resized image
    (default: the mmproj file's values, written by ``guardrail export gguf``, else Qwen2.5-VL's
    processor defaults); lowering ``image_max_pixels`` makes large images much cheaper on a CPU,
    at the price of a different input than the reference processor's.
    """

    name = "llamacpp"

    def __init__(
        self,
        llama: Any,
        mmproj: str | os.PathLike[str] | None = None,
        *,
        model_name: str | None = None,
        image_min_pixels: int | None = None,
        image_max_pixels: int | None = None,
        verbose: bool = False,
        close_llama: bool = False,
    ):
        self._llama_cpp = require("llama_cpp", extra=_EXTRA, package="llama-cpp-python")
        self._np = require("numpy", extra=_EXTRA)
        self.llama = llama
        self.model_name = model_name or getattr(llama, "model_path", None)
        self.verbose = verbose
        self._close_llama = close_llama
        self._lock = threading.Lock()
        self._closed = False
        lc = self._llama_cpp
        self._vocab = lc.llama_model_get_vocab(llama.model)
        self._n_vocab = int(llama.n_vocab())
        self._n_ctx = int(llama.n_ctx())
        self._n_batch = int(getattr(llama, "n_batch", 512))
        self._batch = lc.llama_batch_init(self._n_batch, 0, 1)
        self._special_cache: dict[str, int] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self._end_ids = sorted({i for i in self._token_ids(_END_TOKENS)} | self._model_end_ids())
        self._suppress = self._np.array(self._token_ids(_VISION_TOKENS), dtype=self._np.int64)
        self._greedy = self._greedy_sampler()  # llama.cpp's own: ban vision tokens, then argmax
        self._logit_buf = self._np.empty(self._n_vocab, dtype=self._np.float32)
        self._encode_text = functools.lru_cache(maxsize=256)(self._encode_text_uncached)
        self._cancel: threading.Event | None = None  # the running async call's, while its prompt is evaluated
        self._abort_cb = lc.ggml_abort_callback(
            lambda _data: self._cancel is not None and self._cancel.is_set()
        )
        self._mtmd: Any = None
        self._mctx: Any = None
        self.mmproj = os.fspath(mmproj) if mmproj is not None else None
        self._resize: tuple[int, int, int] | None = None  # (factor, min_pixels, max_pixels)
        self._loaded_from: dict[str, Any] | None = None  # what _load loaded (see identity)
        if self.mmproj is not None:
            self._init_mmproj(image_min_pixels, image_max_pixels)
        elif self.default_profile() == "guardreasoner-vl":
            log.warning("no mmproj given for %s: requests with images will fail", self.model_name)

    # ------------------------------------------------------------------------ loading
    @classmethod
    def from_gguf(cls, model_path: str | os.PathLike[str], *args: Any, **options: Any) -> LlamaCppBackend:
        """Deprecated: use ``Guard.from_gguf(model_path, mmproj, **options)`` (``guard.backend``)."""
        _deprecated.warn("LlamaCppBackend.from_gguf", "Guard.from_gguf(model_path, mmproj, ...).backend")
        return cls._load(model_path, *args, **options)

    @classmethod
    def _load(
        cls,
        model_path: str | os.PathLike[str],
        mmproj: str | os.PathLike[str] | None = None,
        *,
        n_threads: int | None = None,
        n_ctx: int = 8192,
        n_batch: int = 512,
        image_min_pixels: int | None = None,
        image_max_pixels: int | None = None,
        verbose: bool = False,
        **llama_kwargs: Any,
    ) -> LlamaCppBackend:
        """Load a GGUF guard (a ``.gguf`` file, or a directory holding one model GGUF and at
        most one ``mmproj*.gguf``, as ``guardrail export gguf`` writes them).

        ``n_threads``: CPU threads (default: llama-cpp-python's, half the cores). ``n_ctx``:
        context size in tokens: prompt (images included) plus the output must fit.
        ``n_batch``: prompt tokens per decode call. Other keywords go to ``llama_cpp.Llama``
        (``n_gpu_layers``, ``flash_attn``, ``type_k``, ``use_mmap``...).
        """
        llama_cpp = require("llama_cpp", extra=_EXTRA, package="llama-cpp-python")
        from guardrail.export.gguf import find_gguf_files

        files = find_gguf_files(model_path, mmproj)
        if n_ctx < 256:
            raise ConfigurationError(f"n_ctx={n_ctx} is too small for a guard prompt")
        if n_threads is not None and n_threads < 1:
            raise ConfigurationError("n_threads must be at least 1")
        kwargs = dict(
            n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch, n_threads=n_threads,
            n_threads_batch=n_threads, verbose=verbose,
        )  # fmt: skip
        kwargs.update(llama_kwargs)
        try:
            llama = llama_cpp.Llama(model_path=os.fspath(files.model), **kwargs)
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"cannot load GGUF model {files.model}: {exc}", retryable=False) from exc
        try:
            backend = cls(
                llama, files.mmproj, model_name=os.fspath(files.model), image_min_pixels=image_min_pixels,
                image_max_pixels=image_max_pixels, verbose=verbose, close_llama=True,
            )  # fmt: skip
        except BaseException:
            llama.close()
            raise
        backend._loaded_from = {
            "model": os.path.abspath(files.model),
            "mmproj": os.path.abspath(files.mmproj) if files.mmproj is not None else None,
            "image_pixels": list(backend._resize[1:]) if backend._resize else None,
            "options": sorted((k, repr(v)) for k, v in kwargs.items() if k not in _NOT_IDENTITY),
        }
        return backend

    def _init_mmproj(self, min_pixels: int | None, max_pixels: int | None) -> None:
        from guardrail.export.gguf import read_gguf_metadata

        mtmd = require("llama_cpp.mtmd_cpp", extra=_EXTRA, package="llama-cpp-python", feature="images")
        path = self.mmproj
        if not os.path.isfile(path):
            raise ConfigurationError(f"no mmproj file at {path}")
        meta = read_gguf_metadata(path, "clip.")
        projector = str(meta.get("clip.projector_type", ""))
        lo = hi = 0
        if projector in _QWEN_PROJECTORS:
            factor = int(meta.get("clip.vision.patch_size", 14)) * int(
                meta.get("clip.vision.spatial_merge_size", 2)
            )
            lo = int(min_pixels or meta.get("clip.vision.image_min_pixels") or QWEN25VL_MIN_PIXELS)
            hi = int(max_pixels or meta.get("clip.vision.image_max_pixels") or QWEN25VL_MAX_PIXELS)
            if not 0 < lo <= hi:
                raise ConfigurationError(f"bad image pixel bounds: min {lo}, max {hi}")
            self._resize = (factor, lo, hi)
        elif min_pixels or max_pixels:
            raise ConfigurationError(
                f"image pixel bounds are supported for Qwen-VL projectors, not {projector!r}"
            )
        _install_mtmd_log(mtmd)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = bool(getattr(getattr(self.llama, "model_params", None), "n_gpu_layers", 0))
        params.print_timings = self.verbose
        params.n_threads = int(getattr(self.llama, "n_threads", 0) or os.cpu_count() or 1)
        params.warmup = False  # a warm-up image of the largest size costs seconds on a CPU
        params.flash_attn_type = self._llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        if self._resize is not None:
            factor, lo, hi = self._resize
            # llama.cpp re-checks the size against its own bounds: make ours pass unchanged
            params.image_min_tokens = max(1, lo // (factor * factor))
            params.image_max_tokens = max(1, math.ceil(hi / (factor * factor)))
        ctx = mtmd.mtmd_init_from_file(path.encode(), self.llama.model, params)
        if not ctx:
            raise BackendError(f"cannot load mmproj {path} for model {self.model_name}", retryable=False)
        if not mtmd.mtmd_support_vision(ctx):
            mtmd.mtmd_free(ctx)
            raise ConfigurationError(f"{path} has no vision encoder")
        self._mtmd, self._mctx = mtmd, ctx

    def identity(self) -> dict[str, Any] | None:
        """The GGUF files, image bounds and ``llama_cpp.Llama`` options it was loaded with;
        ``None`` (this instance only) for a ``Llama`` object wrapped directly."""
        return self._loaded_from

    def default_profile(self) -> str | None:
        arch = (getattr(self.llama, "metadata", None) or {}).get("general.architecture")
        return _ARCH_PROFILES.get(arch or "")

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def supports_images(self) -> bool:
        return self._mctx is not None

    # ------------------------------------------------------------------------ encoding
    def _token_ids(self, names: Sequence[str]) -> list[int]:
        out = []
        for n in names:
            try:
                out.append(self._special_id(n))
            except ConfigurationError:
                pass
        return out

    def _model_end_ids(self) -> set[int]:
        lc = self._llama_cpp
        ids = {int(lc.llama_vocab_eos(self._vocab)), int(lc.llama_vocab_eot(self._vocab))}
        return {i for i in ids if 0 <= i < self._n_vocab}

    def _special_id(self, token: str) -> int:
        try:
            return self._special_cache[token]
        except KeyError:
            pass
        ids = self.llama.tokenize(token.encode("utf-8"), add_bos=False, special=True)
        if len(ids) != 1 or self._piece(ids[0], special=True) != token.encode("utf-8"):
            raise ConfigurationError(
                f"the model has no special token {token!r}: wrong profile for this model?"
            )
        self._special_cache[token] = ids[0]
        return ids[0]

    def _encode_text_uncached(self, text: str) -> tuple[int, ...]:
        return tuple(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _piece(self, token: int, *, special: bool) -> bytes:
        buf = self._piece_buf
        n = self._llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:  # a piece longer than the buffer
            buf = ctypes.create_string_buffer(-n)
            n = self._llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def _greedy_sampler(self) -> Any:
        lc = self._llama_cpp
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if self._suppress.size:
            bias = (lc.llama_logit_bias * int(self._suppress.size))()
            for i, token in enumerate(self._suppress.tolist()):
                bias[i].token, bias[i].bias = token, float("-inf")
            lc.llama_sampler_chain_add(
                chain, lc.llama_sampler_init_logit_bias(self._n_vocab, len(bias), bias)
            )
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        return chain

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        """Token ids back to text (special tokens rendered only when ``special``)."""
        return b"".join(self._piece(t, special=special) for t in tokens).decode("utf-8", errors="replace")

    def encode(self, prompt: RenderedPrompt) -> EncodedPrompt:
        """How ``prompt`` enters the model (for inspection and tests; images are preprocessed)."""
        with self._lock:
            self._check_open()
            parts = self._encode(prompt)
            try:
                return self._describe(parts)
            finally:
                self._free(parts)

    def _describe(self, parts: list[tuple[int, ...] | _Image]) -> EncodedPrompt:
        out: list[tuple[int, ...] | ImageTokens] = []
        text: list[str] = []
        for p in parts:
            if isinstance(p, _Image):
                out.append(p.info)
                text.append(_IMAGE_MARKER)
            else:
                out.append(p)
                text.append(self.detokenize(p, special=True))
        return EncodedPrompt(parts=tuple(out), text="".join(text))

    def _encode(self, prompt: RenderedPrompt) -> list[tuple[int, ...] | _Image]:
        """Token runs and images (with their mtmd chunks: free them with :meth:`_free`)."""
        parts: list[tuple[int, ...] | _Image] = []
        run: list[int] = []
        if prompt.add_bos:
            bos = int(self._llama_cpp.llama_vocab_bos(self._vocab))
            if bos >= 0:
                run.append(bos)
        try:
            for part in prompt.parts:
                if isinstance(part, str):
                    run.extend(self._encode_text(part))
                elif isinstance(part, Special):
                    run.append(self._special_id(part.token))
                elif isinstance(part, ImageSlot):
                    image = self._image(prompt.images[part.index], part.index)
                    for kind, value in self._image_parts(image):
                        if kind == "tokens":
                            run.extend(value)
                        else:
                            if run:
                                parts.append(tuple(run))
                                run = []
                            parts.append(value)
        except BaseException:
            self._free(parts)
            raise
        if run:
            parts.append(tuple(run))
        return parts

    def _image(self, image: Any, index: int) -> _Image:
        if self._mctx is None:
            raise BackendError(
                "this llama.cpp backend has no mmproj, so it cannot read images; "
                "load it with mmproj=PATH (guardrail export gguf writes mmproj-*.gguf)",
                retryable=False,
            )
        mtmd = self._mtmd
        image = image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image
        if self._resize is not None:
            factor, lo, hi = self._resize
            height, width = qwen_smart_resize(image.height, image.width, factor, lo, hi)
            if (width, height) != image.size:
                from PIL import Image

                image = image.resize((width, height), Image.Resampling.BICUBIC)
        data = image.tobytes()
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bitmap = mtmd.mtmd_bitmap_init(image.width, image.height, buf)
        if not bitmap:
            raise BackendError(f"llama.cpp could not take image {index}", retryable=False)
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            part = mtmd.mtmd_input_part(text=None, bitmap=bitmap)
            parts = (ctypes.POINTER(mtmd.mtmd_input_part) * 1)(ctypes.pointer(part))
            rc = mtmd.mtmd_tokenize_from_parts(self._mctx, chunks, parts, 1, False)
        finally:
            mtmd.mtmd_bitmap_free(bitmap)
        if rc != 0:
            mtmd.mtmd_input_chunks_free(chunks)
            raise BackendError(f"llama.cpp could not preprocess image {index} (error {rc})", retryable=False)
        n_tokens = n_pos = 0
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) != mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n_tokens += int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
                n_pos += int(mtmd.mtmd_input_chunk_get_n_pos(chunk))
        info = ImageTokens(
            index=index, n_tokens=n_tokens, n_pos=n_pos, width=image.width, height=image.height
        )
        return _Image(info=info, chunks=chunks)

    def _image_parts(self, image: _Image):
        """(``"tokens"``, ids) for mtmd's text chunks (the vision start/end tokens) and
        (``"image"``, image) once, where its embeddings go."""
        mtmd = self._mtmd
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

    def _free(self, parts: Sequence[Any]) -> None:
        for p in parts:
            if isinstance(p, _Image) and p.chunks:
                self._mtmd.mtmd_input_chunks_free(p.chunks)
                p.chunks = None

    # ------------------------------------------------------------------------ decoding
    def _fill_batch(self, piece: Sequence[int], pos: int, *, all_logits: bool) -> None:
        """Load ``piece`` into the llama batch at positions ``pos``… of sequence 0."""
        batch = self._batch
        batch.n_tokens = len(piece)
        flag = 1 if all_logits else 0
        for i, tok in enumerate(piece):
            batch.token[i] = tok
            batch.pos[i] = pos + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = flag

    def _decode_tokens(self, tokens: Sequence[int], pos: int, *, logits_last: bool) -> None:
        lc, batch = self._llama_cpp, self._batch
        for start in range(0, len(tokens), self._n_batch):
            piece = tokens[start : start + self._n_batch]
            self._fill_batch(piece, pos + start, all_logits=False)
            if logits_last and start + len(piece) == len(tokens):
                batch.logits[len(piece) - 1] = 1
            rc = lc.llama_decode(self.llama.ctx, batch)
            if rc != 0:
                if rc == 2 or self._cancelled():
                    raise _Cancelled
                raise BackendError(f"llama_decode failed (code {rc})", retryable=False)

    def _prefill(
        self, parts: list[tuple[int, ...] | _Image], cancel: threading.Event | None
    ) -> tuple[int, int]:
        """Evaluate the prompt from an empty context; return (next position, cells used)."""
        lc = self._llama_cpp
        ctx = self.llama.ctx
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        self.llama.n_tokens = 0  # the Llama object's own prompt cache no longer matches
        if not parts or isinstance(parts[-1], _Image):
            raise BackendError("a prompt must end with text", retryable=False)
        pos = used = 0
        if cancel is not None:  # lets a cancelled call stop inside a long prompt
            self._cancel = cancel
            lc.llama_set_abort_callback(ctx, self._abort_cb, None)
        try:
            for k, p in enumerate(parts):
                if self._cancelled():
                    raise _Cancelled
                if isinstance(p, _Image):
                    mtmd = self._mtmd
                    for i in range(mtmd.mtmd_input_chunks_size(p.chunks)):
                        chunk = mtmd.mtmd_input_chunks_get(p.chunks, i)
                        if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                            continue  # its vision start/end tokens are in the neighbouring runs
                        new_pos = lc.llama_pos(0)
                        rc = mtmd.mtmd_helper_eval_chunk_single(
                            self._mctx, ctx, chunk, pos, 0, self._n_batch, False, ctypes.byref(new_pos)
                        )
                        if rc != 0:
                            if self._cancelled():
                                raise _Cancelled
                            raise BackendError(
                                f"llama.cpp failed on image {p.info.index} (code {rc})", retryable=False
                            )
                        pos = int(new_pos.value)
                    used += p.info.n_tokens
                else:
                    self._decode_tokens(p, pos, logits_last=k == len(parts) - 1)
                    pos += len(p)
                    used += len(p)
        finally:
            if cancel is not None:
                lc.llama_set_abort_callback(ctx, lc.ggml_abort_callback(), None)
                self._cancel = None
        return pos, used

    def _cancelled(self) -> bool:
        return self._cancel is not None and self._cancel.is_set()

    def _logits(self) -> Any:
        """A copy of the last position's logits (float32, n_vocab)."""
        ptr = self._llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
        ctypes.memmove(self._logit_buf.ctypes.data, ptr, self._logit_buf.nbytes)
        return self._logit_buf.copy()

    # ---------------------------------------------------------------------- generation
    def generate(self, prompts: Sequence[RenderedPrompt], options: GenerationOptions) -> list[Generation]:
        """One output per prompt, in order; prompts run one after another on one context."""
        return self._generate(prompts, options, None)

    async def agenerate(
        self, prompts: Sequence[RenderedPrompt], options: GenerationOptions
    ) -> list[Generation]:
        """Async twin of :meth:`generate`: runs in a worker thread. Cancelling the awaiting task
        stops the generation at the next token (or inside the prompt) and frees the backend."""
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._generate, prompts, options, cancel)
        except asyncio.CancelledError:
            cancel.set()
            raise

    def _generate(
        self, prompts: Sequence[RenderedPrompt], options: GenerationOptions, cancel: threading.Event | None
    ) -> list[Generation]:
        if options.max_new_tokens < 1:
            raise ConfigurationError("max_new_tokens must be at least 1")
        np = self._np
        rng = None if options.greedy else np.random.default_rng(options.seed)
        out: list[Generation] = []
        timer = None
        timed_out = threading.Event()
        if options.timeout_s is not None:
            # the deadline stops the running prompt through the same path as a cancellation
            # (next token, or inside prompt evaluation), then fails the rest of the batch
            cancel = cancel or threading.Event()
            stop = cancel

            def expire() -> None:
                timed_out.set()
                stop.set()

            timer = threading.Timer(options.timeout_s, expire)
            timer.daemon = True
            timer.start()
        try:
            for prompt in prompts:
                with self._lock:
                    self._check_open()
                    try:
                        out.append(self._generate_one(prompt, options, rng, cancel))
                    except _Cancelled:
                        if not timed_out.is_set():
                            return out  # the caller went away
                        error = BackendTimeoutError(f"generation did not finish within {options.timeout_s}s")
                        out.extend(Generation(text="", finish_reason="error", error=error)
                                   for _ in range(len(prompts) - len(out)))  # fmt: skip
                        return out
                    except BackendError as exc:
                        out.append(Generation(text="", finish_reason="error", error=exc))
        finally:
            if timer is not None:
                timer.cancel()
        return out

    def _generate_one(
        self, prompt: RenderedPrompt, options: GenerationOptions, rng: Any, cancel: threading.Event | None
    ) -> Generation:
        parts = self._encode(prompt)
        try:
            n_prompt = sum(p.info.n_tokens if isinstance(p, _Image) else len(p) for p in parts)
            if n_prompt >= self._n_ctx:
                raise BackendError(
                    f"the prompt takes {n_prompt} tokens but the context holds {self._n_ctx}; "
                    "load the model with a larger n_ctx (or smaller images)",
                    retryable=False,
                )
            pos, used = self._prefill(parts, cancel)
        finally:
            self._free(parts)
        return self._decode_loop(pos, used, options, rng, cancel, prompt)

    def _decode_loop(
        self, pos: int, used: int, options: GenerationOptions, rng: Any, cancel: threading.Event | None,
        prompt: RenderedPrompt | None = None,
    ) -> Generation:  # fmt: skip
        ends = set(self._end_ids)
        stops = tuple(s for s in options.stop if s)
        window = max((len(s.encode("utf-8")) for s in stops), default=0) + 64
        pieces: list[bytes] = []
        tail = b""
        tokens: list[int] = []
        reason = "length"
        while len(tokens) < options.max_new_tokens:
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            if rng is None:  # greedy, in C: no copy of the logits per token
                token = int(self._llama_cpp.llama_sampler_sample(self._greedy, self.llama.ctx, -1))
            else:
                token = self._pick(self._logits(), options, rng)
            tokens.append(token)
            if token in ends:
                reason = "stop"
                break
            piece = self._piece(token, special=False)
            pieces.append(piece)
            if stops:
                tail = (tail + piece)[-window:]
                text = tail.decode("utf-8", errors="ignore")
                # a stop string in the newest text is a pre-filter; with an answer_end check
                # the whole output decides (a </result> inside the reasoning does not stop it)
                if any(s in text for s in stops) and (
                    options.answer_end is None
                    or options.stop_end(b"".join(pieces).decode("utf-8", errors="replace"), prompt)
                    is not None
                ):
                    reason = "stop"
                    break
            if len(tokens) >= options.max_new_tokens or used >= self._n_ctx:
                break  # "length": nothing more is evaluated
            self._decode_tokens([token], pos, logits_last=True)
            pos += 1
            used += 1
        text = b"".join(pieces).decode("utf-8", errors="replace")
        return Generation(text=text, output_tokens=len(tokens), finish_reason=reason)

    def _pick(self, logits: Any, options: GenerationOptions, rng: Any) -> int:
        """Sample a token: temperature, then top-p (nucleus), vision tokens banned."""
        np = self._np
        if self._suppress.size:
            logits[self._suppress] = -np.inf
        scaled = logits.astype(np.float64) / options.temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        if options.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cum = np.cumsum(probs[order])
            keep = cum - probs[order] < options.top_p  # smallest set reaching top_p
            keep[0] = True
            mask = np.zeros_like(probs, dtype=bool)
            mask[order[keep]] = True
            probs = np.where(mask, probs, 0.0)
            probs /= probs.sum()
        return int(rng.choice(probs.size, p=probs))

    # ----------------------------------------------------------------------- scoring
    def token_logprobs(self, prompt: RenderedPrompt, continuation: Sequence[int] = ()) -> Any:
        """Log-probabilities over the vocabulary for the next token after ``prompt``, then after
        each token of ``continuation`` (fed in order): a ``numpy`` array of shape
        ``(len(continuation) + 1, n_vocab)``. Raw model distributions (no token suppressed)."""
        np = self._np
        with self._lock:
            self._check_open()
            parts = self._encode(prompt)
            try:
                pos, _ = self._prefill(parts, None)
            finally:
                self._free(parts)
            rows = []
            for i in range(len(continuation) + 1):
                logits = self._logits().astype(np.float64)
                m = logits.max()
                rows.append(logits - m - np.log(np.exp(logits - m).sum()))
                if i < len(continuation):
                    self._decode_tokens([int(continuation[i])], pos, logits_last=True)
                    pos += 1
            return np.stack(rows)

    supports_scoring = True

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Log-probabilities of each request's continuations after prompt + forced answer,
        teacher-forced (see the module docstring). Per-item failures (a prompt longer than the
        context, an unusable image) are returned in the item's ``error``."""
        out: list[ScoreResult] = []
        for request in requests:
            with self._lock:
                self._check_open()
                try:
                    out.append(ScoreResult(logprobs=tuple(self._score_one(request))))
                except BackendError as exc:
                    out.append(ScoreResult(error=exc))
        return out

    def _score_one(self, request: ScoreRequest) -> list[float]:
        prompt = request.prompt
        parts_in = merge_text([*prompt.parts, request.prefix])
        trie = build_trie(self._continuation_tokens(parts_in, request.continuations))
        parts = self._encode(_with_parts(prompt, parts_in))
        try:
            n_prompt = sum(p.info.n_tokens if isinstance(p, _Image) else len(p) for p in parts)
            depth = max(trie.depths, default=0)
            if n_prompt + depth >= self._n_ctx:
                raise BackendError(
                    f"the prompt and its labels take {n_prompt + depth} tokens but the context holds "
                    f"{self._n_ctx}; load the model with a larger n_ctx (or smaller images)",
                    retryable=False,
                )
            pos, _ = self._prefill(parts, None)
        finally:
            self._free(parts)
        rows = {-1: self._logprob_row(self._logits())}  # node -> log-softmax of the logits after it
        children: dict[int, list[int]] = {}
        for node, parent in enumerate(trie.parents):
            children.setdefault(parent, []).append(node)
        self._walk(trie, children, -1, pos, rows)
        values = []
        for path in trie.paths:
            values.append(float(sum(rows[trie.parents[n]][trie.tokens[n]] for n in path)))
        return values

    def _continuation_tokens(
        self, parts: Sequence[Any], continuations: Sequence[str]
    ) -> list[tuple[int, ...]]:
        """Each continuation's tokens as the model sees them after the text run it follows
        (tokenized together with that run, as the whole answer would be)."""
        last = parts[-1] if parts and isinstance(parts[-1], str) else ""
        base = self._encode_text(last) if last else ()
        encode = self._encode_text if len(last) < 512 else self._encode_text_uncached
        out = []
        for continuation in continuations:
            joint = encode(last + continuation)
            out.append(joint[len(base) :] if joint[: len(base)] == base else self._encode_text(continuation))
        return out

    def _walk(self, trie: TokenTrie, children: dict[int, list[int]], node: int, pos: int, rows: dict) -> None:
        """Evaluate every chain of tokens below ``node`` whose logits a candidate needs."""
        lc = self._llama_cpp
        memory = lc.llama_get_memory(self.llama.ctx)
        for child in children.get(node, []):
            if child not in children:
                continue  # a leaf: its probability comes from its parent's logits
            chain = [child]
            while len(children.get(chain[-1], [])) == 1 and children[chain[-1]][0] in children:
                chain.append(children[chain[-1]][0])
            lc.llama_memory_seq_rm(memory, 0, pos, -1)  # drop the previous branch
            for i, logits in enumerate(self._decode_all([trie.tokens[n] for n in chain], pos)):
                rows[chain[i]] = self._logprob_row(logits)
            self._walk(trie, children, chain[-1], pos + len(chain), rows)

    def _decode_all(self, tokens: Sequence[int], pos: int) -> list[Any]:
        """Evaluate ``tokens`` from ``pos`` and return the logits after each (copies)."""
        lc, batch, np = self._llama_cpp, self._batch, self._np
        out = []
        for start in range(0, len(tokens), self._n_batch):
            piece = tokens[start : start + self._n_batch]
            self._fill_batch(piece, pos + start, all_logits=True)
            rc = lc.llama_decode(self.llama.ctx, batch)
            if rc != 0:
                raise BackendError(f"llama_decode failed (code {rc})", retryable=False)
            for i in range(len(piece)):
                ptr = lc.llama_get_logits_ith(self.llama.ctx, i)
                row = np.empty(self._n_vocab, dtype=np.float32)
                ctypes.memmove(row.ctypes.data, ptr, row.nbytes)
                out.append(row)
        return out

    def _logprob_row(self, logits: Any) -> Any:
        np = self._np
        values = logits.astype(np.float64)
        top = values.max()
        return values - top - np.log(np.exp(values - top).sum())

    # ------------------------------------------------------------------------ cleanup
    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailableError("the llama.cpp backend is closed", retryable=False)

    def close(self) -> None:
        """Free the mmproj context and the batch; the model too when this backend loaded it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._mctx is not None:
                self._mtmd.mtmd_free(self._mctx)
                self._mctx = None
            self._llama_cpp.llama_batch_free(self._batch)
            self._llama_cpp.llama_sampler_free(self._greedy)
            if self._close_llama:
                self.llama.close()


def _with_parts(prompt: RenderedPrompt, parts: Sequence[Any]) -> RenderedPrompt:
    import dataclasses

    return dataclasses.replace(prompt, parts=tuple(parts))


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


def from_llamacpp(llama: Any, mmproj: str | os.PathLike[str] | None = None, **kwargs: Any) -> LlamaCppBackend:
    """Deprecated: use ``LlamaCppBackend(llama, mmproj)``."""
    _deprecated.warn("guardrail.backends.llamacpp.from_llamacpp", "LlamaCppBackend(llama, mmproj)")
    return LlamaCppBackend(llama, mmproj, **kwargs)
