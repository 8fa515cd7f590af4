"""``python -m guardrail export gguf --model DIR --out DIR [--quant q8_0] [--push ORG/NAME]``.

Exit codes: 0 written, 2 error (bad arguments, converter or quantiser failure).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_export"]


def add_export(parser: argparse.ArgumentParser):  # noqa: ANN201 - returns the CLI handler
    """Export a guard model for other runtimes (GGUF for llama.cpp)."""
    parser.description = "Export a guard model for other runtimes."
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    gguf = formats.add_parser(
        "gguf",
        help="GGUF files for llama.cpp: the language model (quantised) and, for VL guards, the mmproj",
        description=(
            "Convert a Hugging Face guard model directory to GGUF with llama.cpp's own converter, "
            "then quantise the language model with llama-cpp-python. Needs the transformers and "
            "llamacpp extras."
        ),
    )
    gguf.add_argument("--model", required=True, metavar="DIR", help="Hugging Face model directory")
    gguf.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    gguf.add_argument(
        "--quant", default="q8_0",
        choices=["f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m"],
        help="language-model type (default: q8_0, near-lossless; q4_k_m is smaller and faster)",
    )  # fmt: skip
    gguf.add_argument(
        "--name", default=None,
        help="file name stem (default: the model's name: the directory's, or NAME for a recipe's runs/NAME/rl)",
    )  # fmt: skip
    gguf.add_argument(
        "--no-mmproj", action="store_true", help="skip the vision projector of a vision-language model"
    )
    gguf.add_argument(
        "--llama-cpp", default=None, metavar="DIR",
        help="llama.cpp checkout to take convert_hf_to_gguf.py from (default: the installed "
        "llama-cpp-python's source distribution, fetched once with pip and cached)",
    )  # fmt: skip
    gguf.add_argument(
        "--assume-pre-tokenizer", default=None, metavar="NAME",
        help="llama.cpp pre-tokenizer for a tokenizer the converter does not recognise (default: "
        "detected from the split regex of the model's tokenizer.json, e.g. qwen2)",
    )  # fmt: skip
    gguf.add_argument("--threads", type=int, default=None, help="quantisation threads (default: all cores)")
    gguf.add_argument(
        "--trust-remote-code", action="store_true",
        help="allow a model directory that ships its own Python code (auto_map, *.py): llama.cpp's "
        "converter runs it. Off by default: such a directory is refused",
    )  # fmt: skip
    hub = gguf.add_argument_group("Hugging Face Hub (after the export)")
    hub.add_argument(
        "--push", default=None, metavar="ORG/NAME",
        help="upload the GGUF files with a model card to this Hugging Face repo (created if missing; "
        "files of other quantisations already there are kept). Token: HF_TOKEN or `hf auth login`",
    )  # fmt: skip
    hub.add_argument("--private", action="store_true", help="--push: create the repo private")
    hub.add_argument("--revision", default=None, metavar="BRANCH", help="--push: branch (created if missing)")
    hub.add_argument(
        "--base-model", default=None, metavar="ORG/NAME",
        help="--push: the Hugging Face repo of the model exported, for the card's base_model",
    )  # fmt: skip
    return _run_export


def _run_export(args: argparse.Namespace) -> int:
    from guardrail.export.gguf import export_gguf, parity_note

    files = export_gguf(
        args.model,
        args.out,
        quant=args.quant,
        name=args.name,
        mmproj=False if args.no_mmproj else None,
        llama_cpp_dir=args.llama_cpp,
        assume_pre_tokenizer=args.assume_pre_tokenizer,
        threads=args.threads,
        trust_remote_code=args.trust_remote_code,
        progress=lambda msg: print(msg, file=sys.stderr),
    )
    print(f"model:  {files.model}")
    if files.mmproj:
        print(f"mmproj: {files.mmproj}")
    run = f"python -m guardrail check --backend llamacpp --model {files.model}"
    if files.mmproj:
        run += f" --mmproj {files.mmproj}"
    print(f"try it: {run} --prompt 'How do I bake bread?'")
    print(f"caveat: {parity_note(args.quant)}")
    if args.push:
        from guardrail.export.push import push_gguf

        pushed = push_gguf(
            files, args.push, source_model=args.model, base_model=args.base_model,
            private=args.private, revision=args.revision,
        )  # fmt: skip
        print(f"pushed {', '.join(pushed.files)} to {pushed.repo_id}: {pushed.commit_url}")
    return 0
