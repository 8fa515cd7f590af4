"""A tiny random Qwen3Guard-Gen: ``Qwen3ForCausalLM`` with a Qwen2 byte-level BPE tokenizer that
carries Qwen3's added tokens (``<think>``/``</think>`` included) and Qwen3Guard-Gen's chat template
(``templates/qwen3guard_gen.jinja``). Built by :func:`guardrail.testing.tiny.build_tiny_model`
(``profile="qwen3guard"``), which scales and saves it like the other tiny guards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail.profiles.qwen3guard import END_THINK, QWEN3_SPECIAL_TOKENS, THINK

__all__ = ["QWEN3GUARD_CHAT_TEMPLATE", "build"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: Qwen3Guard-Gen's chat template (see templates/README.md for its source).
QWEN3GUARD_CHAT_TEMPLATE = TEMPLATES / "qwen3guard_gen.jinja"


def tokenizer(vocab_size: int) -> Any:
    """A Qwen2 tokenizer (Qwen3's class) with Qwen3's added tokens and Qwen3Guard's template."""
    from guardrail.testing.tiny import _train_bpe

    transformers = require("transformers", extra="transformers")
    vocab, merges = _train_bpe(vocab_size)
    for tok in QWEN3_SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    # <think>/</think> are added tokens that are not "special" in Qwen3's tokenizer (decoding with
    # skip_special_tokens keeps them); the others are special.
    special = [t for t in QWEN3_SPECIAL_TOKENS[1:] if t not in (THINK, END_THINK)]
    tok = transformers.Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=special,
    )
    tok.add_tokens([THINK, END_THINK], special_tokens=False)
    tok.model_max_length = 32768
    tok.chat_template = QWEN3GUARD_CHAT_TEMPLATE.read_text(encoding="utf-8")
    return tok


def build(vocab_size: int) -> tuple[Any, Any]:
    """``(model, tokenizer)``: random Qwen3 weights (hidden 64, 2 layers, 4 heads, 2 KV heads)."""
    transformers = require("transformers", extra="transformers")
    tok = tokenizer(vocab_size)
    vocab = tok.get_vocab()
    config = transformers.Qwen3Config(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        bos_token_id=None,
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    return transformers.Qwen3ForCausalLM(config), tok
