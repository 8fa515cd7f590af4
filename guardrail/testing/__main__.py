"""``python -m guardrail.testing tiny-model OUT_DIR [--profile ...]``: build a tiny random guard."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from guardrail.testing.tiny import FAMILY_BUILDERS

    parser = argparse.ArgumentParser(prog="python -m guardrail.testing", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tiny = sub.add_parser("tiny-model", help="build a tiny random guard model offline")
    tiny.add_argument("out_dir", help="directory to write the model to")
    tiny.add_argument(
        "--profile",
        default="guardreasoner-vl",
        choices=[
            "guardreasoner-vl",
            "guardreasoner",
            "guardreasoner-omni",
            "llama-guard-4",
            "llama-guard-3",
            "llama-guard-3-vision",
            *FAMILY_BUILDERS,
        ],
    )
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--gguf", action="store_true",
        help="also write its f32 GGUF files (model + mmproj) to OUT_DIR/gguf, for the llama.cpp backend",
    )  # fmt: skip
    tiny.add_argument("--llama-cpp", default=None, metavar="DIR", help="llama.cpp checkout for the converter")
    args = parser.parse_args(argv)

    from guardrail.testing.tiny import build_tiny_gguf, build_tiny_model

    path = build_tiny_model(args.out_dir, args.profile, seed=args.seed)
    print(f"wrote a tiny random {args.profile} guard to {path} (its verdicts are meaningless)")
    if args.gguf:
        from guardrail.errors import GuardrailError

        try:
            files = build_tiny_gguf(path, llama_cpp_dir=args.llama_cpp, progress=print)
        except GuardrailError as exc:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {files.model}" + (f" and {files.mmproj}" if files.mmproj else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
