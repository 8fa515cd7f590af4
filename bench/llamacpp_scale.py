"""CPU speed of the llama.cpp backend at realistic layer widths, and estimates for 3B/7B guards.

The tiny test model says nothing about real speed. This builds a mid-size random Qwen2.5-VL
(language model: 12 layers of width 1024, ~0.18B parameters; vision tower: 4 blocks of the real
Qwen2.5-VL width, 1280) offline, exports it to GGUF at each quantisation, and measures on this
machine, per thread count:

- prompt processing (prefill) in tokens/s and GFLOP/s,
- generation (decode) in tokens/s and the weight bytes read per second,
- image encoding in patches/s (a 448x448 image: 1024 patches, 256 image tokens).

From these rates it estimates a GuardReasoner-VL-3B / -7B check on the same machine: compute
(prefill, image) scales with parameters, decode with the bytes of the quantised weights. Real
models also pay for their 151k-token vocabulary (output layer) and longer contexts, so treat the
estimates as optimistic lower bounds on time.

    python bench/llamacpp_scale.py [--threads 1 2] [--quant q8_0 q4_k_m]

Each figure is the best of ``--reps`` runs (load from other processes only ever slows a run).
Takes a few minutes and ~1.5 GB of disk under the temp directory (kept for reruns).
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

# Real models (config.json of Qwen2.5-VL-3B/7B-Instruct): parameters per prefill token (language
# model incl. the tied/untied output layer), vision-tower parameters per patch, GGUF sizes (GB).
REAL = {
    "3B": {"lm_params": 3.09e9, "vit_params": 0.67e9, "q8_0": 3.3, "q4_k_m": 1.9, "f16": 6.2},
    "7B": {"lm_params": 7.07e9, "vit_params": 0.67e9, "q8_0": 8.1, "q4_k_m": 4.7, "f16": 15.2},
}
# A typical GuardReasoner-VL check: system prompt + request ~ 250 tokens, one ~0.5 MP image
# (~ 640 image tokens, 2560 patches at the reference processor's size), ~190 output tokens (Eco).
CHECK = {"text_tokens": 250, "image_tokens": 640, "output_tokens": 190}


def build_mid_model(out: Path) -> Path:
    if (out / "config.json").exists():
        return out
    import torch
    import transformers

    from guardrail.testing.tiny import _qwen_tokenizer, _qwen_vl_chat_template

    torch.manual_seed(0)
    tokenizer = _qwen_tokenizer(512)
    vocab = tokenizer.get_vocab()
    config = transformers.Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(vocab), "hidden_size": 1024, "intermediate_size": 4096,
            "num_hidden_layers": 12, "num_attention_heads": 8, "num_key_value_heads": 2,
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "bos_token_id": None,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
            "eos_token_id": vocab["<|im_end|>"], "pad_token_id": vocab["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 4, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
            "out_hidden_size": 1024, "patch_size": 14, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [3],
        },
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"],
        tie_word_embeddings=False,
    )  # fmt: skip
    model = transformers.Qwen2_5_VLForConditionalGeneration(config)
    processor = transformers.Qwen2_5_VLProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 16384),
        tokenizer=tokenizer,
        video_processor=transformers.Qwen2VLVideoProcessor(),
        chat_template=_qwen_vl_chat_template(),
    )
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".mid-"))
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    tmp.rename(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quant", nargs="+", default=["q8_0", "q4_k_m"])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    from PIL import Image

    from guardrail import Guard
    from guardrail.backends.base import GenerationOptions
    from guardrail.export.gguf import GGUFFiles, export_gguf, read_gguf_metadata
    from guardrail.profiles import GuardReasonerVLProfile, ModerationInput

    root = Path(tempfile.gettempdir()) / "guardrail-bench"
    root.mkdir(parents=True, exist_ok=True)
    model_dir = build_mid_model(root / "mid-qwen2.5-vl")
    lm_params = 12 * (2 * 1024 * 1024 + 2 * 1024 * 256 + 3 * 1024 * 4096)
    vit_params = 4 * (4 * 1280 * 1280 + 3 * 1280 * 3420)

    profile = GuardReasonerVLProfile()
    text_prompt = profile.render(ModerationInput(prompt="Is this request safe? " * 60))
    image = Image.new("RGB", (448, 448), (120, 60, 30))
    image_prompt = profile.render(ModerationInput(prompt="Is this request safe? " * 60, images=(image,)))
    n_patches = (448 // 14) ** 2
    results = []
    for quant in args.quant:
        out = root / "mid-gguf"
        model_file, mmproj_file = (
            out / f"{model_dir.name}-{quant}.gguf",
            out / f"mmproj-{model_dir.name}-f16.gguf",
        )
        if model_file.exists() and mmproj_file.exists():  # exported by an earlier run
            files = GGUFFiles(model=model_file, mmproj=mmproj_file, quant=quant)
        else:
            files = export_gguf(model_dir, out, quant=quant, assume_pre_tokenizer="qwen2")
        size_gb = files.model.stat().st_size / 1e9
        assert read_gguf_metadata(files.model)["general.architecture"] == "qwen2vl"
        for threads in args.threads:
            backend = Guard.from_gguf(files.model, files.mmproj, n_threads=threads, n_ctx=4096).backend
            backend._end_ids = []  # random weights: always generate the full length
            n_text = backend.encode(text_prompt).n_tokens
            n_image_prompt = backend.encode(image_prompt).n_tokens

            def timed(fn) -> float:
                fn()  # warm up
                runs = []
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    fn()
                    runs.append(time.perf_counter() - t0)
                return min(runs)  # other load only slows a run down: the best is the machine's speed

            decode_s: list[float] = []

            def decode(backend=backend, decode_s=decode_s) -> None:  # generation alone, after a prompt
                parts = backend._encode(text_prompt)
                pos, used = backend._prefill(parts, None)
                backend._free(parts)
                t0 = time.perf_counter()
                backend._decode_loop(pos, used, GenerationOptions(max_new_tokens=64), None, None)
                decode_s.append(time.perf_counter() - t0)

            prefill = timed(lambda backend=backend: backend.token_logprobs(text_prompt))
            timed(decode)
            with_image = timed(lambda backend=backend: backend.token_logprobs(image_prompt))
            backend.close()
            decode_tps = 64 / min(decode_s)
            # the vision tower alone: minus the language model's share of the longer prompt
            image_s = with_image - prefill * n_image_prompt / n_text
            results.append(
                {
                    "quant": quant, "threads": threads, "size_gb": size_gb,
                    "prefill_tps": n_text / prefill, "prefill_gflops": 2 * lm_params * n_text / prefill / 1e9,
                    "decode_tps": decode_tps, "decode_gbps": decode_tps * size_gb,
                    "patches_ps": n_patches / max(image_s, 1e-9),
                    "vit_gflops": 2 * vit_params * n_patches / max(image_s, 1e-9) / 1e9,
                }
            )  # fmt: skip

    print("measured here: mid-size random Qwen2.5-VL (LM 0.18B, 4 real-width vision blocks)")
    print(
        f"{'quant':7s} {'thr':>3s} {'prefill tok/s':>13s} {'GFLOP/s':>8s} {'decode tok/s':>12s} {'GB/s':>6s} {'ViT GFLOP/s':>11s}"
    )
    for r in results:
        print(
            f"{r['quant']:7s} {r['threads']:3d} {r['prefill_tps']:13.1f} {r['prefill_gflops']:8.1f}"
            f" {r['decode_tps']:12.1f} {r['decode_gbps']:6.2f} {r['vit_gflops']:11.1f}"
        )
    print(
        f"\nestimated GuardReasoner-VL check ({CHECK['text_tokens']} text tokens, one image of "
        f"{CHECK['image_tokens']} tokens, {CHECK['output_tokens']} output tokens):"
    )
    print(
        f"{'model':5s} {'quant':7s} {'thr':>3s} {'prompt s':>8s} {'image s':>8s} {'output s':>8s} {'total s':>8s} {'text-only s':>11s}"
    )
    for name, real in REAL.items():
        for r in results:
            flops_tok = 2 * real["lm_params"]
            prompt_s = CHECK["text_tokens"] * flops_tok / (r["prefill_gflops"] * 1e9)
            image_s = (
                CHECK["image_tokens"]
                * (flops_tok + 4 * 2 * real["vit_params"])
                / (min(r["prefill_gflops"], r["vit_gflops"]) * 1e9)
            )
            out_s = CHECK["output_tokens"] * real[r["quant"]] / r["decode_gbps"]
            print(
                f"{name:5s} {r['quant']:7s} {r['threads']:3d} {prompt_s:8.1f} {image_s:8.1f} {out_s:8.1f}"
                f" {prompt_s + image_s + out_s:8.1f} {prompt_s + out_s:11.1f}"
            )


if __name__ == "__main__":
    main()
