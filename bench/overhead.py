"""Overhead of Guard.moderate over calling model.generate directly on the same input.

Both sides run the same tiny Qwen2.5-VL guard (built offline), the same text+image input and
the same greedy settings, interleaved in one run so machine noise hits both alike. The direct
side is what an app would write without guardrail: the stock processor on the rendered prompt
string and the image, ``model.generate``, decode. The guard side is one ``guard.moderate`` call:
input validation, image decoding, prompt rendering, tokenization, image preprocessing,
generation, parsing and verdict assembly.

    python bench/overhead.py [--reps 30] [--max-new-tokens 64]

Goal: ratio <= 1.05 at realistic output lengths.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    import torch
    from PIL import Image

    from guardrail import Guard
    from guardrail.inputs import prepare
    from guardrail.testing import cached_tiny_model

    torch.set_num_threads(1)
    path = cached_tiny_model("guardreasoner-vl", Path(tempfile.gettempdir()) / "guardrail-bench")
    guard = Guard.from_pretrained(path, device="cpu", max_new_tokens=args.max_new_tokens)
    backend = guard.backend
    image = Image.new("RGB", (224, 224), (30, 120, 200))
    item = {"prompt": "What is shown in this picture? Is it safe?", "images": [image]}
    rendered = prepare(guard.profile, item, guard.limits).prompt
    config = backend.generation_config(guard.generation_options)
    # Force full-length generations on both sides so they do the same amount of model work.
    config.eos_token_id = None
    guard_config = backend.generation_config
    backend.generation_config = lambda options: config  # type: ignore[method-assign]

    def direct() -> int:
        inputs = backend.processor(text=[rendered.text], images=[image], return_tensors="pt")
        with torch.inference_mode():
            # the tokenizer is how generate() reads the stop string (</result>) as the guard does
            out = backend.model.generate(**inputs, generation_config=config, tokenizer=backend.tokenizer)
        new = out[0, inputs["input_ids"].shape[1] :]
        backend.tokenizer.decode(new, skip_special_tokens=True)
        return len(new)

    def guarded() -> int:
        return guard.moderate(**item).output_tokens or 0

    for f in (direct, guarded):  # warm up
        f()
    t_direct, t_guard = [], []
    for _ in range(args.reps):
        for f, acc in ((direct, t_direct), (guarded, t_guard)):
            t0 = time.perf_counter()
            n = f()
            acc.append(time.perf_counter() - t0)
            assert n == args.max_new_tokens, n
    backend.generation_config = guard_config  # type: ignore[method-assign]
    d, g = statistics.median(t_direct), statistics.median(t_guard)
    print(
        f"tiny Qwen2.5-VL, text+image, {args.max_new_tokens} new tokens, {args.reps} interleaved reps, 1 thread"
    )
    print(f"  processor+generate      : {d * 1000:8.2f} ms (median)")
    print(f"  guard.moderate          : {g * 1000:8.2f} ms (median)")
    print(f"  overhead                : {(g - d) * 1000:8.2f} ms per call")
    print(f"  ratio guard/direct      : {g / d:8.3f}   (goal <= 1.05)")


if __name__ == "__main__":
    main()
