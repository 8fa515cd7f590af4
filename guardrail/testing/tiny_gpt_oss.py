"""A tiny random gpt-oss-safeguard: ``GptOssForCausalLM`` (4 experts, top 2) with a byte-level
BPE tokenizer using the o200k split regex, the harmony special tokens and gpt-oss's chat template
(``templates/gpt_oss.jinja``). Built by :func:`guardrail.testing.tiny.build_tiny_model`
(``profile="gpt-oss-safeguard"``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail.profiles.gpt_oss_safeguard import ENDOFTEXT, HARMONY_SPECIAL_TOKENS, RETURN, STARTOFTEXT

__all__ = ["GPT_OSS_CHAT_TEMPLATE", "O200K_SPLIT_REGEX", "build"]

GPT_OSS_CHAT_TEMPLATE = Path(__file__).resolve().parent / "templates" / "gpt_oss.jinja"
#: The o200k pre-tokenizer split (gpt-oss's o200k_harmony encoding).
O200K_SPLIT_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _pre_tokenized(tok: Any) -> Any:
    from tokenizers import Regex, decoders, pre_tokenizers

    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(O200K_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def tokenizer(vocab_size: int) -> Any:
    from guardrail.profiles.gpt_oss_safeguard import GptOssSafeguardProfile
    from guardrail.testing.tiny import _CORPUS

    tokenizers = require("tokenizers", extra="transformers")
    transformers = require("transformers", extra="transformers")
    from tokenizers import models, pre_tokenizers, trainers

    corpus = [*_CORPUS, GptOssSafeguardProfile().policy_text(GptOssSafeguardProfile().default_policy())]
    trainer_tok = _pre_tokenized(tokenizers.Tokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    trainer_tok.train_from_iterator(corpus * 4, trainer)
    model = json.loads(trainer_tok.to_str())["model"]
    vocab = dict(model["vocab"])
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    for t in HARMONY_SPECIAL_TOKENS:
        vocab[t] = len(vocab)
    backend = _pre_tokenized(
        tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    )
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=STARTOFTEXT,
        eos_token=RETURN,
        pad_token=ENDOFTEXT,
        extra_special_tokens=[t for t in HARMONY_SPECIAL_TOKENS if t not in (STARTOFTEXT, RETURN, ENDOFTEXT)],
    )
    tok.model_max_length = 131072
    tok.chat_template = GPT_OSS_CHAT_TEMPLATE.read_text(encoding="utf-8")
    return tok


def build(vocab_size: int) -> tuple[Any, Any]:
    """``(model, tokenizer)``: random gpt-oss weights (hidden 64, 2 layers, 4 experts top 2)."""
    transformers = require("transformers", extra="transformers")
    tok = tokenizer(vocab_size)
    vocab = tok.get_vocab()
    config = transformers.GptOssConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=128,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=4096,
        bos_token_id=vocab[STARTOFTEXT],
        eos_token_id=vocab[RETURN],
        pad_token_id=vocab[ENDOFTEXT],
        tie_word_embeddings=False,
    )
    return transformers.GptOssForCausalLM(config), tok
