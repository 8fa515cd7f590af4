"""Fast mode against one bare forward pass of the same model, and against reasoning mode.

All three run the same tiny Qwen2.5-VL guard (built offline) on the same input, interleaved in
one run so machine noise hits them alike:

- bare forward: what an app would write to get next-token logits for the guard prompt without
  guardrail: the stock processor on the rendered prompt string (and the image), one
  ``model(**inputs)`` call; and the model call alone on inputs prepared beforehand (a floor
  that leaves out the input work fast mode does too: tokenizing, preprocessing the image);
- fast mode: one ``guard.moderate(..., mode="fast")`` call: validation, image decoding, prompt
  rendering, tokenization, the forward pass over prompt + forced answer + the candidate labels
  (tree attention), the scores and the verdict;
- reasoning mode: one ``guard.moderate(...)`` call generating exactly ``--new-tokens`` tokens
  (the paper's average is about 210; a random model never closes its result block, so the
  length is forced).

    python bench/fast_mode.py [--reps 30] [--new-tokens 210] [--threads 1]

Goals: fast / bare <= 1.2; fast vs reasoning: reported.
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
    parser.add_argument("--new-tokens", type=int, default=210)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from guardrail import Guard
    from guardrail.inputs import prepare
    from guardrail.testing import cached_tiny_model

    torch.set_num_threads(args.threads)
    path = cached_tiny_model("guardreasoner-vl", Path(tempfile.gettempdir()) / "guardrail-bench")
    guard = Guard.from_pretrained(path, device="cpu", max_new_tokens=args.new_tokens, batching=False)
    backend = guard.backend
    config = backend.generation_config(guard.generation_options)
    config.min_new_tokens = args.new_tokens  # force the length (no end of turn, no stop string)
    config.stop_strings = None
    backend.generation_config = lambda options: config  # type: ignore[method-assign]
    guard.profile.stop = ()

    image = Image.new("RGB", (224, 224), (30, 120, 200))
    cases = {
        "text+image": {"prompt": "What is shown in this picture? Is it safe?", "images": [image]},
        "prompt+response": {
            "prompt": "How do I bake bread at home?",
            "response": "Mix flour, water, salt and yeast.",
        },
    }
    print(f"tiny Qwen2.5-VL guard, CPU, {args.threads} thread(s), {args.reps} interleaved reps, medians")
    for name, item in cases.items():
        rendered = prepare(guard.profile, item, guard.limits).prompt

        def bare(item=item, rendered=rendered) -> None:
            inputs = backend.processor(text=[rendered.text], images=item.get("images"), return_tensors="pt")
            with torch.inference_mode():
                backend.model(**inputs)

        prepared = backend.processor(text=[rendered.text], images=item.get("images"), return_tensors="pt")

        def model_only(prepared=prepared) -> None:
            with torch.inference_mode():
                backend.model(**prepared)

        def fast(item=item) -> None:
            assert guard.moderate(**item, mode="fast").path == "fast"

        def reasoning(item=item) -> None:
            assert guard.moderate(**item).output_tokens == args.new_tokens

        timings = _interleave({"bare": bare, "model": model_only, "fast": fast}, args.reps)
        slow = _interleave({"reasoning": reasoning}, max(3, args.reps // 10))
        b, m, f, r = timings["bare"], timings["model"], timings["fast"], slow["reasoning"]
        from guardrail import fast as fast_mode

        plan = fast_mode.plan(guard.profile, prepare(guard.profile, item, guard.limits).item)
        encoded, trie = backend._encode_scoring(fast_mode.score_request(guard.profile, prepare(
            guard.profile, item, guard.limits), plan))  # fmt: skip
        extra = len(encoded[0]) + len(trie) - prepared["input_ids"].shape[1]
        print(f"\n{name}: {prepared['input_ids'].shape[1]} prompt tokens; fast mode adds {extra} "
              f"(forced answer + a trie of {len(plan.continuations)} label candidates)")  # fmt: skip
        print(f"  bare forward pass (processor + model)  : {b * 1000:9.2f} ms")
        print(f"  model call alone (inputs prepared)      : {m * 1000:9.2f} ms")
        print(f"  fast mode (guard.moderate)              : {f * 1000:9.2f} ms")
        print(f"  reasoning mode ({args.new_tokens} tokens)            : {r * 1000:9.2f} ms")
        print(f"  ratio fast / bare forward               : {f / b:9.3f}   (goal <= 1.2)")
        print(f"  ratio fast / model call alone           : {f / m:9.3f}")
        print(f"  ratio reasoning / fast                  : {r / f:9.1f}x")


def _interleave(funcs: dict, reps: int) -> dict[str, float]:
    for f in funcs.values():  # warm up
        f()
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(reps):
        for name, f in funcs.items():
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


if __name__ == "__main__":
    main()
