"""A verdict-cache hit against a miss, for the same request, in one run.

The tiny Qwen2.5-VL guard (built offline) with ``cache=VerdictCache()``. A miss runs the whole
check and stores the verdict (the cache is cleared before each miss); a hit validates the input,
decodes the image, hashes texts and pixels, and returns the stored verdict. Interleaved reps,
medians. Only verdicts decided by the model are cached, and a random model's reasoning never
parses: the bench appends a result block to each generated text (a string operation, no model
work) so that reasoning verdicts parse and are stored.

    python bench/cache.py [--reps 30] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--new-tokens", type=int, default=64, help="reasoning tokens on a miss (forced)")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from guardrail import Guard, VerdictCache
    from guardrail.testing import cached_tiny_model

    torch.set_num_threads(1)
    path = cached_tiny_model("guardreasoner-vl", Path(tempfile.gettempdir()) / "guardrail-bench")
    cache = VerdictCache()
    guard = Guard.from_pretrained(path, device="cpu", max_new_tokens=args.new_tokens, cache=cache)
    config = guard.backend.generation_config(guard.generation_options)
    config.min_new_tokens = args.new_tokens
    guard.backend.generation_config = lambda options: config  # type: ignore[method-assign]
    finish = guard.backend._finish

    def parsable(tokens, options, prompt=None):  # noqa: ANN001, ANN202
        g = finish(tokens, options, prompt)
        reasoning = g.text.replace("<", " ")  # random tokens: keep them from forming tags
        text = f"<think>{reasoning}</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"
        return dataclasses.replace(g, text=text, finish_reason="stop")  # a cut output is unparsable

    guard.backend._finish = parsable  # type: ignore[method-assign]
    buf = io.BytesIO()
    Image.effect_noise((512, 512), 60).convert("RGB").save(buf, format="PNG")
    cases = {
        "text": {"prompt": "How do I bake bread at home?"},
        "text + 512x512 PNG": {"prompt": "What is shown here?", "images": [buf.getvalue()]},
    }
    print(f"tiny Qwen2.5-VL guard, CPU, 1 thread, {args.reps} interleaved reps, medians")
    print(f"  {'request':<20} | {'mode':<9} | {'miss (ms)':>9} | {'hit (ms)':>8} | {'miss / hit':>10}")
    for name, item in cases.items():
        for mode in ("reasoning", "fast"):
            miss, hit = [], []
            for _ in range(args.reps + 1):
                cache.clear()
                t0 = time.perf_counter()
                first = guard.moderate(**item, mode=mode)
                t1 = time.perf_counter()
                again = guard.moderate(**item, mode=mode)
                t2 = time.perf_counter()
                assert not first.cached and again.cached
                miss.append(t1 - t0)
                hit.append(t2 - t1)
            m, h = statistics.median(miss[1:]), statistics.median(hit[1:])
            print(f"  {name:<20} | {mode:<9} | {m * 1000:>9.2f} | {h * 1000:>8.3f} | {m / h:>9.0f}x")


if __name__ == "__main__":
    main()
