"""Throughput of concurrent async checks: micro-batched against one backend call per check.

N callers (1, 8, 32) each run ``await guard.amoderate(...)`` over their share of the requests,
concurrently, on one event loop, as the requests of a web app or of the moderation server do.
Both sides use the same tiny Qwen2.5-VL guard (built offline) and the same requests:

- sequential: ``Guard(..., batching=False)``: every call is its own backend call; the model runs
  one call at a time (a local model cannot overlap them), so callers queue;
- micro-batched: ``Guard(...)`` (the default): calls that arrive while the model is busy are
  gathered into one backend call (at most 32 requests, 2 ms of waiting for company).

    python bench/microbatch.py [--requests 64] [--new-tokens 32] [--threads 1]

Goal: micro-batched >= 4x sequential at 32 callers (reasoning mode, tiny model, CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=64, help="checks per measurement (default 64)")
    parser.add_argument("--new-tokens", type=int, default=32, help="reasoning tokens per check (forced)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--callers", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds; the best of each side counts"
    )
    args = parser.parse_args()

    import torch

    from guardrail import Guard
    from guardrail.testing import cached_tiny_model

    torch.set_num_threads(args.threads)
    path = cached_tiny_model("guardreasoner-vl", Path(tempfile.gettempdir()) / "guardrail-bench")
    backend = Guard.from_pretrained(path, device="cpu").backend
    config = backend.generation_config(Guard(backend, batching=False).generation_options)
    config.max_new_tokens = config.min_new_tokens = args.new_tokens  # same work on both sides
    config.stop_strings = None
    backend.generation_config = lambda options: config  # type: ignore[method-assign]
    requests = [{"prompt": f"Request number {i}: how do I {w} at home?"}
                for i, w in zip(range(args.requests), ["bake bread", "fix a bike", "grow tomatoes", "paint a wall"] * 99,
                                strict=False)]  # fmt: skip

    print(f"tiny Qwen2.5-VL guard, CPU, {args.threads} thread(s), {args.requests} checks per run, "
          f"best of {args.rounds} alternating rounds")  # fmt: skip
    for mode in ("reasoning", "fast"):
        what = f"{args.new_tokens} generated tokens each" if mode == "reasoning" else "label probabilities"
        print(f"\n{mode} mode ({what})")
        print(
            f"  {'callers':>7} | {'sequential checks/s':>19} | {'micro-batched checks/s':>22} | {'ratio':>6} | batches"
        )
        for callers in args.callers:
            sequential = Guard(backend, mode=mode, batching=False)
            batched = Guard(backend, mode=mode)
            for g in (sequential, batched):  # warm up
                asyncio.run(_run(g, requests[: max(callers, 2)], callers))
            calls_before = batched.stats.get("microbatches")
            t_seq = t_bat = float("inf")
            for _ in range(args.rounds):  # alternate, keep the best: noise from other processes only slows
                t_seq = min(t_seq, _timed(sequential, requests, callers))
                t_bat = min(t_bat, _timed(batched, requests, callers))
            batches = (batched.stats.get("microbatches") - calls_before) // args.rounds
            n = len(requests)
            print(f"  {callers:>7} | {n / t_seq:>19.1f} | {n / t_bat:>22.1f} | {t_seq / t_bat:>5.1f}x | "
                  f"{batches} for {n} checks")  # fmt: skip


def _timed(guard, requests, callers) -> float:
    start = time.perf_counter()
    verdicts = asyncio.run(_run(guard, requests, callers))
    elapsed = time.perf_counter() - start
    # the random model's reasoning never parses (a policy verdict); a backend error would show here
    assert len(verdicts) == len(requests) and not any((v.error or "").startswith("backend") for v in verdicts)
    return elapsed


async def _run(guard, requests, callers):
    queue = list(enumerate(requests))
    results = [None] * len(requests)

    async def caller():
        while queue:
            i, item = queue.pop(0)
            results[i] = await guard.amoderate(**item)

    await asyncio.gather(*(caller() for _ in range(callers)))
    return results


if __name__ == "__main__":
    main()
