"""The main job (for now): moderate the sample inputs in examples/ with a guard.

With GUARDRAIL_MODEL set (a local path or, with internet, a hub id such as
yueliu1999/GuardReasoner-VL-Eco-3B) that model is used. Otherwise a tiny *random* guard is built
offline with guardrail.testing: it shows the whole path (validation, prompt, model, parsing,
failure policy) but its verdicts are meaningless.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from guardrail import Guard  # noqa: E402


def main() -> int:
    model = os.environ.get("GUARDRAIL_MODEL")
    if model:
        print(f"guard model: {model}")
        guard = Guard.from_pretrained(model)
    else:
        from guardrail.testing import cached_tiny_model

        cache = Path(os.environ.get("GUARDRAIL_CACHE", Path.home() / ".cache" / "guardrail")) / "tiny"
        t0 = time.perf_counter()
        path = cached_tiny_model("guardreasoner-vl", cache)
        print(
            f"guard model: tiny random Qwen2.5-VL built offline at {path} ({time.perf_counter() - t0:.1f}s)"
        )
        print("NOTE: this model has random weights. Its verdicts are MEANINGLESS; they only show the")
        print("      plumbing. Set GUARDRAIL_MODEL to a GuardReasoner-VL model for real verdicts.\n")
        guard = Guard.from_pretrained(path, max_new_tokens=24)

    samples = [json.loads(line) for line in (HERE / "samples.jsonl").read_text().splitlines() if line.strip()]
    print(f"{'sample':<20} {'verdict':<8} {'request':<10} {'response':<10} {'decided by':<10} {'ms':>7}")
    for s in samples:
        images = [str(HERE / p) for p in s.get("images", [])] or None
        v = guard.moderate(prompt=s.get("prompt"), response=s.get("response"), images=images)

        def lab(x):
            return "-" if x is None else ("harmful" if x else "unharmful")

        print(
            f"{s['name']:<20} {'allow' if v.allowed else 'BLOCK':<8} {lab(v.request_harmful):<10} "
            f"{lab(v.response_harmful):<10} {v.decided_by:<10} {v.latency_ms:>7.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
