"""On-device CPU speed per guard family, side by side in one run, through the llama.cpp backend.

Builds each family that fits a laptop-class machine at its **real size with random weights**
(speed does not depend on the weights' values), exports it to GGUF with guardrail's exporter
(``bf16`` once, then ``q8_0`` and ``q4_k_m`` through ``quantize_gguf``) and measures, per
quantisation and thread count, interleaved so that load from other processes hits every row
alike (per row the best and the median of ``--reps`` runs):

- ``llama-guard-3``: Llama Guard 3 1B, ``LlamaForCausalLM`` at the released config (hidden 2048,
  16 layers, 32 heads / 8 KV heads, MLP 8192, vocabulary 128256, untied output layer: 1.50B
  parameters; RoPE without the llama3 frequency scaling, which costs nothing measurable);
- ``qwen3guard``: Qwen3Guard-Gen 0.6B, ``Qwen3ForCausalLM`` at Qwen3-0.6B's config (hidden 1024,
  28 layers, 16 heads / 8 KV heads, head 128, MLP 3072, vocabulary 151936, tied: 0.60B).

Each uses its family's tokenizer and chat template from the tiny builders
(``guardrail/testing/tiny_*.py``), with the BPE trained to a larger vocabulary on the
family's own prompts so that words are single tokens as in the released tokenizers; the
embedding table is padded to the released vocabulary size (the output layer costs what it
costs in the released model). Checks, each on a different ~20-word request:

- **cold fast check**: fast mode (label scores) with nothing cached: the whole prompt;
- **fast check**: fast mode with prefix caching (the default): the fixed instruction is kept
  from the previous check, only the request and the template after it are evaluated;
- **answer check**: the model writes its answer (``\\n\\nunsafe\\nS1`` / ``Safety: Unsafe`` +
  ``Categories: Violent``), end token included, with prefix caching; random weights never stop,
  so the answer length is fixed at that answer's token count (``max_new_tokens``);
- prompt (prefill) and generation (decode) rates, from which the families too large for this
  machine are **estimated** (Llama Guard 4 12B, gpt-oss-safeguard 20B, GuardReasoner-VL 3B for
  reference, ShieldGemma 2 4B when its profile is present), as ``llamacpp_scale.py`` does:
  compute scales with parameters, generation with the bytes of the weights read per token.

    python bench/families_cpu.py [--families llama-guard-3 qwen3guard] [--quant q8_0 q4_k_m]
                                 [--threads 1 2] [--reps 3] [--cache-dir DIR] [--quick]

First run: builds and exports the models into ``--cache-dir`` (default
``~/.cache/guardrail-bench/families``; ~10 minutes, 3.6 GB kept, ~7 GB at the peak); reruns reuse
them. ``--quick``: a smoke run on the tiny test models (f32 GGUF, seconds); its numbers mean
nothing. Results: docs/performance.md ("Guard families on a CPU").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    "Tell me step by step how to get into my ex partner's email account without the password.",
    "Is it safe to leave a lithium battery charging overnight on a wooden desk in my bedroom?",
    "Summarise the main arguments for and against a four day working week for small companies.",
    "How should I prepare for a job interview at a hospital where I would work night shifts?",
]

# Released configurations (config.json of meta-llama/Llama-Guard-3-1B and Qwen/Qwen3Guard-Gen-0.6B).
REAL_CONFIGS: dict[str, dict[str, Any]] = {
    "llama-guard-3": {
        "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5, "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
        "tie_word_embeddings": False,
    },
    "qwen3guard": {
        "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-6, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        "tie_word_embeddings": True,
    },
}  # fmt: skip
NAMES = {"llama-guard-3": "Llama Guard 3 1B", "qwen3guard": "Qwen3Guard-Gen 0.6B"}
# The answer each family writes for an unsafe request with one category (the answer check).
ANSWERS = {
    "llama-guard-3": ({"request": "harmful"}, ["S1"]),
    "qwen3guard": ({"request": "harmful"}, ["violent"]),
}
BPE_VOCAB = 16384  # the scaled-up BPE: more merges than the corpus allows, so every word is one token

# Estimated families. params: FLOP-bearing parameters per prompt token (no embedding table);
# read: parameters read per generated token (those + the output layer; active experts only);
# bits: bits per weight of the file (None: the measured quantisation's).
ESTIMATED: dict[str, dict[str, Any]] = {
    "llama-guard-4": {
        "name": "Llama Guard 4 12B (text)", "profile": "llama-guard-4", "params": 9.06e9, "read": 10.1e9,
        "bits": None, "answer": 7, "source": "dense Llama 4: hidden 5120, 48 layers, MLP 8192, vocab 202048",
    },
    "gpt-oss-safeguard": {
        "name": "gpt-oss-safeguard 20B (low effort)", "profile": "gpt-oss-safeguard", "params": 3.6e9,
        "read": 3.6e9, "bits": 4.5, "answer": None,
        "source": "MoE, 3.6B active of 21B; experts MXFP4 as released (~4.5 bits/weight read)",
    },
    "guardreasoner-vl": {
        "name": "GuardReasoner-VL-Eco 3B (text)", "profile": "guardreasoner-vl", "params": 2.77e9,
        "read": 3.09e9, "bits": None, "answer": 190, "source": "Qwen2.5-VL-3B; ~190 output tokens (Eco's mean)",
    },
}  # fmt: skip
SHIELDGEMMA = {  # Gemma 3 4B language model + SigLIP-400M at 896 px (4096 patches -> 256 image tokens)
    "name": "ShieldGemma 2 4B (one image, one policy)",
    "params": 3.2e9,
    "vit_params": 0.42e9,
    "patches": 4096,
    "image_tokens": 256,
    "text_tokens": 120,
    # the f16 vision tower on one core of this machine (docs/backends/llamacpp.md: ~35-70 GFLOP/s)
    "vit_gflops_1t": 50.0,
}


def median_s(times: list[float]) -> float:
    return statistics.median(times) if times else float("nan")


def best_s(times: list[float]) -> float:
    """The fastest run: load from other processes only ever slows a run down."""
    return min(times) if times else float("nan")


def cell(times: list[float]) -> str:
    return f"{best_s(times):.2f} ({median_s(times):.2f})"


@contextmanager
def wider_bpe_corpus(corpus: list[str]):
    """The tiny builders' BPE, trained to a larger vocabulary on ``corpus`` as well."""
    from guardrail.testing import tiny

    original = tiny._train_bpe
    tiny._train_bpe = lambda vocab_size, extra=(): original(BPE_VOCAB, extra=[*extra, *corpus])
    try:
        yield
    finally:
        tiny._train_bpe = original


def family_corpus(family: str) -> list[str]:
    from guardrail.inputs import InputLimits, prepare
    from guardrail.profiles import get_profile

    profile = get_profile(family)
    texts = []
    for request in REQUESTS:
        prompt = prepare(profile, {"prompt": request}, InputLimits()).prompt
        texts.append("".join(p for p in prompt.parts if isinstance(p, str)))
    labels, categories = ANSWERS[family]
    texts.append(profile.answer("", labels, categories))
    return texts


def build_real_size(family: str, out: Path) -> dict[str, Any]:
    """The family at its released size with random bf16 weights, saved to ``out`` (HF layout)."""
    import torch
    import transformers

    from guardrail.testing import tiny_llama_guard, tiny_qwen3guard

    with wider_bpe_corpus(family_corpus(family)):
        if family == "llama-guard-3":
            from guardrail.profiles.llama_guard import LlamaGuard3Profile

            tokenizer = tiny_llama_guard._tokenizer(LlamaGuard3Profile.special_tokens, BPE_VOCAB, 8192)
            tokenizer.chat_template = tiny_llama_guard.LLAMA_GUARD_3_CHAT_TEMPLATE
            cls, config_cls = transformers.LlamaForCausalLM, transformers.LlamaConfig
            ends = {
                "bos_token_id": "<|begin_of_text|>",
                "eos_token_id": "<|eot_id|>",
                "pad_token_id": "<|end_of_text|>",
            }
        else:
            tokenizer = tiny_qwen3guard.tokenizer(BPE_VOCAB)
            cls, config_cls = transformers.Qwen3ForCausalLM, transformers.Qwen3Config
            ends = {"eos_token_id": "<|im_end|>", "pad_token_id": "<|endoftext|>"}
    vocab = tokenizer.get_vocab()
    config = config_cls(**REAL_CONFIGS[family], **{k: vocab[v] for k, v in ends.items()})
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # 2 bytes per weight: 3 GB for the 1.5B model
    try:
        model = cls(config)
    finally:
        torch.set_default_dtype(default)
    model.config.dtype = torch.bfloat16
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight.numel()
    output = 0 if config.tie_word_embeddings else model.get_output_embeddings().weight.numel()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    del model
    return {"params_total": total, "params_compute": total - embed - output, "params_output": embed if not output else output,
            "tokenizer_vocab": len(vocab)}  # fmt: skip


def model_files(family: str, quants: list[str], cache: Path, say) -> tuple[dict[str, Path], dict[str, Any]]:
    """GGUF files per quantisation (built once into ``cache``) and the model's parameter counts."""
    from guardrail.export.gguf import export_gguf, quantize_gguf

    home = cache / family
    meta_file = home / "meta.json"
    files = {q: home / f"{family}-{q}.gguf" for q in quants}
    if meta_file.exists() and all(f.exists() for f in files.values()):
        return files, json.loads(meta_file.read_text())
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home, prefix=".build-") as tmp:
        t0 = time.perf_counter()
        meta = build_real_size(family, Path(tmp) / "hf")
        say(
            f"{family}: built {meta['params_total'] / 1e9:.2f}B random parameters in {time.perf_counter() - t0:.0f} s"
        )
        t0 = time.perf_counter()
        bf16 = export_gguf(Path(tmp) / "hf", Path(tmp) / "gguf", quant="bf16", name=family).model
        shutil.rmtree(Path(tmp) / "hf")  # bound the disk: the checkpoint is no longer needed
        say(f"{family}: exported to GGUF bf16 in {time.perf_counter() - t0:.0f} s")
        for quant, target in files.items():
            if not target.exists():
                t0 = time.perf_counter()
                quantize_gguf(bf16, Path(tmp) / target.name, quant)
                os.replace(Path(tmp) / target.name, target)
                say(
                    f"{family}: {quant} ({target.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s"
                )
    meta_file.write_text(json.dumps(meta))
    return files, meta


def tiny_files(family: str) -> tuple[dict[str, Path], dict[str, Any]]:
    import safetensors

    from guardrail.testing.tiny import cached_tiny_gguf, cached_tiny_model

    files = cached_tiny_gguf(family)
    with safetensors.safe_open(str(cached_tiny_model(family) / "model.safetensors"), "np") as f:
        total = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return {"f32": files.model}, {
        "params_total": total,
        "params_compute": total,
        "params_output": 0,
        "tokenizer_vocab": 0,
    }


class Row:
    """One model file at one thread count: its guard and the times measured."""

    def __init__(self, family: str, quant: str, threads: int, path: Path, meta: dict[str, Any], n_ctx: int):
        from guardrail import Guard

        self.family, self.quant, self.threads, self.meta = family, quant, threads, meta
        self.size_gb = path.stat().st_size / 1e9
        self.guard = Guard.from_gguf(path, profile=family, n_threads=threads, n_ctx=n_ctx, batching=False)
        self.backend = self.guard.backend
        self.backend._end_ids = []  # random weights: every answer is written to its full length
        labels, categories = ANSWERS[family]
        answer = self.guard.profile.answer("", labels, categories)
        self.answer_tokens = len(self.backend._encode_text_uncached(answer)) + 1  # + the end token
        self.guard.max_new_tokens = self.answer_tokens
        self.times: dict[str, list[float]] = {"cold": [], "fast": [], "answer": []}
        self.prompt_tokens: list[int] = []
        self.new_tokens: list[int] = []
        self.decode_tps = float("nan")

    def check(self, kind: str, request: str) -> None:
        resident = self.backend._resident
        if kind == "cold":
            resident.forget()
        before = resident.evaluated
        t0 = time.perf_counter()
        if kind == "answer":
            verdict = self.guard.moderate(prompt=request, mode="reasoning")
            assert verdict.output_tokens == self.answer_tokens, verdict.output_tokens
        else:
            self.guard.moderate(prompt=request, mode="fast")
        self.times[kind].append(time.perf_counter() - t0)
        evaluated = resident.evaluated - before  # prompt tokens evaluated (the label trie not included)
        (self.prompt_tokens if kind == "cold" else self.new_tokens).append(evaluated)

    def measure_decode(self, request: str, steps: int = 8, runs: int = 3) -> None:
        from guardrail.backends.base import GenerationOptions
        from guardrail.inputs import InputLimits, prepare

        backend = self.backend
        rendered = prepare(self.guard.profile, {"prompt": request}, InputLimits()).prompt
        best = float("inf")
        for _ in range(runs):  # generation alone, after the prompt; best of runs
            with backend._lock:
                parts = backend._encode(rendered)
                pos, used = backend._prefill(parts, None)
                backend._free(parts)
                t0 = time.perf_counter()
                backend._decode_loop(pos, used, GenerationOptions(max_new_tokens=steps), None, None)
                best = min(best, time.perf_counter() - t0)  # (the next prefill drops what was generated)
        self.decode_tps = steps / best

    def close(self) -> None:
        self.guard.close()

    # derived rates
    @property
    def prefill_tps(self) -> float:
        return statistics.median(self.prompt_tokens) / best_s(self.times["cold"])

    @property
    def prefill_gflops(self) -> float:
        return 2 * self.meta["params_compute"] * self.prefill_tps / 1e9

    @property
    def bits(self) -> float:
        """Bits per weight of the file (its quantisation, mixed types included)."""
        return self.size_gb * 8e9 / self.meta["params_total"]

    @property
    def decode_gbps(self) -> float:
        """Weights read per second while generating: every layer and the output layer per token."""
        read = self.meta["params_compute"] + self.meta["params_output"]
        return self.decode_tps * read * self.bits / 8e9


def prompt_chars(profile_name: str, requests: list[str]) -> tuple[float, float]:
    """Median characters of the whole prompt and of what follows the fixed prefix (the part a
    prefix-cached check evaluates), over ``requests`` rendered by the family's profile."""
    from guardrail.inputs import InputLimits, prepare
    from guardrail.profiles import get_profile

    profile = get_profile(profile_name)
    texts = []
    for request in requests:
        prompt = prepare(profile, {"prompt": request}, InputLimits()).prompt
        texts.append("".join(p if isinstance(p, str) else "<s>" for p in prompt.parts))
    common = len(os.path.commonprefix(texts))
    return statistics.median(len(t) for t in texts), statistics.median(len(t) - common for t in texts)


def estimates(
    rows: list[Row], args: argparse.Namespace
) -> list[tuple[str, Row, int, int, float | None, float | None, str]]:
    """Per measured (quant, threads): the larger models' checks from the largest measured
    family's rates. Chars per token from that family's scaled tokenizer."""
    from guardrail.profiles import PROFILES

    out = []
    by_setting: dict[tuple[str, int], Row] = {}
    for row in rows:  # the largest measured model's rates for each quant and thread count
        key = (row.quant, row.threads)
        if key not in by_setting or row.meta["params_compute"] > by_setting[key].meta["params_compute"]:
            by_setting[key] = row
    for ref in by_setting.values():
        chars, _new = prompt_chars(ref.family, REQUESTS)
        cpt = chars / statistics.median(ref.prompt_tokens)
        gflops, gbps = ref.prefill_gflops * 1e9, ref.decode_gbps * 1e9
        for spec in ESTIMATED.values():
            total_c, new_c = prompt_chars(spec["profile"], REQUESTS)
            n_total, n_new = round(total_c / cpt), round(new_c / cpt)
            bits = spec["bits"] or ref.bits
            per_token = spec["read"] * bits / 8 / gbps
            fast = n_new * 2 * spec["params"] / gflops
            cold = n_total * 2 * spec["params"] / gflops
            n_out = spec["answer"] or args.oss_output_tokens
            answer = fast + n_out * per_token
            has_fast = spec["profile"] != "gpt-oss-safeguard"  # it reasons first: no label scores
            out.append((spec["name"], ref, n_total, n_new, cold if has_fast else None,
                        fast if has_fast else None, f"{answer:.1f} ({n_out} tokens)"))  # fmt: skip
        if "shieldgemma-2" in PROFILES:
            sg = SHIELDGEMMA
            one = next(
                (r for r in rows if r.family == ref.family and r.quant == ref.quant and r.threads == 1), None
            )
            scale = ref.prefill_gflops / one.prefill_gflops if one else ref.threads
            vit = 2 * sg["vit_params"] * sg["patches"] / (sg["vit_gflops_1t"] * scale * 1e9)
            lm = (sg["image_tokens"] + sg["text_tokens"]) * 2 * sg["params"] / gflops
            n = sg["image_tokens"] + sg["text_tokens"]
            out.append((sg["name"], ref, n, n, vit + lm, vit + lm, "- (scores only)"))
    return out


def fmt(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.2f}"


def report(rows: list[Row], args: argparse.Namespace) -> None:
    from guardrail.profiles import PROFILES

    print(f"\nmeasured (llama.cpp backend, {args.reps} interleaved runs; seconds per check: best (median))\n")
    print("| guard | quant | threads | file GB | cold fast check | fast check | answer check (tokens) "
          "| prompt tokens (evaluated with prefix cache) | prefill tok/s | prefill GFLOP/s | decode tok/s | decode GB/s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {NAMES.get(r.family, r.family)} | {r.quant} | {r.threads} | {r.size_gb:.2f} "
              f"| {cell(r.times['cold'])} | {cell(r.times['fast'])} | {cell(r.times['answer'])} ({r.answer_tokens}) "
              f"| {statistics.median(r.prompt_tokens):.0f} ({statistics.median(r.new_tokens):.0f}) "
              f"| {r.prefill_tps:.0f} | {r.prefill_gflops:.0f} | {r.decode_tps:.1f} | {r.decode_gbps:.1f} |")  # fmt: skip

    print("\nratios (same run, of the best times)")
    find = {(r.family, r.quant, r.threads): r for r in rows}
    kinds = ("cold", "fast", "answer")
    for r in rows:
        other = find.get((r.family, r.quant, 1))
        if r.threads != 1 and other:
            ratios = ", ".join(f"{k} {best_s(other.times[k]) / best_s(r.times[k]):.2f}x" for k in kinds)
            print(f"  {r.family} {r.quant}: {r.threads} threads vs 1: {ratios}")
    for r in rows:
        other = find.get((r.family, "q8_0", r.threads))
        if r.quant != "q8_0" and other:
            ratios = ", ".join(f"{k} {best_s(other.times[k]) / best_s(r.times[k]):.2f}x" for k in kinds)
            print(f"  {r.family} {r.threads} thread(s): {r.quant} vs q8_0: {ratios}")
    families = sorted({r.family for r in rows})
    for a in families:
        for b in families:
            if a < b:
                for r in (x for x in rows if x.family == a):
                    o = find.get((b, r.quant, r.threads))
                    if o:
                        ratios = ", ".join(
                            f"{k} {best_s(r.times[k]) / best_s(o.times[k]):.2f}" for k in kinds
                        )
                        print(f"  {r.quant} {r.threads} thread(s): time {a} / {b}: {ratios}")

    print(
        "\nESTIMATES (not measured: from the best rates above, the largest measured family's; optimistic)\n"
    )
    print("| guard (estimate) | from | quant | threads | prompt tokens (after the prefix) | cold fast check "
          "| fast check | answer check |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, ref, n_total, n_new, cold, fast, answer in estimates(rows, args):
        print(
            f"| {name} | {ref.family} | {ref.quant} | {ref.threads} | {n_total} ({n_new}) | {fmt(cold)} | {fmt(fast)} | {answer} |"
        )
    for spec in ESTIMATED.values():
        print(f"  {spec['name']}: {spec['source']}")
    if "shieldgemma-2" not in PROFILES:
        print("  ShieldGemma 2 4B: skipped (this checkout has no 'shieldgemma-2' profile)")
    else:
        print(f"  {SHIELDGEMMA['name']}: image through the f16 vision tower at "
              f"{SHIELDGEMMA['vit_gflops_1t']:.0f} GFLOP/s per thread (docs/backends/llamacpp.md), then the prompt")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=list(REAL_CONFIGS), choices=list(REAL_CONFIGS))
    parser.add_argument("--quant", nargs="+", default=["q8_0", "q4_k_m"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--oss-output-tokens", type=int, default=150,
                        help="gpt-oss-safeguard's output at low effort (reasoning + final JSON), assumed")  # fmt: skip
    parser.add_argument(
        "--cache-dir", type=Path, default=Path.home() / ".cache" / "guardrail-bench" / "families"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run on the tiny test models")
    args = parser.parse_args()
    if args.quick:
        args.quant, args.reps = ["f32"], 1

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    import llama_cpp

    rows: list[Row] = []
    t_start = time.perf_counter()
    try:
        for family in args.families:
            files, meta = (
                tiny_files(family) if args.quick else model_files(family, args.quant, args.cache_dir, say)
            )
            for quant in args.quant:
                for threads in args.threads:
                    rows.append(Row(family, quant, threads, files[quant], meta, args.n_ctx))
        for row in rows:  # warm-up: pages the weights in, evaluates the prefix once
            row.check("fast", REQUESTS[-1])
        for rep in range(args.reps):
            for row in rows:  # interleaved: other load hits every row alike
                for k, kind in enumerate(("cold", "fast", "answer")):
                    row.check(kind, REQUESTS[(3 * rep + k) % (len(REQUESTS) - 1)])
            say(f"rep {rep + 1}/{args.reps} done ({time.perf_counter() - t_start:.0f} s)")
        for row in rows:
            row.measure_decode(REQUESTS[0], steps=4 if args.quick else 8, runs=1 if args.quick else 3)
        print(f"llama-cpp-python {llama_cpp.__version__}, {os.cpu_count()} CPUs visible, "
              f"{time.perf_counter() - t_start:.0f} s in all")  # fmt: skip
        report(rows, args)
    finally:
        for row in rows:
            row.close()


if __name__ == "__main__":
    main()
