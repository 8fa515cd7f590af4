"""Overhead of the training commands over plain TRL: one SFT step and one GRPO step.

Both sides train the same tiny Qwen2.5-VL (built offline) on the same text+image samples with
the same settings, interleaved in one run so machine noise hits both alike. Each side is a
whole command: read the data, load the model, build the trainer, train, save the model.

- ours: ``train_sft`` / ``train_rl`` from a recipe config (row validation, prompts built by
  the profile, template check, metrics file, dynamic clipping callback, merged save);
- plain TRL: what one would write by hand: rows with PIL images and the same chat messages,
  ``SFTTrainer`` / ``GRPOTrainer`` with the same config values and reward functions,
  ``trainer.save_model``.

    python bench/training.py [--reps 5] [--steps 1] [--samples 16]

Goal: ratio <= 1.10 for each.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOPICS = ["bread", "a knife", "the sea", "a car", "a garden", "a bomb", "a dog", "a bank"]


def make_data(root: Path, n: int) -> tuple[Path, list[dict]]:
    """n ShareGPT rows, each with one image and a short question; and the same samples as
    plain TRL rows."""
    from PIL import Image

    from guardrail.profiles import GUARDREASONER_VL_INSTRUCTION

    (root / "img").mkdir(parents=True, exist_ok=True)
    rows, plain = [], []
    for i in range(n):
        color = ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)
        path = root / "img" / f"{i}.png"
        Image.new("RGB", (96, 72), color).save(path)
        question = f"What does this picture of {TOPICS[i % len(TOPICS)]} show?"
        label = "harmful" if i % 2 else "unharmful"
        target = f"<think>\nThe picture shows {TOPICS[i % len(TOPICS)]}.\n</think>\n<result>\nRequest: {label}\nResponse: None\n</result>"
        user = f"Human user:\n<image>\n{question}\n\nAI assistant:\nNone\n\n"
        rows.append(
            {
                "id": f"s{i}",
                "messages": [
                    {"role": "system", "content": GUARDREASONER_VL_INSTRUCTION},
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": target},
                ],
                "images": [str(path)],
            }
        )
        prompt = [
            {"role": "system", "content": [{"type": "text", "text": GUARDREASONER_VL_INSTRUCTION}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Human user:\n"},
                    {"type": "image", "text": None},
                    {"type": "text", "text": f"\n{question}\n\nAI assistant:\nNone\n\n"},
                ],
            },
        ]
        plain.append(
            {
                "prompt": prompt,
                "completion": [{"role": "assistant", "content": [{"type": "text", "text": target}]}],
                "image_path": str(path),
                "request_label": label,
                "response_label": None,
            }
        )
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()

    import datasets
    import torch
    import transformers
    import trl
    from PIL import Image

    from guardrail.testing import cached_tiny_model
    from guardrail.training import RLConfig, SFTConfig, train_rl, train_sft
    from guardrail.training.rewards import build_reward_funcs

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("guardrail").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="guardrail-bench-training-"))
    model_path = str(cached_tiny_model("guardreasoner-vl", Path(tempfile.gettempdir()) / "guardrail-bench"))
    data, plain_rows = make_data(tmp / "data", args.samples)

    common = dict(
        max_steps=args.steps,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        bf16=False,
        logging_steps=1,
        save_steps=10_000,
        disable_tqdm=True,
        seed=0,
        report_to="none",
    )
    sft_common = dict(common, per_device_train_batch_size=8, max_length=1024)
    rl_common = dict(
        common,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=32,
        temperature=1.2,
        beta=0.0,
        loss_type="grpo",
        epsilon=0.2,
        steps_per_generation=2,
        reward_weights=[0.0, 0.0, 1.0],
    )
    counter = iter(range(10_000))

    def out_dir(name: str) -> str:
        return str(tmp / f"{name}-{next(counter)}")

    def ours_sft() -> None:
        train_sft(SFTConfig(model=model_path, data=[str(data)], output_dir=out_dir("ours-sft"), resume="never",
                            **{k: v for k, v in sft_common.items() if k != "report_to"}))  # fmt: skip

    def ours_rl() -> None:
        train_rl(RLConfig(model=model_path, data=[str(data)], output_dir=out_dir("ours-rl"), resume="never",
                          **{k: v for k, v in rl_common.items() if k != "report_to"}))  # fmt: skip

    def load():
        model = transformers.AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch.float32)
        processor = transformers.AutoProcessor.from_pretrained(model_path)
        return model, processor

    def plain_dataset(keys):
        rows = [
            {k: r[k] for k in keys} | {"images": [Image.open(r["image_path"]).convert("RGB")]}
            for r in plain_rows
        ]
        return datasets.Dataset.from_list(rows)

    def plain_sft() -> None:
        out = out_dir("plain-sft")
        args_ = trl.SFTConfig(
            output_dir=out, remove_unused_columns=False, dataloader_pin_memory=False, **sft_common
        )
        model, processor = load()
        trainer = trl.SFTTrainer(
            model=model,
            args=args_,
            train_dataset=plain_dataset(("prompt", "completion")),
            processing_class=processor,
        )
        trainer.train()
        trainer.save_model(out)

    def plain_rl() -> None:
        out = out_dir("plain-rl")
        args_ = trl.GRPOConfig(output_dir=out, dataloader_pin_memory=False, **rl_common)
        model, processor = load()
        vocab = processor.tokenizer.get_vocab()
        args_.generation_kwargs = {
            "suppress_tokens": [
                vocab[t] for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
            ]
        }
        rewards = build_reward_funcs(["format", "accuracy", "length_aware_safety"], max_length=32)
        dataset = plain_dataset(("prompt", "request_label", "response_label"))
        trainer = trl.GRPOTrainer(
            model=model, reward_funcs=rewards, args=args_, train_dataset=dataset, processing_class=processor
        )
        trainer.train()
        trainer.save_model(out)

    pairs = {"SFT": (ours_sft, plain_sft), "GRPO": (ours_rl, plain_rl)}
    times: dict[str, dict[str, list[float]]] = {k: {"ours": [], "plain": []} for k in pairs}
    for ours, plain in pairs.values():  # warm up: first-use costs (imports, caches)
        ours()
        plain()
    for _ in range(args.reps):
        for name, (ours, plain) in pairs.items():
            for side, f in (("ours", ours), ("plain", plain)):
                t0 = time.perf_counter()
                f()
                times[name][side].append(time.perf_counter() - t0)

    print(
        f"tiny Qwen2.5-VL, {args.samples} text+image samples, {args.steps} step(s), {args.reps} interleaved reps, 1 thread"
    )
    print(f"{'':<6}{'ours (s)':>12}{'plain TRL (s)':>16}{'ratio':>9}")
    for name in pairs:
        o, p = statistics.median(times[name]["ours"]), statistics.median(times[name]["plain"])
        print(f"{name:<6}{o:>12.3f}{p:>16.3f}{o / p:>9.3f}")
    print("goal: ratio <= 1.10 (whole command: data, model load, trainer, train, save)")


if __name__ == "__main__":
    main()
