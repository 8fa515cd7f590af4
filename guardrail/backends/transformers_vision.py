"""transformers: what the backend needs for vision families other than Qwen2.5-VL (Llama 4).

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
"""

from __future__ import annotations

from typing import Any

from guardrail.backends.base import prompt_tokens
from guardrail.errors import ImageError, UnsupportedError
from guardrail.profiles.base import ImageSlot, RenderedPrompt

__all__ = ["encode", "prepare_model", "uses_processor_images"]


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
    """Whether the model's images go through :func:`encode` (Llama 4) rather than the Qwen path."""
    return getattr(getattr(model, "config", None), "model_type", None) in ("llama4", "mllama")


def encode(backend: Any, prompt: RenderedPrompt) -> tuple[list[int], Any, Any]:
    """Token ids and ``pixel_values`` (in the model's dtype) for ``prompt``; no grid."""
    if backend.model.config.model_type == "mllama":
        raise UnsupportedError(
            "images for Mllama (Llama Guard 3 11B Vision) are not supported by the transformers backend yet; "
            "use Llama Guard 4 for images, or serve the model with vLLM (Guard.from_endpoint)"
        )
    processor = backend.processor
    if getattr(processor, "image_processor", None) is None:
        raise ImageError("this model takes no images (text-only guard)")
    placeholder = prompt.image_marker
    expansions: list[list[int]] = []
    pixels = []
    for image in prompt.images:
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
