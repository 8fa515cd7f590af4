"""The tiny random Qwen2.5-Omni thinker behind ``tiny-model --profile guardreasoner-omni``.

The real architecture (``Qwen2_5OmniThinkerForConditionalGeneration``: text model, vision tower,
audio tower) at toy sizes, with the stock ``Qwen2_5OmniProcessor`` (``Qwen2VLImageProcessor``,
``Qwen2VLVideoProcessor``, a 128-bin ``WhisperFeatureExtractor`` with Qwen2.5-Omni's 300 s
window) and Qwen2.5-Omni's chat template. See ../shared/docs/feasibility.md for what was
checked: the tokenizer must name its media tokens, the config needs ``vision_start_token_id``
(video generation reads it), and a 30 s feature window would silently cut audio.
"""

from __future__ import annotations

from typing import Any

__all__ = ["QWEN2_5_OMNI_CHAT_TEMPLATE", "build_omni"]

# Qwen2.5-Omni's chat template (as shipped with Qwen/Qwen2.5-Omni-7B; transformers' processor
# tests carry the same text).
QWEN2_5_OMNI_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant."
    "<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio "
    "{{ audio_count.value }}: {% endif %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_omni(transformers: Any, tokenizer: Any) -> tuple[Any, Any, Any, dict[str, int]]:
    """``(model, processor, config, vocab)`` of a tiny thinker (about 0.25M parameters)."""
    vocab = tokenizer.get_vocab()
    config = transformers.Qwen2_5OmniThinkerConfig(
        text_config={
            "vocab_size": len(vocab), "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            "bos_token_id": None, "eos_token_id": vocab["<|im_end|>"], "pad_token_id": vocab["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 3, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [2],
        },
        audio_config={
            "num_mel_bins": 128, "encoder_layers": 1, "encoder_attention_heads": 2, "encoder_ffn_dim": 64,
            "d_model": 32, "output_dim": 64, "max_source_positions": 1500, "n_window": 100,
        },
        audio_token_index=vocab["<|AUDIO|>"], image_token_index=vocab["<|IMAGE|>"],
        video_token_index=vocab["<|VIDEO|>"], audio_start_token_id=vocab["<|audio_bos|>"],
        audio_end_token_id=vocab["<|audio_eos|>"], vision_start_token_id=vocab["<|vision_bos|>"],
        vision_end_token_id=vocab["<|vision_eos|>"], user_token_id=vocab.get("user", 0),
        tie_word_embeddings=False,
    )  # fmt: skip
    model = transformers.Qwen2_5OmniThinkerForConditionalGeneration(config)
    processor = transformers.Qwen2_5OmniProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=112 * 112),
        video_processor=transformers.Qwen2VLVideoProcessor(),
        feature_extractor=transformers.WhisperFeatureExtractor(feature_size=128, chunk_length=300),
        tokenizer=tokenizer,
        chat_template=QWEN2_5_OMNI_CHAT_TEMPLATE,
    )
    return model, processor, config, vocab
