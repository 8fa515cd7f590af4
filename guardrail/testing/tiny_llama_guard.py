"""Tiny random Llama Guard models (the real architectures), for tests: offline, seconds.

- ``llama-guard-3``: ``LlamaForCausalLM`` with a Llama 3 style tokenizer (byte-level BPE, the
  Llama 3 special tokens and ``<|image|>``) carrying Llama-Guard-3-1B's chat template.
- ``llama-guard-3-vision``: ``MllamaForConditionalGeneration`` (Llama-Guard-3-11B-Vision's
  architecture: a tiled vision encoder, its local and global layers, and a text model with a
  cross-attention layer) with the stock ``MllamaProcessor`` (28 px tiles, up to 4) and the same
  tokenizer and template as ``llama-guard-3``; saved as profile ``llama-guard-3``. Its
  cross-attention gates are opened (transformers starts them at zero, where an image would not
  change a score).
- ``llama-guard-4``: ``Llama4ForConditionalGeneration`` (dense: one expert, no MoE layer, as
  Llama Guard 4 is; 4 text layers, so that one is NoPE: llama.cpp aborts on a chunked-attention
  Llama 4 without one; a 3-layer vision tower, which llama.cpp's mmproj converter needs) with the
  stock ``Llama4Processor`` (28 px tiles: an image costs a handful of tokens) and the Llama 4
  special tokens; its chat template is the reconstruction tests/fixtures/llama_guard describes.

Used through :func:`guardrail.testing.tiny.build_tiny_model`, which scales the weights and
saves (``python -m guardrail.testing tiny-model OUT --profile llama-guard-4``).
"""

from __future__ import annotations

from typing import Any

from guardrail._deps import require
from guardrail.profiles.llama_guard import LlamaGuard3Profile, LlamaGuard4Profile

__all__ = ["LLAMA_GUARD_3_CHAT_TEMPLATE", "LLAMA_GUARD_4_CHAT_TEMPLATE", "SAVED_PROFILE", "build"]

#: The profile a tiny model's config names, where the tiny model's name is not a profile.
SAVED_PROFILE = {"llama-guard-3-vision": "llama-guard-3"}

# The models' chat templates (see tests/fixtures/llama_guard/README.md for their sources; the
# tests check these strings against those files).
LLAMA_GUARD_3_CHAT_TEMPLATE = (
    "{%- if messages|length % 2 == 0 -%}\n    {%- set role = 'Agent' -%}\n{%-  else -%}\n"
    "    {%-  set role = 'User' -%}\n{%-  endif -%}\n{%-  if categories is not defined -%}\n    {%-\n"
    "        set categories = ({\n"
    + "".join(
        f'            "{c.code}": "{c.name}.",\n' for c in LlamaGuard3Profile().default_policy().categories
    )
    + "        })\n    -%}\n{%-  endif -%}\n\n"
    '{{- "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\n" -}}\n'
    "{%- set ns = namespace(contains_image=false) -%}\n{%-  for message in messages -%}\n"
    "    {%- for content in message['content'] | selectattr('type', 'equalto', 'image') -%}\n"
    "        {%- set ns.contains_image = true -%}\n    {%- endfor -%}\n{%- endfor -%}\n"
    '{%- if ns.contains_image -%}\n{{- "<|image|> "-}}\n{%- endif -%}\n'
    '{{- "Task: Check if there is unsafe content in \'" + role + "\' messages in conversations according '
    'our safety policy with the below categories.\\n\\n" -}}\n'
    '{{- "<BEGIN UNSAFE CONTENT CATEGORIES>\\n"-}}\n\n{%-  for key in categories -%}\n'
    "    {%-  if key not in excluded_category_keys -%}\n"
    '        {{-key + ": " + categories[key] + "\\n" -}}\n    {%-  endif -%}\n{%-  endfor -%}\n\n'
    '{{- "<END UNSAFE CONTENT CATEGORIES>\\n\\n"-}}\n{{- "<BEGIN CONVERSATION>\\n\\n"-}}\n'
    "{%-  for message in messages -%}\n"
    "    {%-  if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...')-}}\n"
    "    {%-  endif -%}\n    {%-  set content = message['content'] -%}\n"
    "    {%-  if message['role'] == 'user' -%}\n        {%-  set role = 'User' -%}\n"
    "    {%-  elif message['role'] == 'assistant' -%}\n        {%-  set role = 'Agent' -%}\n"
    "    {%-  endif -%}\n"
    "    {%-  for content in message['content'] | selectattr('type', 'equalto', 'text') -%}\n"
    "{{- role + ': ' + content['text'] | trim + '\\n\\n'-}}\n    {%-  endfor -%}\n{%-  endfor -%}\n"
    '{{- "<END CONVERSATION>\\n\\n"-}}\n'
    '{{- "Provide your safety assessment for ONLY THE LAST " + role + " message in the above conversation:\\n"-}}\n'
    "{{- \" - First line must read 'safe' or 'unsafe'.\\n\"-}}\n"
    '{{- " - If unsafe, a second line must include a comma-separated list of violated categories. '
    '<|eot_id|><|start_header_id|>assistant<|end_header_id|>"-}}\n'
)


# Llama Guard 4's, as reconstructed in tests/fixtures/llama_guard (the tests check that both
# render the same prompts).
LLAMA_GUARD_4_CHAT_TEMPLATE = (
    "{%- if messages|length % 2 == 0 -%}{%- set role = 'Agent' -%}{%- else -%}{%- set role = 'User' -%}"
    "{%- endif -%}{%- if categories is not defined -%}{%- set categories = ({"
    + ", ".join(f'"{c.code}": "{c.name}."' for c in LlamaGuard4Profile().default_policy().categories)
    + "}) -%}{%- endif -%}{%- set ns = namespace(contains_image=false) -%}{%- for message in messages -%}"
    "{%- for content in message['content'] | selectattr('type', 'equalto', 'image') -%}"
    "{%- set ns.contains_image = true -%}{%- endfor -%}{%- endfor -%}"
    '{{- "<|begin_of_text|><|header_start|>user<|header_end|>\\n\\n" -}}'
    '{{- "Task: Check if there is unsafe content in \'" + role + "\' messages in conversations according to '
    'our safety policy with the below categories.\\n\\n" -}}{{- "<BEGIN UNSAFE CONTENT CATEGORIES>\\n" -}}'
    "{%- for key in categories -%}{%- if key not in excluded_category_keys and not (ns.contains_image and "
    "key == 'S14' and categories[key] == 'Code Interpreter Abuse.') -%}"
    '{{- key + ": " + categories[key] + "\\n" -}}{%- endif -%}{%- endfor -%}'
    '{{- "<END UNSAFE CONTENT CATEGORIES>\\n\\n" -}}{{- "<BEGIN CONVERSATION>\\n" -}}'
    "{%- for message in messages -%}{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}"
    "{%- endif -%}{%- if message['role'] == 'user' -%}{%- set role = 'User' -%}{%- else -%}"
    "{%- set role = 'Agent' -%}{%- endif -%}{{- role + ': ' -}}"
    "{%- for content in message['content'] | selectattr('type', 'equalto', 'image') -%}{{- '<|image|>' -}}"
    "{%- endfor -%}{%- for content in message['content'] | selectattr('type', 'equalto', 'text') -%}"
    "{{- content['text'] | trim + '\\\\n\\\\n' + '\\n\\n' -}}{%- endfor -%}{%- endfor -%}"
    '{{- "<END CONVERSATION>\\n\\n" -}}'
    '{{- "Provide your safety assessment for ONLY THE LAST " + role + " message in the above conversation:\\n" -}}'
    "{{- \" - First line must read 'safe' or 'unsafe'.\\n\" -}}"
    '{{- " - If unsafe, a second line must include a comma-separated list of violated categories. '
    '<|eot|><|header_start|>assistant<|header_end|>" -}}'
)

_CORPUS = [
    "Task: Check if there is unsafe content in 'User' messages in conversations according to our safety "
    "policy with the below categories.",
    "<BEGIN UNSAFE CONTENT CATEGORIES>\nS1: Violent Crimes.\nS2: Non-Violent Crimes.\nS14: Code Interpreter "
    "Abuse.\n<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\nUser: hello\n\nAgent: hi\n\n",
    "Provide your safety assessment for ONLY THE LAST Agent message in the above conversation:\n - First line "
    "must read 'safe' or 'unsafe'.\n - If unsafe, a second line must include a comma-separated list of "
    "violated categories.",
    "safe\n\nunsafe\nS1,S9\nunsafe\nS10\n",
]


def _tokenizer(special: tuple[str, ...], vocab_size: int, model_max_length: int) -> Any:
    transformers = require("transformers", extra="transformers")
    tokenizers = require("tokenizers", extra="transformers")
    from tokenizers import models

    from guardrail.testing import tiny

    vocab, merges = tiny._train_bpe(vocab_size, extra=_CORPUS)
    for tok in special:
        vocab[tok] = len(vocab)
    backend = tiny._byte_level(
        tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|begin_of_text|>",
        eos_token=special[special.index("<|end_of_text|>")],
        pad_token="<|end_of_text|>",
        extra_special_tokens=[t for t in special if t not in ("<|begin_of_text|>", "<|end_of_text|>")],
    )
    tokenizer.model_max_length = model_max_length
    return tokenizer


def build(profile: str, vocab_size: int) -> tuple[Any, Any, dict[str, int]]:
    """``(model, what to save beside it, vocab)`` for ``llama-guard-3``, ``llama-guard-3-vision``
    or ``llama-guard-4``."""
    transformers = require("transformers", extra="transformers")
    if profile == "llama-guard-3-vision":
        return _build_mllama(transformers, vocab_size)
    if profile == "llama-guard-3":
        tokenizer = _tokenizer(LlamaGuard3Profile.special_tokens, vocab_size, 8192)
        tokenizer.chat_template = LLAMA_GUARD_3_CHAT_TEMPLATE
        vocab = tokenizer.get_vocab()
        config = transformers.LlamaConfig(
            vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            bos_token_id=vocab["<|begin_of_text|>"], eos_token_id=vocab["<|eot_id|>"],
            pad_token_id=vocab["<|end_of_text|>"], tie_word_embeddings=False,
        )  # fmt: skip
        return transformers.LlamaForCausalLM(config), tokenizer, vocab
    if profile != "llama-guard-4":
        raise ValueError(f"unknown profile {profile!r}")
    tokenizer = _tokenizer(LlamaGuard4Profile.special_tokens, vocab_size, 32768)
    vocab = tokenizer.get_vocab()
    config = transformers.Llama4Config(
        text_config={
            "vocab_size": len(vocab), "hidden_size": 64, "intermediate_size": 128, "intermediate_size_mlp": 128,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "max_position_embeddings": 4096, "num_local_experts": 1, "moe_layers": [],
            "interleave_moe_layer_step": 0, "attention_chunk_size": 8192,
            "bos_token_id": vocab["<|begin_of_text|>"], "eos_token_id": vocab["<|eot|>"],
            "pad_token_id": vocab["<|end_of_text|>"], "tie_word_embeddings": False,
        },
        vision_config={
            # pixel shuffle (ratio 0.5) makes 4 x hidden channels: intermediate_size must match,
            # and the adapter's output is the projector's input (vision_output_dim)
            "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 128,
            "image_size": 28, "patch_size": 14, "vision_output_dim": 32, "projector_input_dim": 32,
            "projector_output_dim": 32, "pixel_shuffle_ratio": 0.5,
        },
        boi_token_index=vocab["<|image_start|>"],
        eoi_token_index=vocab["<|image_end|>"],
        image_token_index=vocab["<|patch|>"],
        tie_word_embeddings=False,
    )  # fmt: skip
    model = transformers.Llama4ForConditionalGeneration(config)
    image_processor = transformers.Llama4ImageProcessor(size={"height": 28, "width": 28}, max_patches=2)
    processor = transformers.Llama4Processor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=14, pixel_shuffle_ratio=0.5,
        chat_template=LLAMA_GUARD_4_CHAT_TEMPLATE,
    )  # fmt: skip
    return model, processor, vocab


def _build_mllama(transformers: Any, vocab_size: int) -> tuple[Any, Any, dict[str, int]]:
    import torch

    tokenizer = _tokenizer(LlamaGuard3Profile.special_tokens, vocab_size, 8192)
    tokenizer.chat_template = LLAMA_GUARD_3_CHAT_TEMPLATE
    vocab = tokenizer.get_vocab()
    config = transformers.MllamaConfig(
        text_config={
            "vocab_size": len(vocab), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
            "cross_attention_layers": [1], "bos_token_id": vocab["<|begin_of_text|>"],
            "eos_token_id": vocab["<|eot_id|>"], "pad_token_id": vocab["<|end_of_text|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            # the output is the last hidden state and the intermediate layers', concatenated
            "hidden_size": 32, "attention_heads": 2, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_global_layers": 1, "intermediate_layers_indices": [0, 1], "vision_output_dim": 96,
            "image_size": 28, "patch_size": 14, "max_num_tiles": 4,
        },
        image_token_index=vocab["<|image|>"],
    )  # fmt: skip
    model = transformers.MllamaForConditionalGeneration(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                param.fill_(1.0)
    image_processor = transformers.MllamaImageProcessor(size={"height": 28, "width": 28}, max_image_tiles=4)
    processor = transformers.MllamaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=LLAMA_GUARD_3_CHAT_TEMPLATE
    )
    return model, processor, vocab
