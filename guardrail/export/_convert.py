"""Run llama.cpp's ``convert_hf_to_gguf.py`` from a llama.cpp source tree, in its own process.

Used by :mod:`guardrail.export.gguf`; not meant to be run by hand::

    python -m guardrail.export._convert --llama-cpp DIR [--assume-pre-tokenizer NAME]
        [--vision-pixels MIN MAX] [--policy-file FILE] [--trust-remote-code] -- MODEL_DIR --outfile FILE --outtype f16 [-- MODEL_DIR ... --mmproj]

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
- without the ``sentencepiece`` package, a model that has no ``tokenizer.model`` goes straight to
  the converter's BPE path instead of failing on the import.
"""

from __future__ import annotations

import argparse
import os
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


if __name__ == "__main__":
    main()
