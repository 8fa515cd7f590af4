"""llama.cpp backend (llama-cpp-python): on-device CPU moderation with GGUF guard models.

Install with ``pip install "guardrail-vl[llamacpp]"``. Load with
:meth:`guardrail.Guard.from_gguf` (its backend is ``guard.backend``), or wrap a
``llama_cpp.Llama`` the app already loaded (``LlamaCppBackend(llama, mmproj="mmproj.gguf")``).

Prompts run one at a time on one context, under a lock, from the profile's own rendering (no
chat template of llama-cpp-python); images go through the mmproj
(:mod:`guardrail.backends.llamacpp_vision`), decoding and fast mode's trie walk through
:mod:`guardrail.backends.llamacpp_decode`. How it matches the transformers backend, its stop
rules and its failures: ``docs/backends/llamacpp.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from guardrail import _deprecated
from guardrail._deps import require
from guardrail.backends.base import (
    Backend,
    Generation,
    GenerationOptions,
    ScoreRequest,
    ScoreResult,
    prompt_tokens,
    refuse_media,
)
from guardrail.backends.llamacpp_decode import Cancelled, Decoder, log_softmax, sample, trie_logprobs
from guardrail.backends.llamacpp_vision import (
    QWEN25VL_MAX_PIXELS,
    QWEN25VL_MIN_PIXELS,
    EncodedImage,
    ImageTokens,
    VisionContext,
    qwen_smart_resize,
)
from guardrail.backends.prefix_cache import ResidentTokens, leading_text_ids
from guardrail.backends.scoring import continuation_trie, forced_prompt
from guardrail.errors import BackendError, BackendTimeoutError, BackendUnavailableError, ConfigurationError
from guardrail.gguf_metadata import architecture, check_llama_cpp_runs
from guardrail.policies import Policy
from guardrail.policies.trained import GGUF_POLICY_KEY, policy_from_text
from guardrail.profiles import END_TOKENS, NEVER_GENERATED, profile_for_gguf_architecture
from guardrail.profiles.base import ImageSlot, RenderedPrompt
from guardrail.profiles.guardreasoner_vl import IMAGE_PAD

__all__ = [
    "QWEN25VL_MAX_PIXELS",
    "QWEN25VL_MIN_PIXELS",
    "EncodedPrompt",
    "ImageTokens",
    "LlamaCppBackend",
    "from_llamacpp",
    "qwen_smart_resize",
]

_EXTRA = "llamacpp"
log = logging.getLogger("guardrail.llamacpp")

# Llama options that change speed or logging, not outputs: left out of the cache identity.
_NOT_IDENTITY = frozenset({"n_threads", "n_threads_batch", "verbose"})


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


Parts = list[tuple[int, ...] | EncodedImage]  # a prompt's token runs and images, in order


class LlamaCppBackend(Backend):
    """Run a GGUF guard with llama.cpp (see ``docs/backends/llamacpp.md``).

    ``llama`` is a ``llama_cpp.Llama``; ``mmproj`` the path of the vision projector GGUF
    (needed for images). ``image_min_pixels`` / ``image_max_pixels`` bound the resized image
    (default: the mmproj file's values, written by ``guardrail export gguf``, else Qwen2.5-VL's
    processor defaults); lowering ``image_max_pixels`` makes large images much cheaper on a CPU,
    at the price of a different input than the reference processor's.
    """

    name = "llamacpp"
    #: The policy the guard was trained on (the GGUF metadata string ``guardrail.policy`` that
    #: ``guardrail export gguf`` writes from ``guardrail_policy.yaml``); None for others.
    trained_policy: Policy | None = None

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
        prefix_cache: bool = True,
    ):
        self._llama_cpp = require("llama_cpp", extra=_EXTRA, package="llama-cpp-python")
        self._np = require("numpy", extra=_EXTRA)
        check_llama_cpp_runs(getattr(llama, "metadata", None))  # before anything can decode
        self.llama = llama
        self.model_name = model_name or getattr(llama, "model_path", None)
        self.trained_policy = policy_from_text((getattr(llama, "metadata", None) or {}).get(GGUF_POLICY_KEY))
        self.verbose = verbose
        self._close_llama = close_llama
        self._lock = threading.Lock()
        self._closed = False
        self._vocab = self._llama_cpp.llama_model_get_vocab(llama.model)
        self._n_vocab = int(llama.n_vocab())
        self._n_ctx = int(llama.n_ctx())
        self._special_cache: dict[str, int] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self._end_ids = sorted({i for i in self._token_ids(END_TOKENS)} | self._model_end_ids())
        self._decoder = Decoder(self._llama_cpp, self._np, llama, self._token_ids(NEVER_GENERATED))
        self._encode_text = functools.lru_cache(maxsize=256)(self._encode_text_uncached)
        self.mmproj = os.fspath(mmproj) if mmproj is not None else None
        self._vision: VisionContext | None = None
        self._resize: tuple[int, int, int] | None = None  # (factor, min_pixels, max_pixels)
        self._loaded_from: dict[str, Any] | None = None  # what _load loaded (see identity)
        # Prefix caching: the context keeps the last prompt's leading tokens; the next prompt
        # evaluates only what follows their common start (backends/prefix_cache.py).
        self.prefix_cache = prefix_cache
        self._resident = ResidentTokens()
        if self.mmproj is not None:
            try:
                self._vision = VisionContext(
                    llama, self.mmproj, min_pixels=image_min_pixels, max_pixels=image_max_pixels,
                    verbose=verbose, model_name=self.model_name,
                )  # fmt: skip
            except BaseException:
                self._decoder.close()
                raise
            self._resize = self._vision.resize
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
        filename: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        prefix_cache: bool = True,
        **llama_kwargs: Any,
    ) -> LlamaCppBackend:
        """Load a GGUF guard (a ``.gguf`` file, or a directory holding one model GGUF and at
        most one ``mmproj*.gguf``, as ``guardrail export gguf`` writes them), or the files of a
        Hugging Face repo ``org/name``: ``filename`` and ``mmproj`` are then paths or glob
        patterns in the repo, ``revision`` and ``cache_dir`` as for ``hf_hub_download``
        (:func:`guardrail.hub.resolve_gguf`; offline, the cache is searched).

        ``n_threads``: CPU threads (default: llama-cpp-python's, half the cores). ``n_ctx``:
        context size in tokens: prompt (images included) plus the output must fit.
        ``n_batch``: prompt tokens per decode call. Other keywords go to ``llama_cpp.Llama``
        (``n_gpu_layers``, ``flash_attn``, ``type_k``, ``use_mmap``...). ``prefix_cache``: keep
        the prompt's leading tokens evaluated in the context between checks (default on).
        """
        llama_cpp = require("llama_cpp", extra=_EXTRA, package="llama-cpp-python")
        from guardrail.export.gguf import find_gguf_files
        from guardrail.hub import resolve_gguf

        model_path, mmproj = resolve_gguf(
            model_path, mmproj, filename=filename, revision=revision, cache_dir=cache_dir
        )
        files = find_gguf_files(model_path, mmproj or None)
        if mmproj is False:
            files = replace(files, mmproj=None)
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
                prefix_cache=prefix_cache,
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

    def identity(self) -> dict[str, Any] | None:
        """The GGUF files, image bounds and ``llama_cpp.Llama`` options it was loaded with;
        ``None`` (this instance only) for a ``Llama`` object wrapped directly."""
        return self._loaded_from

    def default_profile(self) -> str | None:
        metadata = getattr(self.llama, "metadata", None) or {}
        # general.name tells Llama Guard 3 from GuardReasoner (both "llama")
        return profile_for_gguf_architecture(architecture(metadata), metadata.get("general.name"))

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def supports_images(self) -> bool:
        return self._vision is not None

    # --------------------------------------------------------------------- vocabulary
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

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        """Token ids back to text (special tokens rendered only when ``special``)."""
        return b"".join(self._piece(t, special=special) for t in tokens).decode("utf-8", errors="replace")

    # ------------------------------------------------------------------------ encoding
    def encode(self, prompt: RenderedPrompt) -> EncodedPrompt:
        """How ``prompt`` enters the model (for inspection and tests; images are preprocessed)."""
        with self._lock:
            self._check_open()
            with self._encoded(prompt) as parts:
                out: list[tuple[int, ...] | ImageTokens] = []
                text: list[str] = []
                for p in parts:
                    if isinstance(p, EncodedImage):
                        out.append(p.info)
                        text.append(IMAGE_PAD)
                    else:
                        out.append(p)
                        text.append(self.detokenize(p, special=True))
                return EncodedPrompt(parts=tuple(out), text="".join(text))

    @contextlib.contextmanager
    def _encoded(self, prompt: RenderedPrompt) -> Iterator[Parts]:
        """:meth:`_encode`, the images' chunks freed on leaving."""
        parts = self._encode(prompt)
        try:
            yield parts
        finally:
            self._free(parts)

    def _encode(self, prompt: RenderedPrompt) -> Parts:
        """Token runs and images (with their mtmd chunks: free them with :meth:`_free`). Text
        is tokenized as plain text, template special tokens by name, and each image slot
        becomes mtmd's ``<|vision_start|>`` + embeddings + ``<|vision_end|>``."""
        refuse_media([prompt], "llama.cpp")  # its mtmd video path needs the ffprobe program
        parts: Parts = []
        run: list[int] = []
        bos = int(self._llama_cpp.llama_vocab_bos(self._vocab))
        try:
            for piece in prompt_tokens(
                prompt, self._encode_text, self._special_id, bos if bos >= 0 else None
            ):
                if not isinstance(piece, ImageSlot):
                    run.extend(piece)
                    continue
                vision = self._vision_context()
                image = vision.encode(prompt.images[piece.index], piece.index)
                for kind, value in vision.parts(image):
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

    def _vision_context(self) -> VisionContext:
        if self._vision is None:
            raise BackendError(
                "this llama.cpp backend has no mmproj, so it cannot read images; "
                "load it with mmproj=PATH (guardrail export gguf writes mmproj-*.gguf)",
                retryable=False,
            )
        return self._vision

    def _free(self, parts: Sequence[Any]) -> None:
        if self._vision is not None:
            self._vision.free(parts)

    def _prefill(self, parts: Parts, cancel: threading.Event | None) -> tuple[int, int]:
        """Evaluate the prompt; return (next position, cells used).

        With prefix caching, the context's first cells still hold the previous prompt's leading
        tokens (before its first image): the common start with this prompt stays, everything
        after it is dropped, and evaluation starts there. Otherwise (or after the app used the
        ``Llama`` object itself, which then counts tokens of its own) the context is emptied."""
        decoder = self._decoder
        if not parts or isinstance(parts[-1], EncodedImage):
            raise BackendError("a prompt must end with text", retryable=False)
        head = leading_text_ids(parts)
        resident = self._resident
        if self.llama.n_tokens != 0:  # evaluated by llama-cpp-python itself since our last call
            resident.forget()
        keep = resident.keep(head) if self.prefix_cache else 0
        if keep:
            decoder.rewind(keep)
        else:
            decoder.clear()
        resident.ids = head[:keep]  # what stays true if this evaluation fails or is cancelled
        resident.reused += keep
        resident.evaluated += len(head) - keep
        pos = used = keep
        with decoder.abortable(cancel):  # lets a cancelled call stop inside a long prompt
            for k, p in enumerate(parts):
                if decoder.cancelled():
                    raise Cancelled
                if isinstance(p, EncodedImage):
                    vision = self._vision_context()
                    pos = vision.evaluate(p, self.llama.ctx, pos, decoder.n_batch, decoder.cancelled)
                    used += p.info.n_tokens
                else:
                    tokens = p[keep:] if k == 0 else p
                    decoder.decode(tokens, pos, logits_last=k == len(parts) - 1)
                    pos += len(tokens)
                    used += len(tokens)
        if self.prefix_cache:
            resident.ids = head
        return pos, used

    def _check_fits(self, parts: Parts, labels: int | None = None) -> None:
        """Raise unless the prompt (and ``labels`` more tokens, in fast mode) fits the context."""
        n = sum(p.info.n_tokens if isinstance(p, EncodedImage) else len(p) for p in parts)
        if n + (labels or 0) >= self._n_ctx:
            what = "the prompt takes" if labels is None else "the prompt and its labels take"
            raise BackendError(
                f"{what} {n + (labels or 0)} tokens but the context holds {self._n_ctx}; "
                "load the model with a larger n_ctx (or smaller images)",
                retryable=False,
            )

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
        rng = None if options.greedy else self._np.random.default_rng(options.seed)
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
                    except Cancelled:
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
        with self._encoded(prompt) as parts:
            self._check_fits(parts)
            pos, used = self._prefill(parts, cancel)
        return self._decode_loop(pos, used, options, rng, cancel, prompt)

    def _decode_loop(
        self, pos: int, used: int, options: GenerationOptions, rng: Any, cancel: threading.Event | None,
        prompt: RenderedPrompt | None = None,
    ) -> Generation:  # fmt: skip
        """Generate after the evaluated prompt: end-of-turn tokens end the output (and count),
        banned tokens are never picked, a stop string ends it after the token that completes
        it (with ``answer_end``, only one that ends the model's own answer), and
        ``max_new_tokens`` or a full context end it with ``"length"``."""
        ends = set(self._end_ids)
        stops = tuple(s for s in options.stop if s)
        window = max((len(s.encode("utf-8")) for s in stops), default=0) + 64
        pieces: list[bytes] = []
        tail = b""
        tokens: list[int] = []
        reason = "length"
        while len(tokens) < options.max_new_tokens:
            if cancel is not None and cancel.is_set():
                raise Cancelled
            if rng is None:  # greedy, in C: no copy of the logits per token
                token = int(self._llama_cpp.llama_sampler_sample(self._decoder.greedy, self.llama.ctx, -1))
            else:
                token = sample(self._np, self._decoder.logits(), self._decoder.banned, options, rng)
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
            self._decoder.decode([token], pos, logits_last=True)
            pos += 1
            used += 1
        text = b"".join(pieces).decode("utf-8", errors="replace")
        return Generation(text=text, output_tokens=len(tokens), finish_reason=reason)

    # ----------------------------------------------------------------------- scoring
    def token_logprobs(self, prompt: RenderedPrompt, continuation: Sequence[int] = ()) -> Any:
        """Log-probabilities over the vocabulary for the next token after ``prompt``, then after
        each token of ``continuation`` (fed in order): a ``numpy`` array of shape
        ``(len(continuation) + 1, n_vocab)``. Raw model distributions (no token suppressed)."""
        with self._lock:
            self._check_open()
            with self._encoded(prompt) as parts:
                pos, _ = self._prefill(parts, None)
            rows = []
            for i in range(len(continuation) + 1):
                rows.append(log_softmax(self._np, self._decoder.logits()))
                if i < len(continuation):
                    self._decoder.decode([int(continuation[i])], pos, logits_last=True)
                    pos += 1
            return self._np.stack(rows)

    supports_scoring = True

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Log-probabilities of each request's continuations after prompt + forced answer,
        teacher-forced: the prompt is evaluated once, then the continuations' token trie is
        walked on the same context. Per-item failures (a prompt longer than the context, an
        unusable image) are returned in the item's ``error``."""
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
        prompt = forced_prompt(request.prompt, request.prefix)
        trie = continuation_trie(prompt, request.continuations, self._encode_text, self._encode_text_uncached)
        with self._encoded(prompt) as parts:
            self._check_fits(parts, max(trie.depths, default=0))
            pos, _ = self._prefill(parts, None)
        return trie_logprobs(self._decoder, trie, pos)

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
            if self._vision is not None:
                self._vision.close()
            self._decoder.close()
            if self._close_llama:
                self.llama.close()


def from_llamacpp(llama: Any, mmproj: str | os.PathLike[str] | None = None, **kwargs: Any) -> LlamaCppBackend:
    """Deprecated: use ``LlamaCppBackend(llama, mmproj)``."""
    _deprecated.warn("guardrail.backends.llamacpp.from_llamacpp", "LlamaCppBackend(llama, mmproj)")
    return LlamaCppBackend(llama, mmproj, **kwargs)
