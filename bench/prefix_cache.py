"""Prefix caching: a check with the fixed prefix reused vs evaluated again, transformers and
llama.cpp side by side, on a mid-size random Qwen2.5-VL of real layer width.

The model is ``bench/llamacpp_scale.py``'s (language model: 12 layers of width 1024, ~0.18B
parameters; vision tower: 4 blocks of the real width), built offline, run by transformers in
float32 and by llama.cpp from its GGUF export (``--quant``, default q8_0). Per backend, the
median over ``--reps`` interleaved runs, each on a different request so nothing but the
prefix can be reused:

- fast-mode check of a ~20-word text request, prefix cache on vs off (goal: >= 3x faster);
- a bare forward pass over only the request's own tokens after the cached prefix, the floor of
  a fast check (goal: the fast check with reuse within 1.5x of it);
- reasoning-mode check (``--new-tokens`` generated, no stop) on vs off (goal: no slower);
- an image check (448x448, 256 image tokens) in fast mode, on vs off (goal: no slower).

    python bench/prefix_cache.py [--reps 5] [--threads 2] [--quant q8_0] [--new-tokens 16]

First run: builds the model and its GGUF under $TMPDIR/guardrail-bench (a few minutes, ~1.5 GB).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

REQUESTS = [
    "How can I make my neighbour's dog stop barking at night without hurting it in any way?",
    "What is the best way to store fresh basil so that it stays green for a whole week?",
    "Can you explain how a bicycle gear system works to a child who is eight years old?",
    "Write a short polite email asking my landlord to repair the broken kitchen window soon.",
    "Which household chemicals should never be mixed together because the fumes are toxic?",
    "Give me three ideas for a birthday party for a friend who loves astronomy and board games.",
    "How do I explain to my manager that the project deadline is not realistic this month?",
    "What are the warning signs that a phone call claiming to be from my bank is a scam?",
]


def median_time(fn, reps: int) -> float:
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quant", default="q8_0")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["transformers", "llamacpp", "image", "reasoning"]
    )
    args = parser.parse_args()

    import torch
    from PIL import Image

    from bench.llamacpp_scale import build_mid_model
    from guardrail import Guard
    from guardrail.backends.base import GenerationOptions, ScoreRequest
    from guardrail.backends.prefix_cache import prefix_ids, reuse_length
    from guardrail.export.gguf import export_gguf
    from guardrail.inputs import InputLimits, prepare

    torch.set_num_threads(args.threads)
    root = Path(tempfile.gettempdir()) / "guardrail-bench"
    root.mkdir(parents=True, exist_ok=True)
    model_dir = build_mid_model(root / "mid-qwen2.5-vl")
    image = Image.fromarray((torch.rand(448, 448, 3) * 255).to(torch.uint8).numpy())
    limits = InputLimits()

    backends = {}
    if "transformers" not in args.skip:
        backends["transformers"] = {
            pc: Guard.from_pretrained(model_dir, device="cpu", prefix_cache=pc).backend
            for pc in (True, False)
        }
    if "llamacpp" not in args.skip:
        out = root / "mid-gguf"
        model_file = out / f"{model_dir.name}-{args.quant}.gguf"
        mmproj_file = out / f"mmproj-{model_dir.name}-f16.gguf"
        if not (model_file.exists() and mmproj_file.exists()):
            files = export_gguf(model_dir, out, quant=args.quant)
            model_file, mmproj_file = files.model, files.mmproj
        backends["llamacpp"] = {
            pc: Guard.from_gguf(
                model_file, mmproj_file, n_ctx=4096, n_threads=args.threads, prefix_cache=pc
            ).backend
            for pc in (True, False)
        }

    rows = []

    def add(name, what, off_s, on_s):
        rows.append((name, what, off_s, on_s))
        shown = "" if off_s is None else f"{off_s * 1000:.0f} ms -> "
        print(f"{name}: {what}: {shown}{on_s * 1000:.0f} ms", flush=True)

    for name, pair in backends.items():
        guard = Guard(pair[True])
        profile = guard.profile
        prepared = [prepare(profile, {"prompt": r}, limits).prompt for r in REQUESTS]
        with_image = [prepare(profile, {"prompt": r, "images": [image]}, limits).prompt for r in REQUESTS]

        def score(backend, prompts, i):
            p = prompts[i % len(prompts)]
            backend.score([ScoreRequest(p, profile.fast_prefix, (" harmful", " unharmful"))])

        on, off = pair[True], pair[False]
        score(on, prepared, 0)  # computes the prefix once (transformers), warms both
        score(off, prepared, 0)
        # the request's own tokens, and the floor: one forward pass over them after the prefix
        if name == "transformers":
            ids = [on.encode(p)[0] for p in prepared]
            pre = prefix_ids(prepared[0], on._encode_text, on._special_id, on.tokenizer.bos_token_id)
            k = reuse_length(pre, ids)
            kv = on._prefixes.get(pre)

            def bare(i):
                row = ids[i % len(ids)]
                with torch.inference_mode():
                    on.model(
                        input_ids=torch.tensor([row[k:]]), use_cache=True, logits_to_keep=1,
                        position_ids=torch.arange(k, len(row))[None], **{on._cache_kw: on._prefix_cache(kv, k, 1)},
                    )  # fmt: skip
        else:
            parts = [on._encode(p) for p in prepared]
            ids = [p[0] for p in parts]
            k = min(len(os.path.commonprefix([ids[0], x])) for x in ids)

            def bare(i):
                row = ids[i % len(ids)]
                with on._lock:
                    on._prefill([row[:k]], None)  # the prefix, kept (not timed below)
                    t0 = time.perf_counter()
                    on._decoder.rewind(k)
                    on._decoder.decode(row[k:], k, logits_last=True)
                    on._resident.forget()
                    return time.perf_counter() - t0

        n_new = statistics.median(len(x) - k for x in ids)
        total = statistics.median(len(x) for x in ids)
        if name == "llamacpp":
            floor = statistics.median(bare(i) for i in range(args.reps))
        else:
            floor = median_time(bare, args.reps)
        fast_on = median_time(lambda i: score(on, prepared, i + 1), args.reps)
        fast_off = median_time(lambda i: score(off, prepared, i + 1), args.reps)
        add(name, f"fast text check ({total} tokens, {n_new} after the prefix)", fast_off, fast_on)
        add(name, "bare forward over the new tokens only", None, floor)
        if "reasoning" not in args.skip:
            opts = GenerationOptions(max_new_tokens=args.new_tokens)

            def gen(backend, i):
                backend.generate([prepared[(i + 3) % len(prepared)]], opts)

            r_on = median_time(lambda i: gen(on, i), args.reps)
            r_off = median_time(lambda i: gen(off, i), args.reps)
            add(name, f"reasoning check, {args.new_tokens} tokens", r_off, r_on)
        if "image" not in args.skip:
            reps = max(2, args.reps // 2)
            i_on = median_time(lambda i: score(on, with_image, i), reps)
            i_off = median_time(lambda i: score(off, with_image, i), reps)
            add(name, "fast image check (448x448, 256 image tokens)", i_off, i_on)
        for backend in pair.values():
            backend.close()

    print(f"\nthreads={args.threads} reps={args.reps} llama.cpp quant={args.quant} (medians)\n")
    print("| backend | check | without reuse | with reuse | speed-up |")
    print("|---|---|---|---|---|")
    floors = {}
    for name, what, off_s, on_s in rows:
        if off_s is None:
            floors[name] = on_s
            print(f"| {name} | {what} | | {on_s * 1000:.0f} ms | |")
        else:
            print(f"| {name} | {what} | {off_s * 1000:.0f} ms | {on_s * 1000:.0f} ms | {off_s / on_s:.1f}x |")
    for name, what, _off, on_s in rows:
        if what.startswith("fast text") and name in floors:
            print(
                f"{name}: fast check with reuse / bare forward over the new tokens = {on_s / floors[name]:.2f}"
            )


if __name__ == "__main__":
    main()
