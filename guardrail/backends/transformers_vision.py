"""transformers: what the backend needs for vision families other than Qwen2.5-VL (Llama 4, Gemma 3).

- :func:`prepare_model`: Llama 4's known transformers problems, worked around for that model
  type only: transformers 5.24 fails every ``Llama4ForConditionalGeneration`` forward with
  ``'MoeCausalLMOutputWithPast' object has no attribute 'image_outputs'`` (the output class gets
  the attribute, as None, when it lacks it), and Llama-Guard-4-12B's config ships
  ``attention_chunk_size: null``, which recent transformers versions cannot run (set to 8192,
  Llama 4 Scout's value; a guard prompt is far shorter).
- :func:`encode`: a prompt with images for a model whose processor expands its own image
  placeholder (Llama 4's ``<|image|>`` becomes ``<|image_start|>``, patches, tile separators and
  ``<|image_end|>``): each image slot is expanded by running the processor on that placeholder
  and that one image, so user text is still tokenized as plain text, as everywhere else.
  Gemma 3 (ShieldGemma 2): the slot becomes ``<start_of_image>``, the soft tokens and
  ``<end_of_image>`` (the profile writes the ``\n\n`` the processor puts around them).
- ShieldGemma 2 (:func:`model_class`, :func:`unwrap`): loaded as its classifier, scored with the
  Gemma 3 inside it; Gemma 3's image tokens get ``token_type_ids`` and no tree attention mask.
- Mllama (Llama Guard 3 11B Vision): images reach the text model through cross-attention, not
  as tokens: the prompt keeps its one ``<|image|>`` token (the processor does not expand it),
  :func:`encode` returns :class:`MllamaImages` (``pixel_values``, ``aspect_ratio_ids``,
  ``aspect_ratio_mask``, tile counts) and :func:`mllama_batch` builds ``cross_attention_mask``
  from the padded rows with the processor's own functions (each token from an image's token on
  attends to that image's tiles). A narrow path: prompts with images go one per forward
  (:func:`one_at_a_time`), scored one sequence per continuation, never from the prefix cache
  (:func:`cross_attention`: a cross-attention layer's cache holds the image, not tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guardrail.backends.base import prompt_tokens
from guardrail.errors import BackendError, ImageError
from guardrail.profiles.base import ImageSlot, RenderedPrompt

__all__ = [
    "GEMMA3_TYPES",
    "MllamaImages",
    "bidirectional_images",
    "cross_attention",
    "encode",
    "mllama_batch",
    "model_class",
    "one_at_a_time",
    "prepare_model",
    "unwrap",
    "uses_processor_images",
]


def prepare_model(model: Any) -> None:
    """Apply the Llama 4 workarounds (see the module docstring) when ``model`` is a Llama 4."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "llama4":
        return
    from transformers import modeling_outputs

    cls = getattr(modeling_outputs, "MoeCausalLMOutputWithPast", None)
    if cls is not None and not hasattr(cls, "image_outputs"):
        cls.image_outputs = None
    text = config.get_text_config()
    if getattr(text, "attention_chunk_size", 0) is None:
        text.attention_chunk_size = 8192


def uses_processor_images(model: Any) -> bool:
    """Whether the model's images go through :func:`encode` (Llama 4, Gemma 3) rather than the Qwen path."""
    return getattr(getattr(model, "config", None), "model_type", None) in ("llama4", "mllama", *GEMMA3_TYPES)


#: Gemma 3 layouts (ShieldGemma 2): images are attended bidirectionally within their block, which
#: the model builds from ``token_type_ids`` (1 = image soft token); a custom attention mask
#: (tree scoring) would drop it, so they are scored without one.
GEMMA3_TYPES = ("gemma3", "shieldgemma2")


def model_class(transformers: Any, config: Any) -> Any:
    """The class to load a model of ``config`` with, where the Auto classes would pick the wrong
    one (ShieldGemma 2: its classifier, which holds the generative Gemma 3), else None."""
    if getattr(config, "model_type", None) == "shieldgemma2":
        return transformers.ShieldGemma2ForImageClassification
    return None


def unwrap(model: Any) -> Any:
    """The generative model inside a classifier (``ShieldGemma2ForImageClassification.model``,
    a Gemma 3 with the same config): the backend scores with its full vocabulary logits."""
    if type(model).__name__ == "ShieldGemma2ForImageClassification":
        return model.model
    return model


def bidirectional_images(model: Any) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) in GEMMA3_TYPES


def encode(backend: Any, prompt: RenderedPrompt) -> tuple[list[int], Any, Any]:
    """Token ids and ``pixel_values`` (in the model's dtype) for ``prompt``; no grid."""
    processor = backend.processor
    if getattr(processor, "image_processor", None) is None:
        raise ImageError("this model takes no images (text-only guard)")
    if cross_attention(backend.model):
        return _encode_mllama(backend, prompt)
    placeholder = prompt.image_marker
    expansions: list[list[int]] = []
    pixels = []
    gemma = backend.model.config.model_type in GEMMA3_TYPES
    for image in prompt.images:
        if gemma:  # the profile writes the "\n\n" around it; the slot is the image's tokens
            config = backend.model.config
            n = int(getattr(processor, "image_seq_length", config.mm_tokens_per_image))
            expansions.append(
                [config.boi_token_index, *[config.image_token_index] * n, config.eoi_token_index]
            )
            pixels.append(processor.image_processor(images=[image], return_tensors="pt")["pixel_values"])
            continue
        out = processor(text=placeholder, images=[image], return_tensors="pt", add_special_tokens=False)
        expansions.append([int(i) for i in out["input_ids"][0]])
        pixels.append(out["pixel_values"])
    ids: list[int] = []
    for piece in prompt_tokens(
        prompt, backend._encode_text, backend._special_id, backend.tokenizer.bos_token_id
    ):
        if isinstance(piece, ImageSlot):
            ids.extend(expansions[piece.index])
        else:
            ids.extend(piece)
    torch = backend._torch
    dtype = backend.model.dtype if backend.model.dtype.is_floating_point else torch.float32
    pixel_values = torch.cat(pixels, dim=0).to(dtype) if pixels else None
    return ids, pixel_values, None


# ----------------------------------------------------------------------------- Mllama
def cross_attention(model: Any) -> bool:
    """Whether the model reads images through cross-attention layers (Mllama)."""
    return getattr(getattr(model, "config", None), "model_type", None) == "mllama"


def one_at_a_time(backend: Any, prompts: Sequence[RenderedPrompt]) -> bool:
    """Whether these prompts go one per forward: Mllama, when one of them has images."""
    return cross_attention(backend.model) and any(p.images for p in prompts)


@dataclass
class MllamaImages:
    """One prompt's images for Mllama's vision model: ``pixel_values`` ``(1, images, tiles, 3,
    H, W)`` in the model's dtype, ``aspect_ratio_ids`` ``(1, images)``, ``aspect_ratio_mask``
    ``(1, images, tiles)``, and each image's tile count."""

    pixel_values: Any
    aspect_ratio_ids: Any
    aspect_ratio_mask: Any
    num_tiles: list[int]


def _encode_mllama(backend: Any, prompt: RenderedPrompt) -> tuple[list[int], MllamaImages, None]:
    out = backend.processor.image_processor(images=[list(prompt.images)], return_tensors="pt")
    image_id = int(backend.model.config.image_token_index)
    ids: list[int] = []
    for piece in prompt_tokens(
        prompt, backend._encode_text, backend._special_id, backend.tokenizer.bos_token_id
    ):
        ids.extend([image_id] if isinstance(piece, ImageSlot) else piece)
    torch = backend._torch
    dtype = backend.model.dtype if backend.model.dtype.is_floating_point else torch.float32
    images = MllamaImages(
        pixel_values=out["pixel_values"].to(dtype),
        aspect_ratio_ids=out["aspect_ratio_ids"],
        aspect_ratio_mask=out["aspect_ratio_mask"],
        num_tiles=[int(n) for n in out["num_tiles"][0]],
    )
    return ids, images, None


def mllama_batch(
    backend: Any, encoded: Sequence[tuple[list[int], Any, Any]], input_ids: Any
) -> dict[str, Any]:
    """The image inputs of padded rows whose prompts all have the same number of images (the
    backend sends Mllama image prompts one at a time): the vision model's, concatenated, and
    ``cross_attention_mask`` ``(rows, width, images, tiles)`` from the padded token ids."""
    from transformers.models.mllama.processing_mllama import (
        convert_sparse_cross_attention_mask_to_dense,
        get_cross_attention_token_mask,
    )

    images = [pv for _, pv, _ in encoded]
    if (
        not all(isinstance(pv, MllamaImages) for pv in images)
        or len({len(pv.num_tiles) for pv in images}) != 1
    ):
        raise BackendError("Mllama prompts with and without images cannot share a batch", retryable=False)
    torch = backend._torch
    image_id = int(backend.model.config.image_token_index)
    rows = input_ids.tolist()
    dense = convert_sparse_cross_attention_mask_to_dense(
        [get_cross_attention_token_mask(row, image_id) for row in rows],
        num_tiles=[pv.num_tiles for pv in images],
        max_num_tiles=int(images[0].aspect_ratio_mask.shape[-1]),
        length=input_ids.shape[1],
    )
    return {
        "pixel_values": torch.cat([pv.pixel_values for pv in images], dim=0),
        "aspect_ratio_ids": torch.cat([pv.aspect_ratio_ids for pv in images], dim=0),
        "aspect_ratio_mask": torch.cat([pv.aspect_ratio_mask for pv in images], dim=0),
        "cross_attention_mask": torch.as_tensor(dense, dtype=torch.long),
    }
