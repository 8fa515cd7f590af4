"""Overhead of the llama.cpp backend over calling llama-cpp-python directly, and checks/s.

All sides run the same tiny Qwen2.5-VL guard exported to GGUF (f32, built offline), the same
prompt (the profile's rendering of a text+image request) and the same PNG image, greedy, with the
vision tokens banned, interleaved in one run so machine noise hits them alike:

- ``guard``:   ``guard.moderate(prompt=..., images=[png])``: input validation, image decoding and
               resizing, our tokenization, mtmd image chunks, the decode loop, parsing, verdict.
- ``minimal``: what an expert writes with llama-cpp-python's bindings: ``mtmd_tokenize`` of the
               prompt text with the media marker, ``mtmd_helper_eval_chunks``, llama.cpp's native
               sampler chain (logit bias + greedy), one ``llama_decode`` per token.
- ``stock``:   llama-cpp-python's documented high-level path: ``Llama.create_chat_completion``
               with ``Qwen25VLChatHandler``, the same messages, ``temperature=0``.

    python bench/llamacpp.py [--reps 20] [--max-new-tokens 64]

Goal: guard/minimal <= 1.05. The tiny model's per-token cost is tiny, so this ratio shows the
backend's own per-call and per-token cost at its most visible; with a real 3B/7B guard the same
absolute overhead is a far smaller share.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
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
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from guardrail import Guard
    from guardrail.inputs import prepare
    from guardrail.testing import cached_tiny_gguf

    files = cached_tiny_gguf("guardreasoner-vl", Path(tempfile.gettempdir()) / "guardrail-bench")
    # 112x84: already a multiple of 28 on both sides, so no path resizes it (llama.cpp's own
    # resizer, used by the two direct paths, differs from the reference processor's)
    pixels = (np.random.RandomState(0).rand(84, 112, 3) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    png = buf.getvalue()
    item = {"prompt": "What is shown in this picture? Is it safe?", "images": [png]}

    print(
        f"tiny Qwen2.5-VL GGUF (f32), text+image, up to {args.max_new_tokens} new tokens, {args.reps} interleaved reps"
    )
    for threads in args.threads:
        guard = Guard.from_gguf(
            files.model, files.mmproj, n_threads=threads, n_ctx=4096, max_new_tokens=args.max_new_tokens
        )
        rendered = prepare(guard.profile, item, guard.limits).prompt
        minimal = Minimal(files, threads, rendered, png, args.max_new_tokens)
        stock = Stock(files, threads, guard.profile, item["prompt"], png, args.max_new_tokens, minimal.banned)

        def guarded(guard=guard):
            v = guard.moderate(**item)
            return v.raw_output, v.output_tokens

        sides = {"guard": guarded, "minimal": minimal, "stock": stock}
        outputs = {name: f() for name, f in sides.items()}  # warm up, and check they agree
        times: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        for rep in range(args.reps):
            for name in names[rep % 3 :] + names[: rep % 3]:  # rotate the order: no side always first
                t0 = time.perf_counter()
                sides[name]()
                times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(t) for name, t in times.items()}
        best = {name: min(t) for name, t in times.items()}
        print(f"\n{threads} thread(s): {outputs['guard'][1]} output tokens per check")
        for name in sides:
            same = "same output" if outputs[name][0] == outputs["guard"][0] else "DIFFERENT output"
            print(
                f"  {name:8s}: {med[name] * 1000:8.2f} ms median, {best[name] * 1000:8.2f} ms best,"
                f" {1 / med[name]:7.1f} checks/s   ({same})"
            )
        print(
            f"  ratio guard/minimal: {med['guard'] / med['minimal']:6.3f} median,"
            f" {best['guard'] / best['minimal']:6.3f} best   (goal <= 1.05)"
        )
        print(
            f"  ratio guard/stock  : {med['guard'] / med['stock']:6.3f} median, {best['guard'] / best['stock']:6.3f} best"
        )
        if outputs["stock"][0] != outputs["guard"][0]:
            print("  (the stock chat handler's template drops the newline after '<|im_start|>assistant',")
            print("   so its prompt differs from the reference by one token)")
        stock.close()
        minimal.close()
        guard.close()


class Minimal:
    """Greedy generation with llama-cpp-python's bindings and llama.cpp's native sampler."""

    def __init__(self, files, threads, rendered, png, max_new_tokens):
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        from guardrail.profiles.base import ImageSlot, Special

        self.lc, self.mtmd, self.max_new = llama_cpp, mtmd, max_new_tokens
        self.llama = llama_cpp.Llama(str(files.model), n_ctx=4096, n_threads=threads, verbose=False)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu, params.n_threads, params.print_timings, params.warmup = False, threads, False, False
        self.mctx = mtmd.mtmd_init_from_file(str(files.mmproj).encode(), self.llama.model, params)
        marker = mtmd.mtmd_default_marker().decode()
        self.text = "".join(
            p if isinstance(p, str) else p.token if isinstance(p, Special) else marker
            for p in rendered.parts
            if isinstance(p, (str, Special, ImageSlot))
        ).encode()
        self.png = png
        self.vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
        self.banned = [
            self.llama.tokenize(t.encode(), add_bos=False, special=True)[0]
            for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
        ]
        self.sampler = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        bias = (llama_cpp.llama_logit_bias * len(self.banned))()
        for i, t in enumerate(self.banned):
            bias[i].token, bias[i].bias = t, float("-inf")
        n_vocab = self.llama.n_vocab()
        llama_cpp.llama_sampler_chain_add(
            self.sampler, llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(self.banned), bias)
        )
        llama_cpp.llama_sampler_chain_add(self.sampler, llama_cpp.llama_sampler_init_greedy())
        self.batch = llama_cpp.llama_batch_init(1, 0, 1)

    def __call__(self):
        lc, mtmd, ctx = self.lc, self.mtmd, self.llama.ctx
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        data = (ctypes.c_uint8 * len(self.png)).from_buffer_copy(self.png)
        bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self.mctx, data, len(self.png), False)
        text = mtmd.mtmd_input_text(
            text=self.text, text_len=len(self.text), add_special=False, parse_special=True
        )
        chunks = mtmd.mtmd_input_chunks_init()
        bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
        assert mtmd.mtmd_tokenize(self.mctx, chunks, ctypes.byref(text), bitmaps, 1) == 0
        n_past = lc.llama_pos(0)
        assert (
            mtmd.mtmd_helper_eval_chunks(
                self.mctx, ctx, chunks, 0, 0, self.llama.n_batch, True, ctypes.byref(n_past)
            )
            == 0
        )
        mtmd.mtmd_input_chunks_free(chunks)
        mtmd.mtmd_bitmap_free(bitmap)
        pos, out, n = n_past.value, b"", 0
        lc.llama_sampler_reset(self.sampler)
        while n < self.max_new:
            token = lc.llama_sampler_sample(self.sampler, ctx, -1)
            n += 1
            if lc.llama_vocab_is_eog(self.vocab, token):
                break
            out += self.llama.detokenize([token])
            if n == self.max_new:
                break
            b = self.batch
            b.n_tokens, b.token[0], b.pos[0], b.n_seq_id[0], b.logits[0] = 1, token, pos, 1, 1
            b.seq_id[0][0] = 0
            assert lc.llama_decode(ctx, b) == 0
            pos += 1
        return out.decode("utf-8", errors="replace"), n

    def close(self):
        self.lc.llama_sampler_free(self.sampler)
        self.lc.llama_batch_free(self.batch)
        self.mtmd.mtmd_free(self.mctx)
        self.llama.close()


class Stock:
    """``Llama.create_chat_completion`` with llama-cpp-python's Qwen2.5-VL chat handler."""

    def __init__(self, files, threads, profile, prompt, png, max_new_tokens, banned):
        import llama_cpp
        from llama_cpp.llama_chat_format import Qwen25VLChatHandler

        handler = Qwen25VLChatHandler(clip_model_path=str(files.mmproj), verbose=False)
        self.llama = llama_cpp.Llama(
            str(files.model), n_ctx=4096, n_threads=threads, chat_handler=handler, verbose=False
        )
        url = "data:image/png;base64," + base64.b64encode(png).decode()
        # the profile's user message, the image where its ImageSlot is: the same prompt text
        user = []
        for part in profile.user_parts(_item(prompt, png)):
            user.append(
                {"type": "text", "text": part}
                if isinstance(part, str)
                else {"type": "image_url", "image_url": {"url": url}}
            )
        self.messages = [
            {"role": "system", "content": profile.system_prompt},
            {"role": "user", "content": user},
        ]
        self.kwargs = dict(
            max_tokens=max_new_tokens, temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
            logit_bias={t: float("-inf") for t in banned},
        )  # fmt: skip

    def __call__(self):
        out = self.llama.create_chat_completion(messages=self.messages, **self.kwargs)
        return out["choices"][0]["message"]["content"] or "", out["usage"]["completion_tokens"]

    def close(self):
        self.llama.close()


def _item(prompt, png):
    from guardrail.inputs import normalize_input

    return normalize_input(prompt, None, [png])


if __name__ == "__main__":
    main()
