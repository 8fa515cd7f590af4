"""Run llama.cpp's ``convert_hf_to_gguf.py`` from a llama.cpp source tree, in its own process.

Used by :mod:`guardrail.export.gguf`; not meant to be run by hand::

    python -m guardrail.export._convert --llama-cpp DIR [--assume-pre-tokenizer NAME]
        [--vision-pixels MIN MAX] [--policy-file FILE] [--spm-from-tokenizer-json] [--trust-remote-code] -- MODEL_DIR --outfile FILE --outtype f16 [-- MODEL_DIR ... --mmproj]

Each group after a ``--`` is one run of the converter (its own command line); several runs share
one process, which saves the converter's start-up (torch, transformers) per file.

The converter is imported from ``DIR`` (with its own ``gguf-py``) and run unchanged, except for
these adjustments made here at run time, never by editing llama.cpp's files:

- without ``--trust-remote-code``, transformers cannot load code from the model directory: the
  converter asks for ``trust_remote_code=True`` when it loads tokenizers, and a directory with an
  ``auto_map`` would have its Python files run. The dynamic-module loader is replaced by one
  that raises, so the converter fails instead (``export_gguf`` refuses such directories before
  starting; this is the second line).

- ``--assume-pre-tokenizer NAME``: when the converter does not recognise a BPE tokenizer (it
  identifies them by a hash of their output on a probe text), use ``NAME`` instead of failing.
  Real Qwen2.5-VL and Llama 3 tokenizers are recognised and unaffected; the tiny test models'
  home-made BPE (Qwen's split regex) is declared ``qwen2``.
- ``--vision-pixels MIN MAX``: write the image processor's pixel bounds into the mmproj file
  (``clip.vision.image_min_pixels`` / ``image_max_pixels``, llama.cpp's own keys) when the
  converter does not, so the llama.cpp backend resizes images as the reference processor does.
- ``--policy-file PATH``: write the policy a guard was trained on (its ``guardrail_policy.yaml``)
  into the language model's metadata as the YAML string ``guardrail.policy``, which the llama.cpp
  backend reads back (``trained_policy``); quantising keeps it (llama.cpp copies every key).
- ``--spm-from-tokenizer-json``: a SentencePiece-style BPE (``▁`` for spaces, byte fallback: Gemma's)
  given only as ``tokenizer.json`` (no ``tokenizer.model``) is written as llama.cpp's ``llama``
  (SentencePiece) vocabulary instead of going through the GPT-2 byte-level path, which cannot
  represent it. Each merged token's score is minus its merge's rank, so llama.cpp's
  highest-score-first merging follows the BPE merge order (used for ShieldGemma 2 re-packed as
  Gemma 3; a real checkpoint ships ``tokenizer.model`` and is unaffected).
- without the ``sentencepiece`` package, a model that has no ``tokenizer.model`` goes straight to
  the converter's BPE path instead of failing on the import.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from guardrail.gguf_metadata import IMAGE_MAX_PIXELS, IMAGE_MIN_PIXELS
from guardrail.policies.trained import GGUF_POLICY_KEY


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: python -m guardrail.export._convert [options] -- CONVERTER_ARGS [-- ...]")
    split = argv.index("--")
    runs: list[list[str]] = [[]]
    for arg in argv[split + 1 :]:
        if arg == "--":
            runs.append([])
        else:
            runs[-1].append(arg)
    parser = argparse.ArgumentParser(prog="python -m guardrail.export._convert")
    parser.add_argument("--llama-cpp", required=True, type=Path)
    parser.add_argument("--assume-pre-tokenizer", default=None)
    parser.add_argument("--vision-pixels", nargs=2, type=int, default=None, metavar=("MIN", "MAX"))
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--policy-file", type=Path, default=None)
    parser.add_argument("--spm-from-tokenizer-json", action="store_true")
    args = parser.parse_args(argv[:split])
    if not args.trust_remote_code:
        refuse_remote_code()  # before the converter imports anything from transformers

    root = args.llama_cpp.resolve()
    sys.path.insert(0, str(root / "gguf-py"))  # the converter's own gguf-py, not the installed one
    sys.path.insert(0, str(root))
    os.environ["NO_LOCAL_GGUF"] = "1"  # already on the path, first

    import convert_hf_to_gguf  # noqa: PLC0415 - from the llama.cpp tree given above
    from conversion import base  # noqa: PLC0415

    if args.assume_pre_tokenizer:
        _assume_pre_tokenizer(base, args.assume_pre_tokenizer)
    if args.vision_pixels:
        _add_vision_pixels(base, *args.vision_pixels)
    if args.policy_file:
        _add_policy(base, args.policy_file.read_text(encoding="utf-8"))
    _bpe_without_sentencepiece(base)
    if args.spm_from_tokenizer_json:
        _spm_from_tokenizer_json(base)

    for converter_args in runs:
        sys.argv = ["convert_hf_to_gguf.py", *converter_args]
        convert_hf_to_gguf.main()


class RemoteCodeRefused(RuntimeError):
    """Raised in the converter process instead of running a model directory's code."""


def refuse_remote_code() -> None:
    """Make transformers' dynamic-module loader (the only way it runs a model's own code) raise.

    Patched in ``transformers.dynamic_module_utils`` before the Auto classes import it by name,
    and in any ``transformers`` module that already holds a reference.
    """
    try:
        from transformers import dynamic_module_utils as dmu  # noqa: PLC0415
    except ImportError:  # no transformers: nothing can load model code
        return

    def refuse(*args, **kwargs):
        where = args[1] if len(args) > 1 else kwargs.get("pretrained_model_name_or_path", "the model")
        raise RemoteCodeRefused(
            f"guardrail refused to run code from {where} ({args[0] if args else 'auto_map'}): "
            "pass --trust-remote-code to allow it"
        )

    for name in ("get_class_from_dynamic_module", "get_class_in_module"):
        original = getattr(dmu, name, None)
        if original is None:
            continue
        for module_name, module in list(sys.modules.items()):
            if module_name.startswith("transformers") and getattr(module, name, None) is original:
                setattr(module, name, refuse)


def _assume_pre_tokenizer(base, name: str) -> None:
    original = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            base.logger.warning("BPE pre-tokenizer not recognised: using %r as asked", name)
            return name

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre


def _add_vision_pixels(base, min_pixels: int, max_pixels: int) -> None:
    original = base.MmprojModel.set_gguf_parameters

    def set_gguf_parameters(self):
        original(self)
        if not getattr(self, "has_vision_encoder", False):
            return
        for key, value in ((IMAGE_MIN_PIXELS, min_pixels), (IMAGE_MAX_PIXELS, max_pixels)):
            if not any(key in kv for kv in self.gguf_writer.kv_data):
                self.gguf_writer.add_uint32(key, int(value))

    base.MmprojModel.set_gguf_parameters = set_gguf_parameters


def _add_policy(base, text: str) -> None:
    original = base.TextModel.prepare_metadata

    def prepare_metadata(self, vocab_only: bool):
        original(self, vocab_only)
        if not any(GGUF_POLICY_KEY in kv for kv in self.gguf_writer.kv_data):
            self.gguf_writer.add_string(GGUF_POLICY_KEY, text)

    base.TextModel.prepare_metadata = prepare_metadata


def _bpe_without_sentencepiece(base) -> None:
    try:
        import sentencepiece  # noqa: F401, PLC0415
    except ImportError:
        original = base.TextModel._create_vocab_sentencepiece

        def create_vocab_sentencepiece(self):
            if not (self.dir_model / "tokenizer.model").is_file():
                raise FileNotFoundError(f"File not found: {self.dir_model / 'tokenizer.model'}")
            return original(self)

        base.TextModel._create_vocab_sentencepiece = create_vocab_sentencepiece


def spm_vocab(tokenizer_json: dict) -> tuple[list[str], list[float], list[int], set[str]]:
    """``(tokens, scores, types, control)`` of a ``▁``-BPE ``tokenizer.json`` as a llama.cpp
    SentencePiece vocabulary: types 1 normal, 3 control (special added tokens), 4 user-defined
    (other added tokens), 6 byte (``<0xNN>``); scores minus the rank of the merge that makes the
    token (0 for tokens no merge makes)."""
    model = tokenizer_json["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in tokenizer_json.get("added_tokens", [])}
    for content, tok in added.items():
        vocab.setdefault(content, tok["id"])
    by_id = {i: t for t, i in vocab.items()}
    rank: dict[str, int] = {}
    for r, merge in enumerate(model.get("merges", [])):
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank.setdefault(a + b, r)
    tokens, scores, types = [], [], []
    control = set()
    for i in range(max(by_id) + 1):
        text = by_id.get(i, f"[PAD{i}]")
        tokens.append(text)
        scores.append(-float(rank[text]) if text in rank else 0.0)
        if text in added:
            types.append(3 if added[text].get("special") else 4)
            if added[text].get("special"):
                control.add(text)
        elif re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            types.append(6)
        else:
            types.append(1)
    return tokens, scores, types, control


def _spm_from_tokenizer_json(base) -> None:
    import json  # noqa: PLC0415

    original = base.TextModel._set_vocab_gpt2

    def set_vocab_gpt2(self):
        path = self.dir_model / "tokenizer.json"
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        model = data.get("model") or {}
        if (
            (self.dir_model / "tokenizer.model").is_file()
            or model.get("type") != "BPE"
            or not model.get("byte_fallback")
        ):
            return original(self)
        import gguf  # noqa: PLC0415 - the converter's own gguf-py

        tokens, scores, types, _ = spm_vocab(data)
        n_vocab = self.hparams.get("vocab_size", len(tokens))
        for i in range(len(tokens), n_vocab):  # padded embedding rows
            tokens.append(f"[PAD{i}]")
            scores.append(0.0)
            types.append(gguf.TokenType.UNUSED)
        self.gguf_writer.add_tokenizer_model("llama")
        self.gguf_writer.add_tokenizer_pre("default")
        self.gguf_writer.add_token_list(tokens)
        self.gguf_writer.add_token_scores(scores)
        self.gguf_writer.add_token_types(types)
        self.gguf_writer.add_add_space_prefix(False)
        gguf.SpecialVocab(self.dir_model, n_vocab=len(tokens)).add_to_gguf(self.gguf_writer)

    base.TextModel._set_vocab_gpt2 = set_vocab_gpt2


if __name__ == "__main__":
    main()
