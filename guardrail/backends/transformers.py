"""Hugging Face transformers backend: local GPU or CPU inference, batched.

Install with ``pip install "guardrail-vl[transformers]"``.

- Qwen2.5-VL guards load with ``AutoModelForImageTextToText`` + ``AutoProcessor``; text guards
  (GuardReasoner, Llama) with ``AutoModelForCausalLM`` + ``AutoTokenizer``.
- Weights load from safetensors only and ``trust_remote_code`` is off unless asked for.
- Default placement: CUDA + bfloat16 when a GPU is present, else CPU + float32.
- Batches are left-padded and run as one ``generate`` call; calls are serialised by a lock, so
  one backend is safe to share between threads.

Token ids are built here rather than by the processor: text parts are tokenized as plain text
(special-token strings typed by users stay text), template special tokens are looked up by
name, and each image slot becomes ``<|vision_start|>`` + ``<|image_pad|>`` x n +
``<|vision_end|>`` with n from the image processor's grid, which is what the processor does for
benign text. The tests check both against the processor's own output.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from guardrail import _deprecated
from guardrail._deps import require
from guardrail.backends import transformers_media as _media
from guardrail.backends import transformers_vision
from guardrail.backends.base import (
    Backend,
    Generation,
    GenerationOptions,
    ScoreRequest,
    ScoreResult,
    prompt_tokens,
)
from guardrail.backends.prefix_cache import PrefixStore, prefix_ids, reuse_length
from guardrail.backends.scoring import TokenTrie, continuation_trie, forced_prompt
from guardrail.errors import BackendError, BackendTimeoutError, ConfigurationError, ImageError, MediaError
from guardrail.model_paths import local_problem
from guardrail.policies import Policy
from guardrail.policies.trained import read_trained_policy
from guardrail.profiles import (
    END_TOKENS,
    NEVER_GENERATED,
    profile_for_model_type,
    profile_options_for_model,
    unknown_model_error,
)
from guardrail.profiles.base import ImageSlot, RenderedPrompt
from guardrail.profiles.guardreasoner_vl import IMAGE_PAD, VISION_END, VISION_START

__all__ = ["TransformersBackend", "from_transformers"]

_EXTRA = "transformers"


class TransformersBackend(Backend):
    """Run a guard model with transformers.

    Wrap a model you already loaded (``TransformersBackend(model, processor)``); to load one, use
    :meth:`guardrail.Guard.from_pretrained` (its backend is ``guard.backend``). ``processor`` is
    an ``AutoProcessor`` for vision-language models or a tokenizer for text models.
    """

    name = "transformers"
    #: The policy the model was trained on (``guardrail_policy.yaml`` in its directory; see
    #: :mod:`guardrail.policies.trained`), which Guard hands to the profile; None for others.
    trained_policy: Policy | None = None

    def __init__(
        self, model: Any, processor: Any, *, model_name: str | None = None, prefix_cache: bool = True
    ):
        #: the model as given (ShieldGemma 2: its classifier); ``model`` is what the backend runs
        self.loaded_model = model
        model = transformers_vision.unwrap(model)
        self.model = model
        self.processor = processor
        transformers_vision.prepare_model(model)  # Llama 4 workarounds, for that model only
        self._processor_images = transformers_vision.uses_processor_images(model)
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.image_processor = getattr(processor, "image_processor", None)
        self.model_name = model_name or getattr(getattr(model, "config", None), "_name_or_path", None)
        self._lock = threading.Lock()
        self._torch = require("torch", extra=_EXTRA)
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self._pad_id = tok.pad_token_id
        self._end_ids = self._token_ids(END_TOKENS)
        for ids in (getattr(model.generation_config, "eos_token_id", None), tok.eos_token_id):
            for i in ids if isinstance(ids, (list, tuple)) else [ids]:
                if i is not None and i not in self._end_ids:
                    self._end_ids.append(int(i))
        self._suppress_ids = self._token_ids(NEVER_GENERATED)
        # Qwen2.5-VL computes its 3D (M-RoPE) positions of image tokens from `mm_token_type_ids`
        # (1 = image token, as the processor marks them); without it transformers falls back to
        # text positions, which is not what the model was trained with.
        self._image_pad_id = self._token_ids((IMAGE_PAD,))
        self._wants_mm_types = _accepts(model, "mm_token_type_ids")
        self._special_cache: dict[str, int] = {}
        # Template text (the system prompt above all) repeats on every call: remember its ids.
        self._encode_text = functools.lru_cache(maxsize=256)(self._encode_text_uncached)
        # What _load loaded (see identity); a model wrapped here is known only as itself.
        self._loaded_from: dict[str, Any] | None = None
        # Prefix caching (backends/prefix_cache.py): the fixed prefix's keys/values, per prefix.
        self.prefix_cache = prefix_cache
        self._prefixes = PrefixStore(self._prefix_kv)
        self._cache_kw = "cache" if _accepts(model, "cache") else "past_key_values"

    # ------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], **options: Any) -> TransformersBackend:
        """Deprecated: use ``Guard.from_pretrained(path, **options)`` (``guard.backend``)."""
        _deprecated.warn("TransformersBackend.from_pretrained", "Guard.from_pretrained(path, ...).backend")
        return cls._load(path, **options)

    @classmethod
    def _load(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | None = None,
        dtype: Any = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        device_map: Any = None,
        progress: bool = False,
        prefix_cache: bool = True,
        **model_kwargs: Any,
    ) -> TransformersBackend:
        """Load a guard from a local directory or a Hugging Face hub id.

        ``device``: ``"cuda"``, ``"cpu"``, ``"cuda:1"``... (default: CUDA when available).
        ``dtype``: a torch dtype or its name (default: bfloat16 on GPU, float32 on CPU).
        ``device_map``: passed to transformers (e.g. ``"auto"`` to spread a large model over
        several GPUs); when given, ``device`` is ignored. ``prefix_cache``: reuse the fixed
        prefix's key/value cache (default on; :mod:`guardrail.backends.prefix_cache`).
        ``progress``: show transformers' weight-loading progress bar (off: a guard loads quietly).
        """
        from guardrail.hub import pretrained_problem

        # a mistyped directory is said so (with the names nearby), not asked of the hub; then a
        # hub id that cannot load (offline and not cached) says so plainly
        problem = local_problem(os.fspath(path)) or pretrained_problem(path, revision, model_kwargs.get("cache_dir"))
        if problem is not None:
            raise BackendError(f"cannot load model {os.fspath(path)!r}: {problem}", retryable=False)
        torch = require("torch", extra=_EXTRA)
        transformers = require("transformers", extra=_EXTRA)
        path = os.fspath(path)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype is None:
            dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        elif isinstance(dtype, str):
            try:
                dtype = getattr(torch, dtype)
            except AttributeError:
                raise ConfigurationError(f"unknown torch dtype {dtype!r}") from None
        common = {"trust_remote_code": trust_remote_code, "revision": revision}
        try:
            with _progress_bars(transformers, progress):
                model, processor, config = _load_parts(
                    transformers, path, common, dtype, device_map, model_kwargs
                )
        except (OSError, ValueError) as exc:
            where = (
                ""
                if os.path.isdir(path)
                else f"no local directory {os.path.abspath(path)}, and from the hub: "
            )
            raise BackendError(f"cannot load model {path!r}: {where}{exc}", retryable=False) from exc
        if device_map is None:
            model.to(device)
        model.eval()
        backend = cls(model, processor, model_name=path, prefix_cache=prefix_cache)
        if os.path.isdir(path):
            backend.trained_policy = read_trained_policy(path)
        backend._loaded_from = {
            "model": os.path.abspath(path) if os.path.isdir(path) else path, "revision": revision,
            "dtype": str(dtype), "options": sorted((k, repr(v)) for k, v in model_kwargs.items()),
        }  # fmt: skip
        return backend

    def identity(self) -> dict[str, Any] | None:
        """The directory or hub id, revision, dtype and loader options the model was loaded with;
        ``None`` (this instance only) for a model object wrapped directly."""
        return self._loaded_from

    def default_profile(self) -> str | None:
        """The family the model's config (``guardrail_profile``, model type) and name call for;
        :class:`~guardrail.errors.ConfigurationError` naming the families when none does."""
        config = self.model.config
        name = profile_for_model_type(getattr(config, "model_type", None), config.to_dict())
        if name is None:
            raise unknown_model_error(f"{self.model_name or 'this model'} (model type {config.model_type!r})")
        return name

    def default_profile_options(self) -> dict[str, Any]:
        name = profile_for_model_type(
            getattr(self.model.config, "model_type", None), self.model.config.to_dict()
        )
        return profile_options_for_model(name, self.model_name)

    # ------------------------------------------------------------------------ encoding
    def _token_ids(self, names: Sequence[str]) -> list[int]:
        vocab = self.tokenizer.get_vocab()
        return [vocab[n] for n in names if n in vocab]

    def _special_id(self, token: str) -> int:
        try:
            return self._special_cache[token]
        except KeyError:
            pass
        vocab = self.tokenizer.get_vocab()
        if token not in vocab:
            raise ConfigurationError(
                f"the tokenizer has no special token {token!r}: wrong profile for this model?"
            )
        self._special_cache[token] = vocab[token]
        return vocab[token]

    def _encode_text_uncached(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))

    def encode(self, prompt: RenderedPrompt) -> tuple[list[int], Any, Any]:
        """Token ids, ``pixel_values`` and ``image_grid_thw`` for one prompt (no padding)."""
        if prompt.images and self._processor_images:
            return transformers_vision.encode(self, prompt)
        tok = self.tokenizer
        pixel_values = grid = None
        if prompt.images:
            if self.image_processor is None:
                raise ImageError("this model takes no images (text-only guard)")
            processed = self.image_processor(
                images=list(prompt.images),
                return_tensors="pt",
                **_media.image_kwargs(self.image_processor, prompt),
            )
            pixel_values, grid = processed["pixel_values"], processed["image_grid_thw"]
            merge = int(getattr(self.image_processor, "merge_size", 2))
        media = None
        if prompt.media is not None and (prompt.images or prompt.videos or prompt.audios):
            media = _media.process(self, prompt, pixel_values, grid)
        ids: list[int] = []
        for piece in prompt_tokens(prompt, self._encode_text, self._special_id, tok.bos_token_id):
            if media is not None and not isinstance(piece, Sequence):
                ids.extend(_media.slot_ids(piece, media, prompt, self._special_id))
            elif isinstance(piece, ImageSlot):
                n = int(grid[piece.index].prod()) // (merge * merge)
                ids.append(self._special_id(VISION_START))
                ids.extend([self._special_id(IMAGE_PAD)] * n)
                ids.append(self._special_id(VISION_END))
            else:
                ids.extend(piece)
        if media is not None:
            return ids, media, None
        return ids, pixel_values, grid

    def _batch(self, prompts: Sequence[RenderedPrompt]) -> dict[str, Any]:
        """Encoded, left-padded prompts: a model's whole inputs (no cache)."""
        return self._pad([self.encode(p) for p in prompts])

    def _generation_batch(self, prompts: Sequence[RenderedPrompt]) -> dict[str, Any]:
        """Encoded, padded prompts; with a reused prefix, its cache (``self._cache_kw``)."""
        encoded = [self.encode(p) for p in prompts]
        k, kv = self._reuse(prompts, [ids for ids, _, _ in encoded])
        batch = self._pad(encoded, k)
        if k:
            batch[self._cache_kw] = self._prefix_cache(kv, k, len(encoded))
            # Qwen2.5-VL keeps the last call's M-RoPE offsets on the model and would apply them
            # to a call that starts from a cache: have them recomputed from this batch.
            if hasattr(getattr(self.model, "model", None), "rope_deltas"):
                self.model.model.rope_deltas = None
        return batch

    def _pad(self, encoded: Sequence[tuple[list[int], Any, Any]], k: int = 0) -> dict[str, Any]:
        """Pad encoded prompts into one batch: each row is its first ``k`` tokens (the reused
        prefix, the same in every row), the padding, then the rest; ``k=0`` is left padding.
        Positions come from the attention mask (transformers counts only unmasked tokens)."""
        torch = self._torch
        width = max(len(ids) for ids, _, _ in encoded)
        input_ids = torch.full((len(encoded), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, (ids, _, _) in enumerate(encoded):
            start = width - len(ids) + k
            input_ids[row, start:] = torch.tensor(ids[k:], dtype=torch.long)
            mask[row, start:] = 1
            if k:
                input_ids[row, :k] = torch.tensor(ids[:k], dtype=torch.long)
                mask[row, :k] = 1
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
        pixels = [pv for _, pv, _ in encoded if pv is not None]
        if any(isinstance(pv, _media.MediaInputs) for pv in pixels):  # video/audio: its own batching
            batch.update(_media.media_batch(self, encoded, input_ids))
            pixels = []
        if any(isinstance(pv, transformers_vision.MllamaImages) for pv in pixels):  # cross-attention
            batch.update(transformers_vision.mllama_batch(self, encoded, input_ids))
            pixels = []
        if pixels and self._wants_mm_types and self._image_pad_id:
            batch["mm_token_type_ids"] = (input_ids == self._image_pad_id[0]).long()
        if pixels and transformers_vision.bidirectional_images(self.model):
            batch["token_type_ids"] = (input_ids == self.model.config.image_token_index).long()
        grids = [g for _, _, g in encoded if g is not None]
        if pixels:
            batch["pixel_values"] = torch.cat(pixels, dim=0)
        if grids:
            batch["image_grid_thw"] = torch.cat(grids, dim=0)
        device = self.model.device
        return {k: v.to(device) for k, v in batch.items()}

    # ------------------------------------------------------------------ prefix cache
    def _reuse(self, prompts: Sequence[RenderedPrompt], rows: Sequence[Sequence[int]]) -> tuple[int, Any]:
        """How many leading tokens of every row come from the prefix cache, and its keys and
        values: ``(0, None)`` when nothing is reused."""
        if not self.prefix_cache or not prompts[0].prefix or transformers_vision.cross_attention(self.model):
            return 0, None
        ids = prefix_ids(prompts[0], self._encode_text, self._special_id, self.tokenizer.bos_token_id)
        k = reuse_length(ids, rows)
        if not k:
            return 0, None
        kv = self._prefixes.get(ids)
        return (k, kv) if kv is not None else (0, None)

    def _prefix_kv(self, ids: tuple[int, ...]) -> Any:
        """The keys and values of every layer for ``ids`` (one sequence), or None when the
        model's cache is not a plain per-layer one (sliding windows): then nothing is reused."""
        torch = self._torch
        transformers = require("transformers", extra=_EXTRA)
        cache = transformers.DynamicCache(config=self.model.config)
        if any(type(layer) is not transformers.cache_utils.DynamicLayer for layer in cache.layers):
            return None
        inputs = torch.tensor([ids], dtype=torch.long, device=self.model.device)
        with torch.inference_mode():
            out = self.model(input_ids=inputs, use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return tuple((layer.keys, layer.values) for layer in cache.layers)

    def _prefix_cache(self, kv: Any, k: int, n: int) -> Any:
        """A fresh cache holding the prefix's first ``k`` tokens for ``n`` rows (the stored
        tensors are never written: the cache's first update copies them)."""
        transformers = require("transformers", extra=_EXTRA)
        return transformers.DynamicCache(
            [
                (keys[:, :, :k].expand(n, -1, -1, -1), values[:, :, :k].expand(n, -1, -1, -1))
                for keys, values in kv
            ]
        )

    # ---------------------------------------------------------------------- generation
    def generation_config(self, options: GenerationOptions) -> Any:
        transformers = require("transformers", extra=_EXTRA)
        kwargs: dict[str, Any] = {
            "max_new_tokens": options.max_new_tokens,
            "eos_token_id": self._end_ids,
            "pad_token_id": self._pad_id,
            "suppress_tokens": self._suppress_ids or None,
        }
        if options.greedy:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=options.temperature, top_p=options.top_p, top_k=0)
        if options.stop and options.answer_end is None:
            kwargs["stop_strings"] = list(options.stop)
        if options.timeout_s is not None:
            kwargs["max_time"] = options.timeout_s
        return transformers.GenerationConfig(**kwargs)

    def generate(self, prompts: Sequence[RenderedPrompt], options: GenerationOptions) -> list[Generation]:
        if not prompts:
            return []
        if len(prompts) > 1 and transformers_vision.one_at_a_time(self, prompts):
            return [g for p in prompts for g in self.generate([p], options)]
        torch = self._torch
        with self._lock:
            batch = self._generation_batch(prompts)
            config = self.generation_config(options)
            extra: dict[str, Any] = {}
            if options.stop and options.answer_end is None:
                extra["tokenizer"] = self.tokenizer  # transformers' own stop strings
            elif options.stop:
                # the profile decides which stop string ends the answer
                extra["stopping_criteria"] = _answer_stop(
                    self.tokenizer, batch["input_ids"].shape[1], options, prompts
                )
            if options.seed is not None:
                torch.manual_seed(options.seed)
            started = time.monotonic()
            try:
                with torch.inference_mode():
                    out = self.model.generate(**batch, generation_config=config, **extra)
            except (RuntimeError, ValueError) as exc:
                raise BackendError(f"generation failed: {exc}", retryable=False) from exc
            elapsed = time.monotonic() - started
        new = out[:, batch["input_ids"].shape[1] :].tolist()
        results = [self._finish(row, options, p) for row, p in zip(new, prompts, strict=True)]
        if options.timeout_s is not None and elapsed >= options.timeout_s:
            # generate() stopped at max_time: an unfinished output is a timeout, not a verdict
            error = BackendTimeoutError(f"generation did not finish within {options.timeout_s}s")
            ends = set(self._end_ids)

            def finished(row: list[int], result: Generation, prompt: RenderedPrompt) -> bool:
                return any(t in ends for t in row) or options.stop_end(result.text, prompt) is not None

            results = [
                r if finished(row, r, p) else Generation(text=r.text, finish_reason="error", error=error)
                for row, r, p in zip(new, results, prompts, strict=True)
            ]
        return results

    def _finish(
        self, tokens: list[int], options: GenerationOptions, prompt: RenderedPrompt | None = None
    ) -> Generation:
        ends = set(self._end_ids)
        cut = next((i for i, t in enumerate(tokens) if t in ends), None)
        if options.stop:
            # A row stopped by a stop string is padded afterwards: end it at the stop string
            # (counting no end-of-turn token it never generated).
            body = tokens[:cut] if cut is not None else [t for t in tokens if t != self._pad_id]
            stopped = self._stop_at(body, options, prompt)
            if stopped is not None:
                return stopped
        if cut is None:
            kept = [t for t in tokens if t != self._pad_id] if self._pad_id not in ends else tokens
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            reason = "length" if len(kept) >= options.max_new_tokens else "stop"
            return Generation(text=text, output_tokens=len(kept), finish_reason=reason)
        text = self.tokenizer.decode(tokens[:cut], skip_special_tokens=True)
        return Generation(text=text, output_tokens=cut + 1, finish_reason="stop")

    def _stop_at(
        self, tokens: list[int], options: GenerationOptions, prompt: RenderedPrompt | None
    ) -> Generation | None:
        """The output up to where the stop rules end it (:meth:`GenerationOptions.stop_end`:
        the first stop string, or the end of the profile's answer), or None when they do not.

        Finds the fewest tokens whose text ends there (binary search: once a prefix ends, every
        longer prefix does, at the same place), then cuts the text at that place.
        """
        decode = functools.partial(self.tokenizer.decode, skip_special_tokens=True)
        if options.stop_end(decode(tokens), prompt) is None:
            return None
        lo, hi = 1, len(tokens)
        while lo < hi:
            mid = (lo + hi) // 2
            if options.stop_end(decode(tokens[:mid]), prompt) is not None:
                hi = mid
            else:
                lo = mid + 1
        text = decode(tokens[:lo])
        end = options.stop_end(text, prompt)
        return Generation(text=text[:end], output_tokens=lo, finish_reason="stop")

    # ------------------------------------------------------------------------- scoring
    supports_scoring = True

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Log-probabilities of each request's continuations, teacher-forced, in one forward pass.

        The continuations of a request share a token trie appended to its prompt; a custom
        attention mask lets each trie node see the prompt and its own ancestors only, with
        rotary positions continuing the prompt's ("tree attention"). Models whose attention
        implementation takes no custom mask (flash attention) score each continuation as its own
        sequence instead, with the same result. A request that cannot be encoded (an image for a
        text-only model) gets a per-item error.
        """
        if not requests:
            return []
        if len(requests) > 1 and transformers_vision.one_at_a_time(self, [r.prompt for r in requests]):
            return [r for q in requests for r in self.score([q])]
        results: list[ScoreResult | None] = [None] * len(requests)
        rows: list[tuple[int, tuple[list[int], Any, Any], TokenTrie]] = []
        prompts: list[RenderedPrompt] = []
        with self._lock:
            for i, request in enumerate(requests):
                try:
                    encoded, trie = self._encode_scoring(request)
                except (ImageError, MediaError) as exc:
                    results[i] = ScoreResult(error=exc)
                    continue
                rows.append((i, encoded, trie))
                prompts.append(request.prompt)
            if rows:
                tree = getattr(self.model.config, "_attn_implementation", "eager") in ("sdpa", "eager")
                # media prompts: one sequence per continuation, the model placing its own positions
                tree = tree and not any(
                    isinstance(e[1], (_media.MediaInputs, transformers_vision.MllamaImages))
                    for _, e, _ in rows
                )
                # Gemma 3: its own masks (images bidirectional), never a custom one
                gemma = transformers_vision.bidirectional_images(self.model)
                scorer = self._score_tree if tree and not gemma else self._score_flat
                if gemma and all(max(t.depths, default=1) == 1 for _, _, t in rows):
                    scorer = self._score_last  # one-token answers (Yes/No): one forward per prompt
                try:
                    pairs = [(e, t) for _, e, t in rows]
                    k, kv = 0, None
                    if tree and not gemma:  # the prefix cache needs the custom mask (flat scoring pads left)
                        k, kv = self._reuse(prompts, [ids for (ids, _, _), _ in pairs])
                    with self._torch.inference_mode():
                        if tree and not gemma:
                            scored = self._score_tree(pairs, k, kv)
                        else:
                            scored = scorer(pairs)
                except (RuntimeError, ValueError) as exc:
                    raise BackendError(f"scoring failed: {exc}", retryable=False) from exc
                for (i, _, _), logprobs in zip(rows, scored, strict=True):
                    results[i] = ScoreResult(logprobs=tuple(logprobs))
        return [r for r in results if r is not None]

    def _encode_scoring(self, request: ScoreRequest) -> tuple[tuple[list[int], Any, Any], TokenTrie]:
        prompt = forced_prompt(request.prompt, request.prefix)
        encoded = self.encode(prompt)
        return encoded, continuation_trie(
            prompt, request.continuations, self._encode_text, self._encode_text_uncached
        )

    def _score_tree(
        self, rows: Sequence[tuple[tuple[list[int], Any, Any], TokenTrie]], k: int = 0, kv: Any = None
    ) -> list[list[float]]:
        """Each row is ``[first k prompt tokens][padding][rest of the prompt][trie]``; with
        ``k`` the first ``k`` come from the prefix cache ``kv`` and only the rest is evaluated."""
        torch = self._torch
        device = self.model.device
        dtype = self.model.dtype if self.model.dtype.is_floating_point else torch.float32
        lengths = [len(ids) + len(trie) for (ids, _, _), trie in rows]
        width = max(lengths)
        keep = max(len(trie) for _, trie in rows) + 1
        n = len(rows)
        input_ids = torch.full((n, width), self._pad_id, dtype=torch.long)
        prompt_mask = torch.zeros((n, width), dtype=torch.long)
        allowed = torch.zeros((n, 1, width, width), dtype=torch.bool)
        positions = torch.zeros((n, width), dtype=torch.long)
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        for row, ((ids, _, _), trie) in enumerate(rows):
            off, size = width - lengths[row] + k, len(ids)  # the rest of the prompt starts at off
            start = off + size - k
            input_ids[row, :k] = torch.tensor(ids[:k], dtype=torch.long)
            input_ids[row, off:start] = torch.tensor(ids[k:], dtype=torch.long)
            input_ids[row, start:] = torch.tensor(trie.tokens, dtype=torch.long)
            prompt_mask[row, :k] = 1
            prompt_mask[row, off:start] = 1
            seen = prompt_mask[row].bool()
            allowed[row, 0, :start] = causal[:start] & seen  # the prompt: causal, padding unseen
            allowed[row, 0, start:] = seen  # every node sees the whole prompt...
            allowed[row, 0, start:, start:] = torch.tensor(
                _tree_block(trie), dtype=torch.bool
            )  # ...and its path
            idx = torch.arange(k, off)
            allowed[row, 0, idx, idx] = True  # padding rows see themselves (no empty softmax)
            positions[row, :k] = torch.arange(k)
            positions[row, off:start] = torch.arange(k, size)
            positions[row, start:] = size - 1 + torch.tensor(trie.depths, dtype=torch.long)
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
        pixels = [pv for (_, pv, _), _ in rows if pv is not None]
        grids = [g for (_, _, g), _ in rows if g is not None]
        if pixels:
            inputs["pixel_values"] = torch.cat(pixels, dim=0)
        if grids:  # Qwen2-VL style: 3D rotary positions from the image grids
            grid = torch.cat(grids, dim=0)
            inputs["image_grid_thw"] = grid
            positions = self._rope_positions(input_ids, prompt_mask, grid, rows, lengths, width, k)
        inputs["position_ids"] = positions
        if k:  # evaluate only what follows the cached prefix
            inputs["input_ids"] = input_ids[:, k:]
            inputs["attention_mask"] = mask[:, :, k:, :]
            inputs["position_ids"] = positions[..., k:]
            inputs[self._cache_kw] = self._prefix_cache(kv, k, n)
        inputs = {name: v if name == self._cache_kw else v.to(device) for name, v in inputs.items()}
        logits = self.model(**inputs, logits_to_keep=keep, use_cache=bool(k)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        out = []
        for row, (_, trie) in enumerate(rows):
            first = keep - len(trie) - 1  # kept index of the last prompt token
            at = [first + 1 + trie.parents[node] for node in range(len(trie))]
            picked = logprobs[row, at, list(trie.tokens)].tolist() if len(trie) else []
            out.append([float(sum(picked[node] for node in path)) for path in trie.paths])
        return out

    def _rope_positions(self, input_ids: Any, prompt_mask: Any, grid: Any, rows: Any, lengths: list[int],
                        width: int, k: int = 0) -> Any:  # fmt: skip
        """Qwen2-VL style 3D rotary positions: the model's own for the prompts (images get their
        grid positions; masked padding is skipped), then one text position per trie level after
        each prompt."""
        torch = self._torch
        rope = getattr(getattr(self.model, "model", None), "get_rope_index", None)
        if rope is None:
            raise BackendError("this model takes images but has no get_rope_index", retryable=False)
        mm = (input_ids == self._special_id(IMAGE_PAD)).to(torch.int) * prompt_mask
        positions, _ = rope(input_ids, mm_token_type_ids=mm, image_grid_thw=grid, attention_mask=prompt_mask)
        positions = positions.clone()
        for row, ((ids, _, _), trie) in enumerate(rows):
            start = width - lengths[row] + len(ids)
            nxt = int(positions[:, row, prompt_mask[row].bool()].max()) + 1
            depths = torch.tensor(trie.depths, dtype=positions.dtype)
            positions[:, row, start:] = (nxt - 1 + depths).to(positions.device)
        return positions

    def _score_last(self, rows: Sequence[tuple[tuple[list[int], Any, Any], TokenTrie]]) -> list[list[float]]:
        """Continuations of one token each: one forward per prompt, log-probs at its last token."""
        logits = self.model(**self._pad([e for e, _ in rows]), logits_to_keep=1, use_cache=False).logits
        logprobs = self._torch.log_softmax(logits[:, -1].float(), dim=-1)
        return [[float(logprobs[row, trie.tokens[path[0]]]) for path in trie.paths]
                for row, (_, trie) in enumerate(rows)]  # fmt: skip

    def _score_flat(self, rows: Sequence[tuple[tuple[list[int], Any, Any], TokenTrie]]) -> list[list[float]]:
        """One sequence per continuation (for attention implementations without custom masks)."""
        torch = self._torch
        flat, spans = [], []
        for (ids, pv, grid), trie in rows:
            for path in trie.paths:
                tokens = [trie.tokens[node] for node in path]
                flat.append((ids + tokens, pv, grid))
                spans.append(tokens)
        keep = max(len(t) for t in spans) + 1
        logits = self.model(**self._pad(flat), logits_to_keep=keep, use_cache=False).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        values = []
        for row, tokens in enumerate(spans):
            at = list(range(keep - len(tokens) - 1, keep - 1))
            values.append(float(logprobs[row, at, tokens].sum()) if tokens else 0.0)
        out, i = [], 0
        for _, trie in rows:
            out.append(values[i : i + len(trie.paths)])
            i += len(trie.paths)
        return out

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


@functools.lru_cache(maxsize=64)
def _tree_block(trie: TokenTrie) -> list[list[bool]]:
    """Which trie nodes each node attends to: its ancestors and itself."""
    block = [[False] * len(trie) for _ in range(len(trie))]
    for node in range(len(trie)):
        for a in (*trie.ancestors(node), node):
            block[node][a] = True
    return block


def _answer_stop(
    tokenizer: Any, start: int, options: GenerationOptions, prompts: Sequence[RenderedPrompt]
) -> Any:
    """transformers stopping criteria: a row is done once the stop rules end its output
    (:meth:`GenerationOptions.stop_end`). Only rows whose newest tokens hold a stop string are
    decoded in full, so a ``</result>`` quoted in the reasoning costs a few decodes, and
    generation goes on."""
    transformers = require("transformers", extra=_EXTRA)
    torch = require("torch", extra=_EXTRA)
    stops = [s for s in options.stop if s]
    # the newest tokens that can hold a stop string that the newest token completes
    window = max((len(s) for s in stops), default=0) + 2

    class AnswerStop(transformers.StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            for row in range(input_ids.shape[0]):
                tail = tokenizer.decode(input_ids[row, -window:], skip_special_tokens=True)
                if any(s in tail for s in stops):
                    text = tokenizer.decode(input_ids[row, start:], skip_special_tokens=True)
                    done[row] = options.stop_end(text, prompts[row]) is not None
            return done

    return transformers.StoppingCriteriaList([AnswerStop()])


def _accepts(model: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic wrappers
        return False


def from_transformers(model: Any, processor: Any, **kwargs: Any) -> TransformersBackend:
    """Deprecated: use ``TransformersBackend(model, processor)``."""
    _deprecated.warn(
        "guardrail.backends.transformers.from_transformers", "TransformersBackend(model, processor)"
    )
    return TransformersBackend(model, processor, **kwargs)


def _load_parts(
    transformers: Any,
    path: str,
    common: dict[str, Any],
    dtype: Any,
    device_map: Any,
    model_kwargs: dict[str, Any],
) -> tuple[Any, Any, Any]:
    """The model, its processor (or tokenizer) and config, read from ``path``."""
    config = transformers.AutoConfig.from_pretrained(path, **common)
    load = dict(common, dtype=dtype, use_safetensors=True, **model_kwargs)
    if device_map is not None:
        load["device_map"] = device_map
    special = transformers_vision.model_class(transformers, config)
    if special is not None:
        model = special.from_pretrained(path, **load)
        processor = transformers.AutoProcessor.from_pretrained(path, **common)
    elif getattr(config, "vision_config", None) is not None:
        model = transformers.AutoModelForImageTextToText.from_pretrained(path, **load)
        processor = transformers.AutoProcessor.from_pretrained(path, **common)
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(path, **load)
        processor = transformers.AutoTokenizer.from_pretrained(path, **common)
    return model, processor, config


@contextlib.contextmanager
def _progress_bars(transformers: Any, show: bool) -> Iterator[None]:
    """transformers' progress bars (``Loading weights``) on or off while loading, then as before."""
    logging = transformers.utils.logging
    was = logging.is_progress_bar_enabled()
    if bool(show) == was:
        yield
        return
    (logging.enable_progress_bar if show else logging.disable_progress_bar)()
    try:
        yield
    finally:
        (logging.enable_progress_bar if was else logging.disable_progress_bar)()
