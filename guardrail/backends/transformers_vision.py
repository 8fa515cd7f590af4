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
"""

from __future__ import annotations

from typing import Any

from guardrail.backends.base import prompt_tokens
from guardrail.errors import ImageError, UnsupportedError
from guardrail.profiles.base import ImageSlot, RenderedPrompt

__all__ = [
    "GEMMA3_TYPES",
    "bidirectional_images",
    "encode",
    "model_class",
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
