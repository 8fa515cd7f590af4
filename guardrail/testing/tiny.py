"""Build tiny random guard models offline, in seconds, for tests and CI.

The models have the real architectures (Qwen2.5-VL for ``guardreasoner-vl``, Llama for
``guardreasoner``, the Qwen2.5-Omni thinker with its vision and audio towers for
``guardreasoner-omni``: see :mod:`guardrail.testing.tiny_omni`), a real byte-level BPE tokenizer trained here on a small corpus with Qwen's
split regex and the real special tokens, and (for VL) the stock ``Qwen2_5_VLProcessor`` with the
Qwen2.5-VL chat template. Weights are random: the verdicts mean nothing. About 0.2M parameters.

Needs the ``transformers`` extra (and torchvision for the VL processor).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail.profiles import (
    END_TOKENS,
    GUARDREASONER_INSTRUCTION,
    GUARDREASONER_VL_INSTRUCTION,
    NEVER_GENERATED,
    GuardReasonerProfile,
    GuardReasonerVLProfile,
)

__all__ = [
    "QWEN_SPECIAL_TOKENS",
    "build_tiny_gguf",
    "build_tiny_model",
    "cached_tiny_gguf",
    "cached_tiny_model",
]

QWEN_SPLIT_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# The families' special tokens, in vocabulary order (the profiles' tables).
QWEN_SPECIAL_TOKENS = list(GuardReasonerVLProfile.special_tokens)
LLAMA3_SPECIAL_TOKENS = list(GuardReasonerProfile.special_tokens)

_CORPUS = [
    GUARDREASONER_VL_INSTRUCTION,
    GUARDREASONER_INSTRUCTION,
    "Human user:\nHow do I bake bread at home?\n\nAI assistant:\nNone\n\n",
    "Human user:\nWhat is in this picture?\n\nAI assistant:\nA cat sitting on a red chair.\n\n",
    "<think>\nThe user asks for a bread recipe. This is harmless.\n</think>\n"
    "<result>\nRequest: unharmful\nResponse: None\n</result>",
    "<think>\nThe request asks how to hurt someone. It is harmful.\n</think>\n"
    "<result>\nRequest: harmful\nResponse: harmful\n</result>",
    "# Task 1\n\n## Reasoning Step 1\nThe request is harmless.\n\n## Conclusion\nThe request is unharmful.\n\n"
    "---\n\nAnswers: \nRequest: unharmful\nCompletion: compliance\nResponse: unharmful\n",
    "Answers: \nRequest: harmful\nCompletion: refusal\nResponse: unharmful\n",
    "The quick brown fox jumps over the lazy dog. 0123456789 !?.,;:'\"()[]{}<>/\\|@#$%^&*-_=+~`",
    "Tell me a joke. Write a poem about the sea. Translate hello into French. Explain photosynthesis.",
    "weapon attack steal hack poison drug violence kill hurt illegal dangerous safe help recipe image",
]

_VL_CHAT_TEMPLATE_NAME = "qwen2_5_vl"

#: Tiny builders of the other families, each in its own module: profile -> "module:function"
#: returning ``(model, tokenizer_or_processor)`` (scaled and saved by build_tiny_model).
FAMILY_BUILDERS: dict[str, str] = {
    "qwen3guard": "guardrail.testing.tiny_qwen3guard:build",
    "gpt-oss-safeguard": "guardrail.testing.tiny_gpt_oss:build",
    "shieldgemma-2": "guardrail.testing.tiny_shieldgemma2:build",
}


def _family_builder(profile: str) -> Any:
    import importlib

    module, func = FAMILY_BUILDERS[profile].split(":")
    return getattr(importlib.import_module(module), func)


def _train_bpe(vocab_size: int, extra: Sequence[str] = ()) -> tuple[dict[str, int], list[tuple[str, str]]]:
    tokenizers = require("tokenizers", extra="transformers")
    from tokenizers import models, pre_tokenizers, trainers

    tok = _byte_level(tokenizers.Tokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    tok.train_from_iterator([*_CORPUS, *extra] * 4, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges  # type: ignore[return-value]


def _byte_level(tok: Any) -> Any:
    """Qwen's pre-tokenization: its split regex, then byte-level BPE bytes, and the decoder."""
    from tokenizers import Regex, decoders, pre_tokenizers

    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def _qwen_tokenizer(vocab_size: int) -> Any:
    transformers = require("transformers", extra="transformers")
    vocab, merges = _train_bpe(vocab_size)
    for tok in QWEN_SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    tokenizer = transformers.Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=QWEN_SPECIAL_TOKENS[1:],
    )
    tokenizer.model_max_length = 32768
    return tokenizer


def _omni_tokenizer(vocab_size: int) -> Any:
    """Qwen2.5-Omni's tokenizer: Qwen's, with the Omni special tokens, each media token named
    (the Omni processor reads ``tokenizer.image_token`` and the rest)."""
    from guardrail.profiles.guardreasoner_omni import OMNI_SPECIAL_TOKENS

    transformers = require("transformers", extra="transformers")
    vocab, merges = _train_bpe(vocab_size)
    for tok in OMNI_SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    tokenizer = transformers.Qwen2Tokenizer(
        vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        extra_special_tokens=list(OMNI_SPECIAL_TOKENS[1:]),
        image_token="<|IMAGE|>", audio_token="<|AUDIO|>", video_token="<|VIDEO|>",
        vision_bos_token="<|vision_bos|>", vision_eos_token="<|vision_eos|>",
        audio_bos_token="<|audio_bos|>", audio_eos_token="<|audio_eos|>",
    )  # fmt: skip
    tokenizer.model_max_length = 32768
    return tokenizer


def _llama_tokenizer(vocab_size: int) -> Any:
    transformers = require("transformers", extra="transformers")
    tokenizers = require("tokenizers", extra="transformers")
    from tokenizers import models

    vocab, merges = _train_bpe(vocab_size)
    for tok in LLAMA3_SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    backend = _byte_level(
        tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token="<|end_of_text|>",
        extra_special_tokens=LLAMA3_SPECIAL_TOKENS[2:],
        add_bos_token=True,
    )
    tokenizer.model_max_length = 8192
    return tokenizer


def build_tiny_model(
    out_dir: str | os.PathLike[str],
    profile: str = "guardreasoner-vl",
    *,
    seed: int = 0,
    vocab_size: int = 512,
    logit_scale: float = 8.0,
    qk_scale: float = 8.0,
    vo_scale: float = 25.0,
    embedding_scale: float = 5.0,
) -> Path:
    """Write a tiny random guard model to ``out_dir`` and return its path.

    ``logit_scale`` multiplies the random output-layer weights so that next-token logits are
    well separated; with the default initialisation the top tokens of a random model are
    near-ties, and greedy decoding would then flip between numerically equivalent runs (a
    padded batch versus one item alone).

    ``qk_scale``, ``vo_scale`` and ``embedding_scale`` shape the language model so that its
    output depends on the user's text. With the default initialisation attention is nearly
    uniform and the long system prompt dominates: 12 different prompts gave 3 different outputs,
    so tests could not tell one request's verdict from another's. Larger query/key weights
    sharpen attention, larger value/output weights let it move the residual stream, and larger
    embeddings keep the activations well above RMSNorm's epsilon (llama.cpp's ``qwen2vl``
    normalises without epsilon; with tiny activations that alone would move log-probabilities
    by ~2e-2). With the defaults, 11 of those 12 prompts give different outputs.
    """
    torch = require("torch", extra="transformers")
    transformers = require("transformers", extra="transformers")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if profile == "guardreasoner-vl":
        tokenizer = _qwen_tokenizer(vocab_size)
        vocab = tokenizer.get_vocab()
        config = transformers.Qwen2_5_VLConfig(
            text_config={
                "vocab_size": len(vocab),
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 4096,
                "rms_norm_eps": 1e-6,  # Qwen2.5-VL's value
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                "bos_token_id": None,
                "eos_token_id": vocab["<|im_end|>"],
                "pad_token_id": vocab["<|endoftext|>"],
                "tie_word_embeddings": False,
            },
            vision_config={
                "depth": 3,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 2,
                "out_hidden_size": 64,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "window_size": 112,  # Qwen2.5-VL's value; llama.cpp assumes it
                "fullatt_block_indexes": [2],
            },
            image_token_id=vocab["<|image_pad|>"],
            video_token_id=vocab["<|video_pad|>"],
            vision_start_token_id=vocab["<|vision_start|>"],
            vision_end_token_id=vocab["<|vision_end|>"],
            tie_word_embeddings=False,
        )
        model = transformers.Qwen2_5_VLForConditionalGeneration(config)
        image_processor = transformers.Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=112 * 112)
        video_processor = transformers.Qwen2VLVideoProcessor()
        processor = transformers.Qwen2_5_VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=_qwen_vl_chat_template(),
        )
        saver: Any = processor
    elif profile == "guardreasoner":
        tokenizer = _llama_tokenizer(vocab_size)
        vocab = tokenizer.get_vocab()
        config = transformers.LlamaConfig(
            vocab_size=len(vocab),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            bos_token_id=vocab["<|begin_of_text|>"],
            eos_token_id=vocab["<|end_of_text|>"],
            pad_token_id=vocab["<|end_of_text|>"],
            tie_word_embeddings=False,
        )
        model = transformers.LlamaForCausalLM(config)
        saver = tokenizer
    elif profile in FAMILY_BUILDERS:
        model, saver = _family_builder(profile)(vocab_size)
        config, vocab = model.config, getattr(saver, "tokenizer", saver).get_vocab()
    elif profile in ("llama-guard-3", "llama-guard-4", "llama-guard-3-vision"):
        from guardrail.testing import tiny_llama_guard

        model, saver, vocab = tiny_llama_guard.build(profile, vocab_size)
        config = model.config
    elif profile == "guardreasoner-omni":
        from guardrail.testing.tiny_omni import build_omni

        model, saver, config, vocab = build_omni(transformers, _omni_tokenizer(vocab_size))
    else:
        raise ValueError(f"unknown profile {profile!r}")
    with torch.no_grad():
        output = model.get_output_embeddings()
        if output is None:  # ShieldGemma 2's classifier wraps the generative Gemma 3
            output = model.model.get_output_embeddings()
        head = output.weight
        head.mul_(logit_scale)
        # A random model should not end its turn by chance: with their output rows at zero the
        # end-of-turn tokens score 0 while the best other token scores well above, so greedy
        # generations run to max_new_tokens, as tests expect. Training teaches the end of turn.
        # Vision tokens likewise (a guard never emits them; engines that do not ban them, such
        # as an OpenAI-compatible server, then generate what our backends generate).
        for token in (*END_TOKENS, *NEVER_GENERATED):
            if token in vocab:
                head[vocab[token]] = 0.0
        for name, param in model.named_parameters():
            if "visual" in name or "vision" in name or "audio_tower" in name:
                continue
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                param.mul_(qk_scale)
            elif name.endswith(("v_proj.weight", "o_proj.weight")):
                param.mul_(vo_scale)
            elif name.endswith("embed_tokens.weight"):
                param.mul_(embedding_scale)
    model.generation_config = transformers.GenerationConfig(
        eos_token_id=config.get_text_config().eos_token_id,
        pad_token_id=config.get_text_config().pad_token_id,
    )
    from guardrail.testing.tiny_llama_guard import SAVED_PROFILE

    model.config.guardrail_profile = SAVED_PROFILE.get(profile, profile)
    model.save_pretrained(out, safe_serialization=True)
    saver.save_pretrained(out)
    (out / "README.md").write_text(
        f"Tiny random `{profile}` guard built by `guardrail.testing`. Its verdicts are meaningless.\n"
    )
    return out


def _qwen_vl_chat_template() -> str:
    try:
        from trl.chat_template_utils import qwen2_5_vl_chat_template

        return qwen2_5_vl_chat_template
    except ImportError:
        return _QWEN2_5_VL_CHAT_TEMPLATE


# Qwen2.5-VL-Instruct's chat template (as shipped with the model; TRL carries the same copy).
_QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _builders_digest() -> str:
    """A short digest of the tiny builders' code and templates (the cache key's version)."""
    import hashlib

    here = Path(__file__).parent
    h = hashlib.sha256()
    for f in sorted([*here.glob("tiny*.py"), *here.glob("templates/*")]):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def cached_tiny_model(profile: str = "guardreasoner-vl", root: str | os.PathLike[str] | None = None) -> Path:
    """Build (once) and return a tiny model under ``root`` (default: a temp-dir cache).

    The cache entry is named after the profile and a digest of the builders' sources
    (``guardrail/testing``), so a changed builder never reuses a model an older one built."""
    base = Path(
        root or os.environ.get("GUARDRAIL_TINY_CACHE") or Path(tempfile.gettempdir()) / "guardrail-tiny"
    )
    path = base / f"{profile}-{_builders_digest()}"
    if not (path / "config.json").exists():
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{profile}-"))
        build_tiny_model(tmp, profile)
        try:
            tmp.rename(path)
        except OSError:  # built concurrently by someone else
            pass
    return path


def build_tiny_gguf(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    quant: str = "f32",
    **kwargs: Any,
) -> Any:
    """Export a tiny model (from :func:`build_tiny_model`) to GGUF with
    :func:`guardrail.export.export_gguf`: ``tiny-{profile}-{quant}.gguf`` and, for VL,
    ``mmproj-tiny-{profile}-f32.gguf`` (default ``out_dir``: ``model_dir/gguf``).

    Its home-made BPE tokenizer is unknown to llama.cpp's converter and is declared ``qwen2``
    (the same split regex). Needs the ``llamacpp`` and ``transformers`` extras; the converter's
    source is fetched once (see :mod:`guardrail.export.gguf`).
    """
    from guardrail.export.gguf import export_gguf

    model_dir = Path(model_dir)
    profile = json.loads((model_dir / "config.json").read_text()).get("guardrail_profile", "model")
    from guardrail.export.notes import detect_pre_tokenizer

    kwargs.setdefault("assume_pre_tokenizer", detect_pre_tokenizer(model_dir) or "qwen2")
    return export_gguf(
        model_dir, out_dir or model_dir / "gguf", quant=quant, name=f"tiny-{profile}", **kwargs
    )


def cached_tiny_gguf(profile: str = "guardreasoner-vl", root: str | os.PathLike[str] | None = None) -> Any:
    """Build (once) and return the f32 GGUF files of the cached tiny model under ``root``."""
    from guardrail.export.gguf import find_gguf_files

    model = cached_tiny_model(profile, root)
    out = model / "gguf"
    if not (out / ".complete").exists():
        tmp = Path(tempfile.mkdtemp(dir=model, prefix=".gguf-"))
        build_tiny_gguf(model, tmp)
        (tmp / ".complete").write_text("f32\n")
        try:
            tmp.rename(out)
        except OSError:  # built concurrently by someone else
            pass
    return find_gguf_files(out)
