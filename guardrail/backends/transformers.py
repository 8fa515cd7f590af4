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

import functools
import os
import threading
from collections.abc import Sequence
from typing import Any

from guardrail._deps import require
from guardrail.backends.base import Backend, Generation, GenerationOptions
from guardrail.errors import BackendError, ConfigurationError, ImageError
from guardrail.profiles import profile_for_model_type
from guardrail.profiles.base import ImageSlot, RenderedPrompt, Special

__all__ = ["TransformersBackend", "from_transformers"]

_EXTRA = "transformers"
# Tokens a guard must never generate (random test models like emitting them) and end-of-turn
# tokens, looked up by name so the same code serves Qwen and Llama vocabularies.
_VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>")


class TransformersBackend(Backend):
    """Run a guard model with transformers.

    Wrap a model you already loaded (``TransformersBackend(model, processor)``) or load one with
    :meth:`from_pretrained`. ``processor`` is an ``AutoProcessor`` for vision-language models or
    a tokenizer for text models.
    """

    name = "transformers"

    def __init__(self, model: Any, processor: Any, *, model_name: str | None = None):
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.image_processor = getattr(processor, "image_processor", None)
        self.model_name = model_name or getattr(getattr(model, "config", None), "_name_or_path", None)
        self._lock = threading.Lock()
        self._torch = require("torch", extra=_EXTRA)
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self._pad_id = tok.pad_token_id
        self._end_ids = self._token_ids(_END_TOKENS)
        for ids in (getattr(model.generation_config, "eos_token_id", None), tok.eos_token_id):
            for i in ids if isinstance(ids, (list, tuple)) else [ids]:
                if i is not None and i not in self._end_ids:
                    self._end_ids.append(int(i))
        self._suppress_ids = self._token_ids(_VISION_TOKENS)
        # Qwen2.5-VL computes its 3D (M-RoPE) positions of image tokens from `mm_token_type_ids`
        # (1 = image token, as the processor marks them); without it transformers falls back to
        # text positions, which is not what the model was trained with.
        self._image_pad_id = self._token_ids(("<|image_pad|>",))
        self._wants_mm_types = _accepts(model, "mm_token_type_ids")
        self._special_cache: dict[str, int] = {}
        # Template text (the system prompt above all) repeats on every call: remember its ids.
        self._encode_text = functools.lru_cache(maxsize=256)(self._encode_text_uncached)

    # ------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | None = None,
        dtype: Any = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        device_map: Any = None,
        **model_kwargs: Any,
    ) -> TransformersBackend:
        """Load a guard from a local directory or a Hugging Face hub id.

        ``device``: ``"cuda"``, ``"cpu"``, ``"cuda:1"``... (default: CUDA when available).
        ``dtype``: a torch dtype or its name (default: bfloat16 on GPU, float32 on CPU).
        ``device_map``: passed to transformers (e.g. ``"auto"`` to spread a large model over
        several GPUs); when given, ``device`` is ignored.
        """
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
            config = transformers.AutoConfig.from_pretrained(path, **common)
            load = dict(common, dtype=dtype, use_safetensors=True, **model_kwargs)
            if device_map is not None:
                load["device_map"] = device_map
            if getattr(config, "vision_config", None) is not None:
                model = transformers.AutoModelForImageTextToText.from_pretrained(path, **load)
                processor = transformers.AutoProcessor.from_pretrained(path, **common)
            else:
                model = transformers.AutoModelForCausalLM.from_pretrained(path, **load)
                processor = transformers.AutoTokenizer.from_pretrained(path, **common)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load model {path!r}: {exc}", retryable=False) from exc
        if device_map is None:
            model.to(device)
        model.eval()
        return cls(model, processor, model_name=path)

    def default_profile(self) -> str | None:
        config = self.model.config
        return profile_for_model_type(getattr(config, "model_type", None), config.to_dict())

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
        tok = self.tokenizer
        pixel_values = grid = None
        if prompt.images:
            if self.image_processor is None:
                raise ImageError("this model takes no images (text-only guard)")
            processed = self.image_processor(images=list(prompt.images), return_tensors="pt")
            pixel_values, grid = processed["pixel_values"], processed["image_grid_thw"]
            merge = int(getattr(self.image_processor, "merge_size", 2))
        ids: list[int] = []
        if prompt.add_bos and tok.bos_token_id is not None:
            ids.append(tok.bos_token_id)
        for part in prompt.parts:
            if isinstance(part, str):
                ids.extend(self._encode_text(part))
            elif isinstance(part, Special):
                ids.append(self._special_id(part.token))
            elif isinstance(part, ImageSlot):
                n = int(grid[part.index].prod()) // (merge * merge)
                ids.append(self._special_id("<|vision_start|>"))
                ids.extend([self._special_id("<|image_pad|>")] * n)
                ids.append(self._special_id("<|vision_end|>"))
        return ids, pixel_values, grid

    def _batch(self, prompts: Sequence[RenderedPrompt]) -> dict[str, Any]:
        torch = self._torch
        encoded = [self.encode(p) for p in prompts]
        width = max(len(ids) for ids, _, _ in encoded)
        input_ids = torch.full((len(encoded), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, (ids, _, _) in enumerate(encoded):  # left padding
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
        pixels = [pv for _, pv, _ in encoded if pv is not None]
        if pixels and self._wants_mm_types and self._image_pad_id:
            batch["mm_token_type_ids"] = (input_ids == self._image_pad_id[0]).long()
        if pixels:
            batch["pixel_values"] = torch.cat(pixels, dim=0)
            batch["image_grid_thw"] = torch.cat([g for _, _, g in encoded if g is not None], dim=0)
        device = self.model.device
        return {k: v.to(device) for k, v in batch.items()}

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
        if options.stop:
            kwargs["stop_strings"] = list(options.stop)
        return transformers.GenerationConfig(**kwargs)

    def generate(self, prompts: Sequence[RenderedPrompt], options: GenerationOptions) -> list[Generation]:
        if not prompts:
            return []
        torch = self._torch
        with self._lock:
            batch = self._batch(prompts)
            config = self.generation_config(options)
            extra = {"tokenizer": self.tokenizer} if options.stop else {}
            if options.seed is not None:
                torch.manual_seed(options.seed)
            try:
                with torch.inference_mode():
                    out = self.model.generate(**batch, generation_config=config, **extra)
            except (RuntimeError, ValueError) as exc:
                raise BackendError(f"generation failed: {exc}", retryable=False) from exc
        new = out[:, batch["input_ids"].shape[1] :].tolist()
        return [self._finish(row, options) for row in new]

    def _finish(self, tokens: list[int], options: GenerationOptions) -> Generation:
        ends = set(self._end_ids)
        cut = next((i for i, t in enumerate(tokens) if t in ends), None)
        if cut is None:
            kept = [t for t in tokens if t != self._pad_id] if self._pad_id not in ends else tokens
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            reason = "length" if len(kept) >= options.max_new_tokens else "stop"
            return Generation(text=text, output_tokens=len(kept), finish_reason=reason)
        text = self.tokenizer.decode(tokens[:cut], skip_special_tokens=True)
        return Generation(text=text, output_tokens=cut + 1, finish_reason="stop")

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


def _accepts(model: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic wrappers
        return False


def from_transformers(model: Any, processor: Any, **kwargs: Any) -> TransformersBackend:
    """Wrap an already loaded transformers model and its processor (or tokenizer)."""
    return TransformersBackend(model, processor, **kwargs)
