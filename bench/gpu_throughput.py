"""Checks per second of a full-size Qwen2.5-VL-3B guard on a GPU, against the GPU's floor.

No download: the model is the Qwen2.5-VL-3B architecture (the public config's values, written
out below) with random weights, in bf16. Its tokenizer is the tiny byte-level BPE of
``guardrail.testing`` (the real one needs the hub), so prompts are tokenized into somewhat more
tokens than Qwen's tokenizer would give; the script prints the counts. Weights being random does
not change the work: reasoning is forced to exactly ``--new-tokens`` tokens (210 by default,
GuardReasoner-VL-3B's average output length in the paper), and fast mode is one forward pass.

Measured through ``Guard.moderate_batch`` (the whole library path), at batch 1, 8 and 64:

- reasoning mode: checks/s with exactly N generated tokens per check;
- fast mode: checks/s (label probabilities, no generation).

Next to each, the model-time floor of the GPU: the time the arithmetic and the memory traffic
need at the GPU's peak (a roofline): each decode step reads every language-model weight once
plus the KV cache (memory bound at these batch sizes), prefill does 2 x parameters FLOPs per
prompt token (compute bound). floor checks/s = batch / (prefill + N x decode step). Peak
bandwidth and bf16 FLOP/s come from a table of known GPUs (or ``--bandwidth-gbs`` and
``--peak-tflops``).

    python bench/gpu_throughput.py                        # CUDA, full size
    python bench/gpu_throughput.py --tiny --device cpu    # smoke run of the script itself

UNTESTED ON A GPU: written and smoke-tested on CPU with ``--tiny`` only (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# Qwen/Qwen2.5-VL-3B-Instruct config.json (public), language model and vision tower.
QWEN25_VL_3B_TEXT = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    "use_sliding_window": False,
    "tie_word_embeddings": True,
}
QWEN25_VL_3B_VISION = {
    "depth": 32,
    "hidden_act": "silu",
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_chans": 3,
    "out_hidden_size": 2048,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}

# name substring -> (memory bandwidth GB/s, dense bf16 TFLOP/s), vendor datasheet figures.
GPUS = {
    "H200": (4800, 989),
    "H100 SXM": (3350, 989),
    "H100 PCIe": (2000, 756),
    "H100": (3350, 989),
    "GH200": (4000, 989),
    "A100-SXM4-80GB": (2039, 312),
    "A100 80GB PCIe": (1935, 312),
    "A100": (1555, 312),
    "L40S": (864, 362),
    "L40": (864, 181),
    "L4": (300, 121),
    "A10G": (600, 70),
    "A10": (600, 125),
    "RTX 4090": (1008, 165),
    "RTX 3090": (936, 71),
    "T4": (320, 65),
    "V100": (900, 125),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny test model instead of the 3B (smoke run)"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="default: 1 8 64 (tiny: 1 2)")
    parser.add_argument(
        "--new-tokens", type=int, default=None, help="reasoning tokens per check (default 210)"
    )
    parser.add_argument("--reps", type=int, default=3, help="timed runs per batch size")
    parser.add_argument(
        "--image", action="store_true", help="one 448x448 image per request (256 image tokens)"
    )
    parser.add_argument("--bandwidth-gbs", type=float, default=None, help="GPU memory bandwidth, GB/s")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU dense bf16 TFLOP/s")
    args = parser.parse_args()
    batches = args.batches or ([1, 2] if args.tiny else [1, 8, 64])
    new_tokens = args.new_tokens or (8 if args.tiny else 210)

    import torch

    dtype = getattr(torch, args.dtype)
    guard, label = build_guard(args.tiny, args.device, dtype, new_tokens)
    model = guard.backend.model
    lm_params, lm_bytes, kv_per_token = language_model_sizes(model)
    spec = gpu_spec(args)
    total = sum(p.numel() for p in model.parameters())
    print(f"{label}: {total / 1e6:,.1f}M parameters ({lm_params / 1e6:,.1f}M in the language model, "
          f"{lm_bytes / 1e9:.3f} GB read per decode step), {args.dtype}, {device_name(args.device)}")  # fmt: skip
    if spec:
        print(f"floor from {spec[0]:g} GB/s and {spec[1]:g} TFLOP/s ({spec[2]})")
    items = requests(max(batches), args.image)
    n_prompt = prompt_tokens(guard, items[0])
    print(f"prompt: {n_prompt} tokens per request; reasoning: exactly {new_tokens} generated tokens; "
          f"{args.reps} timed runs per cell\n")  # fmt: skip
    header = (f"{'batch':>5} | {'reasoning checks/s':>18} | {'floor':>8} | {'of floor':>8} | "
              f"{'fast checks/s':>13} | {'floor':>8} | {'of floor':>8} | {'fast/reasoning':>14}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for batch in batches:
        chunk = items[:batch]
        reasoning = checks_per_second(guard, chunk, "reasoning", args.reps, new_tokens, args.device)
        fast = checks_per_second(guard, chunk, "fast", args.reps, new_tokens, args.device)
        r_floor = f_floor = None
        if spec:
            bw, peak = spec[0] * 1e9, spec[1] * 1e12
            prefill = max(2 * lm_params * batch * n_prompt / peak, lm_bytes / bw)
            fast_prefill = max(2 * lm_params * batch * (n_prompt + 16) / peak, lm_bytes / bw)
            kv = kv_per_token * batch * (n_prompt + new_tokens / 2)
            step = max((lm_bytes + kv) / bw, 2 * lm_params * batch / peak)
            r_floor = batch / (prefill + new_tokens * step)
            f_floor = batch / fast_prefill
        print(f"{batch:>5} | {reasoning:>18.2f} | {fmt(r_floor):>8} | {pct(reasoning, r_floor):>8} | "
              f"{fast:>13.2f} | {fmt(f_floor):>8} | {pct(fast, f_floor):>8} | {fast / reasoning:>13.1f}x")  # fmt: skip
    guard.close()


def build_guard(tiny: bool, device: str, dtype, new_tokens: int):  # noqa: ANN001, ANN201
    import torch
    import transformers

    from guardrail import Guard
    from guardrail.backends.transformers import TransformersBackend
    from guardrail.testing import cached_tiny_model

    tiny_path = cached_tiny_model("guardreasoner-vl", Path(tempfile.gettempdir()) / "guardrail-bench")
    if tiny:
        backend = Guard.from_pretrained(tiny_path, device=device, dtype=dtype).backend
        label = "tiny Qwen2.5-VL (test model)"
    else:
        processor = transformers.AutoProcessor.from_pretrained(tiny_path)
        # Qwen2.5-VL's own image-processor defaults (the tiny model's are shrunk)
        processor.image_processor = transformers.Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056)
        vocab = processor.tokenizer.get_vocab()
        config = transformers.Qwen2_5_VLConfig(
            text_config={
                **QWEN25_VL_3B_TEXT,
                "bos_token_id": None,
                "eos_token_id": vocab["<|im_end|>"],
                "pad_token_id": vocab["<|endoftext|>"],
            },  # fmt: skip
            vision_config=QWEN25_VL_3B_VISION,
            image_token_id=vocab["<|image_pad|>"],
            video_token_id=vocab["<|video_pad|>"],
            vision_start_token_id=vocab["<|vision_start|>"],
            vision_end_token_id=vocab["<|vision_end|>"],
            tie_word_embeddings=True,
        )
        config._attn_implementation = "sdpa"
        torch.manual_seed(0)
        with torch.device(device):
            model = transformers.Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
        model.eval()
        model.generation_config = transformers.GenerationConfig(
            eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<|endoftext|>"]
        )
        backend = TransformersBackend(
            model, processor, model_name="Qwen2.5-VL-3B architecture, random weights"
        )
        label = "Qwen2.5-VL-3B architecture, random weights"
    guard = Guard(backend, max_new_tokens=new_tokens, batching=False, profile_options={"stop": ()})
    config = backend.generation_config(guard.generation_options)
    config.min_new_tokens = new_tokens  # exactly N tokens: no end of turn before
    backend.generation_config = lambda options: config  # type: ignore[method-assign]
    return guard, label


def language_model_sizes(model) -> tuple[int, int, int]:  # noqa: ANN001
    """(parameters, bytes) of the weights a decode step reads (language model + output layer,
    counted once when tied), and KV-cache bytes per token of context."""
    seen, params, size = set(), 0, 0
    modules = [model.model.language_model, model.lm_head]
    for module in modules:
        for p in module.parameters():
            if p.data_ptr() in seen:
                continue
            seen.add(p.data_ptr())
            params += p.numel()
            size += p.numel() * p.element_size()
    text = model.config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    element = next(model.parameters()).element_size()
    kv = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * element
    return params, size, kv


def gpu_spec(args) -> tuple[float, float, str] | None:  # noqa: ANN001
    if args.bandwidth_gbs and args.peak_tflops:
        return args.bandwidth_gbs, args.peak_tflops, "given"
    name = device_name(args.device)
    for key, (bw, flops) in GPUS.items():
        if key.lower() in name.lower():
            return bw, flops, f"datasheet of {key}"
    print(f"note: no floor: unknown device {name!r}; pass --bandwidth-gbs and --peak-tflops")
    return None


def device_name(device: str) -> str:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return str(device)


def requests(n: int, image: bool) -> list[dict]:
    from PIL import Image

    topics = ["bake bread", "fix a bike", "grow tomatoes", "paint a wall", "learn chess", "write a poem"]
    items = []
    for i in range(n):
        item = {
            "prompt": f"Request {i}: how do I {topics[i % len(topics)]} at home? Please explain step by step."
        }
        if image:
            item["images"] = [Image.new("RGB", (448, 448), (i * 37 % 256, 90, 160))]
        items.append(item)
    return items


def prompt_tokens(guard, item) -> int:  # noqa: ANN001
    from guardrail.inputs import prepare

    ids, _, _ = guard.backend.encode(prepare(guard.profile, item, guard.limits).prompt)
    return len(ids)


def checks_per_second(guard, items, mode: str, reps: int, new_tokens: int, device: str) -> float:  # noqa: ANN001
    import torch

    def run() -> None:
        verdicts = guard.moderate_batch(items, mode=mode)
        if mode == "reasoning":
            assert all(v.output_tokens == new_tokens for v in verdicts), [v.output_tokens for v in verdicts]
        else:
            assert all(v.path == "fast" for v in verdicts)

    run()  # warm up (kernels, allocator)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        run()
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return len(items) * reps / (time.perf_counter() - start)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def pct(measured: float, floor: float | None) -> str:
    return "-" if not floor else f"{100 * measured / floor:.0f}%"


if __name__ == "__main__":
    main()
