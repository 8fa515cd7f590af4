"""A tiny random ShieldGemma 2: the real ``ShieldGemma2ForImageClassification`` (Gemma 3 with a
SigLIP tower, 2 text layers, hidden 64) and the real ``ShieldGemma2Processor`` (Gemma 3 image
processor at 28 px: 4 soft tokens per image; a ``GemmaTokenizer`` with Gemma 3's special tokens
and byte fallback, adding its BOS as Gemma's does) carrying the processor's chat template
(``templates/shieldgemma2.jinja``). ``Yes`` and ``No`` are single tokens and the config's
``yes_token_index``/``no_token_index`` point at them (the defaults are ids of the real
vocabulary). ``query_pre_attn_scalar`` equals ``head_dim`` as in the real 4B model (256 = 256):
llama.cpp scales attention by ``head_dim`` for Gemma 3, so the GGUF export agrees with transformers.
Built by :func:`guardrail.testing.tiny.build_tiny_model` (``profile="shieldgemma-2"``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail.profiles.shieldgemma2 import SHIELDGEMMA2_POLICY_TEXTS, SHIELDGEMMA2_SPECIAL_TOKENS

__all__ = ["SHIELDGEMMA2_CHAT_TEMPLATE", "build"]

#: The processor's chat template (see templates/README.md for its source).
SHIELDGEMMA2_CHAT_TEMPLATE = Path(__file__).resolve().parent / "templates" / "shieldgemma2.jinja"
_IMAGE_TOKENS = 4  # soft tokens per image: 28 px / 14 px patches = 2 x 2, no pooling
_PROJECTOR_STD = 0.5

_CORPUS = [
    "You are a policy expert trying to help determine whether a generated or real image is in violation of "
    "the safety policy below. Your decision must very clearly follow the specific language used in the "
    "safety policy and should not include any interpretation outside of the safety policy.",
    "<BEGIN_SAFETY_POLICY>\n</END_SAFETY_POLICY>\n\nDoes the image violate the above policy? Your Answer "
    "must start with 'Yes' or 'No'.",
    *SHIELDGEMMA2_POLICY_TEXTS.values(),
    "user\nmodel\nYes\nNo\nYes No Yes No Yes No Yes No Yes No Yes No Yes No Yes No",
]


def tokenizer(vocab_size: int) -> Any:
    """A Gemma tokenizer (BPE over ``▁``-spaced text, byte fallback) trained here."""
    transformers = require("transformers", extra="transformers")
    tokenizers = require("tokenizers", extra="transformers")
    from tokenizers import models, normalizers, pre_tokenizers, trainers

    from guardrail.testing.tiny import _CORPUS as BASE_CORPUS

    corpus = [*BASE_CORPUS, *_CORPUS]
    tok = tokenizers.Tokenizer(models.BPE())
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    alphabet = sorted(set("".join(corpus).replace(" ", "▁")))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(corpus * 4, trainer)
    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = {}
    for t in (*SHIELDGEMMA2_SPECIAL_TOKENS, *(f"<0x{b:02X}>" for b in range(256)), *model["vocab"]):
        vocab.setdefault(t, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    named = {
        "boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>",
        "image_token": "<image_soft_token>",
    }
    out = transformers.GemmaTokenizer(
        vocab=vocab, merges=merges, add_bos_token=True,
        extra_special_tokens={**named, "start_of_turn": "<start_of_turn>", "end_of_turn": "<end_of_turn>"},
    )  # fmt: skip
    out.model_max_length = 8192
    for word in ("Yes", "No"):
        if len(out.encode(word, add_special_tokens=False)) != 1:
            raise RuntimeError(f"the tiny tokenizer splits {word!r}: grow its corpus")
    return out


def build(vocab_size: int) -> tuple[Any, Any]:
    """``(model, processor)``."""
    transformers = require("transformers", extra="transformers")
    tok = tokenizer(vocab_size)
    vocab = tok.get_vocab()
    config = transformers.ShieldGemma2Config(
        text_config={
            "vocab_size": len(vocab), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16,
            "max_position_embeddings": 4096,
            "sliding_window": 512, "rope_parameters": None, "bos_token_id": vocab["<bos>"],
            "eos_token_id": vocab["<end_of_turn>"], "pad_token_id": vocab["<pad>"], "tie_word_embeddings": False,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
            "image_size": 28, "patch_size": 14, "vision_use_head": False,
        },
        mm_tokens_per_image=_IMAGE_TOKENS,
        boi_token_index=vocab["<start_of_image>"],
        eoi_token_index=vocab["<end_of_image>"],
        image_token_index=vocab["<image_soft_token>"],
        tie_word_embeddings=False,
    )  # fmt: skip
    config.yes_token_index = vocab["Yes"]
    config.no_token_index = vocab["No"]
    model = transformers.ShieldGemma2ForImageClassification(config)
    torch = require("torch", extra="transformers")
    with torch.no_grad():  # Gemma 3 initialises the image projection to zeros: images would not count
        model.model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, _PROJECTOR_STD)
    image_processor = transformers.Gemma3ImageProcessor(size={"height": 28, "width": 28})
    processor = transformers.ShieldGemma2Processor(
        image_processor=image_processor, tokenizer=tok, image_seq_length=_IMAGE_TOKENS,
        chat_template=SHIELDGEMMA2_CHAT_TEMPLATE.read_text(encoding="utf-8"),
    )  # fmt: skip
    return model, processor
