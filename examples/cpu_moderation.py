"""On-device CPU moderation with a GGUF guard through llama.cpp (no GPU, no server).

    python examples/cpu_moderation.py [--threads 2]

With GUARDRAIL_GGUF set (a model .gguf, or a directory written by `python -m guardrail export
gguf`, which holds the model and its mmproj) that guard is used; GUARDRAIL_MMPROJ names the
mmproj when it is elsewhere. Otherwise the tiny *random* test guard is built and exported offline
(the first export fetches llama.cpp's converter once, with pip): it shows the whole path, but its
verdicts are meaningless.

Needs the `llamacpp` extra (and `transformers` to build the tiny guard).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from guardrail import Guard  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    args = parser.parse_args()

    model = os.environ.get("GUARDRAIL_GGUF")
    if model:
        print(f"guard model: {model}")
        guard = Guard.from_gguf(model, os.environ.get("GUARDRAIL_MMPROJ"), n_threads=args.threads)
    else:
        from guardrail.testing import cached_tiny_gguf

        cache = Path(os.environ.get("GUARDRAIL_CACHE", Path.home() / ".cache" / "guardrail")) / "tiny"
        t0 = time.perf_counter()
        files = cached_tiny_gguf("guardreasoner-vl", cache)
        print(
            f"guard model: tiny random Qwen2.5-VL GGUF at {files.model.parent} ({time.perf_counter() - t0:.1f}s)"
        )
        print("NOTE: this model has random weights. Its verdicts are MEANINGLESS; they only show the")
        print("      plumbing. Set GUARDRAIL_GGUF to an exported GuardReasoner-VL for real verdicts.\n")
        guard = Guard.from_gguf(
            files.model, files.mmproj, n_threads=args.threads, n_ctx=4096, max_new_tokens=32
        )

    with guard:
        samples = [
            json.loads(line) for line in (HERE / "samples.jsonl").read_text().splitlines() if line.strip()
        ]
        print(
            f"{'sample':<20} {'verdict':<8} {'request':<10} {'response':<10} {'decided by':<10} {'tokens':>6} {'ms':>7}"
        )
        start = time.perf_counter()
        for s in samples:
            images = [str(HERE / p) for p in s.get("images", [])] or None
            v = guard.moderate(prompt=s.get("prompt"), response=s.get("response"), images=images)

            def lab(x):
                return "-" if x is None else ("harmful" if x else "unharmful")

            print(
                f"{s['name']:<20} {'allow' if v.allowed else 'BLOCK':<8} {lab(v.request_harmful):<10} "
                f"{lab(v.response_harmful):<10} {v.decided_by:<10} {v.output_tokens or 0:>6} {v.latency_ms:>7.0f}"
            )
        elapsed = time.perf_counter() - start
        print(
            f"\n{len(samples)} checks in {elapsed:.2f} s on {args.threads} thread(s): {len(samples) / elapsed:.1f} checks/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
