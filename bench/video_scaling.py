"""How a video check's time grows with frames and pixels per frame on CPU (transformers backend).

Runs ``guard.moderate(prompt=..., videos=[clip])`` through the GuardReasoner-Omni profile on two
random Qwen2.5-Omni thinkers, side by side in one run:

- **tiny**: the test model (``tiny-model --profile guardreasoner-omni``): what the library itself
  costs (decoding, sampling, processor, prompt) when the model is almost free;
- **mid**: real Qwen2.5-Omni-3B layer widths (language model 2048 wide, 11008 MLP, 16 heads;
  vision tower 1280 wide, 3420 MLP, 16 heads, 112-pixel windows) but ``--mid-text-layers`` of the
  36 language layers and ``--mid-vision-layers`` of the 32 vision blocks (one with full
  attention), so one layer costs what a real one does. The vision tower's time is measured with
  a hook; ``est. 3B`` scales the vision time and the rest of the forward pass to the real depths
  (an estimate: it leaves out the 151k-token output layer, which one prefill token pays once).

Every check is a prefill plus one generated token (``max_new_tokens=1``): what grows with the
clip. A real check also generates its reasoning (~100-200 tokens, ``decode ms/token`` below, a
cost the clip barely changes). The clip is an MP4 of ``seconds`` at 10 fps, 640x480 (decoded
by the check: ``prepare ms``), sampled at GuardReasoner-Omni's 1 fps (so ``frames`` ~ seconds),
each frame resized to at most ``pixels`` = 4, 16, 64 (the reference's maximum) or 256 x 28 x 28
(the profile's ``VideoSampling.max_pixels``).

    python bench/video_scaling.py [--seconds 2 4 8 16 32] [--pixels 4 16 64 256] [--threads 1]
                                  [--mid-seconds 2 4 10 16] [--mid-pixels 4 16 64] [--reps 2]

Figures: the best of ``--reps`` runs, in CPU seconds of the process (``time.process_time``: on a
machine shared with other work, what the check costs alone on ``--threads`` cores; ``--wall`` for
elapsed time).
Ratios are against the smallest configuration of the same model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# Qwen2.5-Omni-3B thinker (config.json): the widths the mid model keeps, the depths it scales to.
OMNI_3B_TEXT = {"hidden_size": 2048, "intermediate_size": 11008, "num_attention_heads": 16,
                "num_key_value_heads": 2, "num_hidden_layers": 36}  # fmt: skip
OMNI_3B_VISION = {"hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "depth": 32,
                  "out_hidden_size": 2048, "window_size": 112}  # fmt: skip
PROMPT = "Is what happens in this clip safe to show?"


@dataclass
class Row:
    model: str
    seconds: int
    pixels: int  # per frame, in units of 28x28
    frames: int
    vision_tokens: int
    prompt_tokens: int
    total_s: float
    vision_s: float
    prepare_s: float


def _clock() -> float:
    """CPU seconds of this process (all its threads): on a shared machine, what the check would
    take alone on ``--threads`` cores; ``--wall`` measures elapsed time instead."""
    return time.perf_counter() if WALL else time.process_time()


WALL = False


def build_mid(text_layers: int, vision_layers: int):  # noqa: ANN201
    """A random thinker at Qwen2.5-Omni-3B widths with a few layers, and its processor."""
    import torch
    import transformers

    from guardrail.testing.tiny import _omni_tokenizer
    from guardrail.testing.tiny_omni import build_omni

    torch.manual_seed(0)
    _, processor, tiny_config, vocab = build_omni(transformers, _omni_tokenizer(512))
    config = tiny_config.to_dict()
    config["text_config"].update({k: v for k, v in OMNI_3B_TEXT.items()}, num_hidden_layers=text_layers,
                                 rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                  "mrope_section": [16, 24, 24]})  # fmt: skip
    config["vision_config"].update(
        OMNI_3B_VISION, depth=vision_layers, fullatt_block_indexes=[vision_layers - 1]
    )
    for derived in ("layer_types", "head_dim"):  # recomputed from the new sizes
        config["text_config"].pop(derived, None)
    config["audio_config"].update(output_dim=OMNI_3B_TEXT["hidden_size"])
    for key in ("architectures", "transformers_version", "model_type"):
        config.pop(key, None)
    model = transformers.Qwen2_5OmniThinkerForConditionalGeneration(
        transformers.Qwen2_5OmniThinkerConfig(**config)
    )
    model.eval()
    return model, processor


_CLIPS: dict[int, bytes] = {}


def clip(seconds: int) -> bytes:
    """An MP4 (MPEG-4 Part 2) of ``seconds`` at 10 fps, 640x480: moving shapes over noise."""
    if seconds not in _CLIPS:
        import io

        import av
        import numpy as np

        rng = np.random.default_rng(seconds)
        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as out:
            stream = out.add_stream("mpeg4", rate=10)
            stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
            for i in range(seconds * 10):
                arr = rng.integers(0, 64, (480, 640, 3), dtype=np.uint8)
                arr[100:300, (20 * i) % 440 : (20 * i) % 440 + 200] = (200, 40, 40)
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        _CLIPS[seconds] = buf.getvalue()
    return _CLIPS[seconds]


def profile_for(pixels: int):  # noqa: ANN201
    """GuardReasoner-Omni with its reference sampling, the pixel budget set to ``pixels``."""
    from dataclasses import replace

    from guardrail.profiles import GuardReasonerOmniProfile
    from guardrail.profiles.guardreasoner_omni import OMNI_VIDEO_SAMPLING

    sampling = replace(OMNI_VIDEO_SAMPLING, max_pixels=pixels * 28 * 28)
    cls = type("BenchOmniProfile", (GuardReasonerOmniProfile,), {"video_sampling": sampling})
    return cls()


def measure(name: str, guard_for, seconds_list, pixels_list, reps: int, vision) -> list[Row]:  # noqa: ANN001
    from guardrail.inputs import prepare

    spent = {"vision": 0.0}
    starts: list[float] = []
    vision.register_forward_pre_hook(lambda *_: starts.append(_clock()))

    def done(*_):  # noqa: ANN002, ANN202
        spent["vision"] += _clock() - starts.pop()

    vision.register_forward_hook(done)
    rows = []
    for pixels in pixels_list:
        guard = guard_for(pixels)
        for seconds in seconds_list:
            video = clip(seconds)
            item = {"prompt": PROMPT, "videos": [video]}
            t0 = _clock()
            prepared = prepare(guard.profile, item, guard.limits)
            prepare_s = _clock() - t0
            decoded = prepared.item.videos[0]
            frames = len(decoded.frames)
            prompt_tokens = len(guard.backend.encode(prepared.prompt)[0])
            best, best_vision = float("inf"), float("inf")
            guard.moderate(**item)  # warm up
            for _ in range(reps):
                spent["vision"] = 0.0
                t0 = _clock()
                verdict = guard.moderate(**item)
                elapsed = _clock() - t0
                if elapsed < best:
                    best, best_vision = elapsed, spent["vision"]
            assert not (verdict.error or "").startswith("backend error"), verdict.error
            w, h = decoded.size
            vision_tokens = (frames // 2) * (w // 28) * (h // 28)
            rows.append(Row(name, seconds, pixels, frames, vision_tokens,
                            prompt_tokens, best, best_vision, prepare_s))  # fmt: skip
            print(f"  {name}: {seconds:>3} s x {pixels:>3}x28x28  {best * 1000:9.1f} ms", flush=True)
    return rows


def table(rows: list[Row], scale: tuple[float, float] | None) -> None:
    base = rows[0]
    header = ("| model | clip (s) | pixels/frame | frames | vision tokens | prompt tokens | check ms | x smallest "
              "| vision ms | prepare ms |")  # fmt: skip
    if scale:
        header += " est. 3B s |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        line = (f"| {r.model} | {r.seconds} | {r.pixels}x28x28 | {r.frames} | {r.vision_tokens} | {r.prompt_tokens} | "
                f"{r.total_s * 1000:.0f} | {r.total_s / base.total_s:.1f} | {r.vision_s * 1000:.0f} | "
                f"{r.prepare_s * 1000:.1f} |")  # fmt: skip
        if scale:
            text_scale, vision_scale = scale
            est = (
                r.vision_s * vision_scale
                + max(r.total_s - r.vision_s - r.prepare_s, 0) * text_scale
                + r.prepare_s
            )
            line += f" {est:.1f} |"
        print(line)


def ratios(rows: list[Row]) -> None:
    """How time grows: doubling the frames, quadrupling the pixels (mean ratio over the grid)."""
    by = {(r.seconds, r.pixels): r for r in rows}
    seconds = sorted({r.seconds for r in rows})
    pixels = sorted({r.pixels for r in rows})
    frame_ratios = [by[(b, p)].total_s / by[(a, p)].total_s / (b / a) for p in pixels
                    for a, b in zip(seconds, seconds[1:], strict=False)]  # fmt: skip
    pixel_ratios = [by[(s, q)].total_s / by[(s, p)].total_s / (q / p) for s in seconds
                    for p, q in zip(pixels, pixels[1:], strict=False)]  # fmt: skip
    name = rows[0].model
    if frame_ratios:
        print(f"{name}: time / (frames ratio), mean over the grid: {sum(frame_ratios) / len(frame_ratios):.2f} "
              "(1.0 = linear in frames)")  # fmt: skip
    if pixel_ratios:
        print(f"{name}: time / (pixels ratio), mean over the grid: {sum(pixel_ratios) / len(pixel_ratios):.2f} "
              "(1.0 = linear in pixels per frame)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--pixels", type=int, nargs="+", default=[4, 16, 64, 256], choices=[4, 16, 64, 256])
    parser.add_argument("--mid-seconds", type=int, nargs="*", default=[2, 4, 10, 16])
    parser.add_argument("--mid-pixels", type=int, nargs="*", default=[4, 16, 64], choices=[4, 16, 64, 256])
    parser.add_argument("--mid-text-layers", type=int, default=4)
    parser.add_argument("--mid-vision-layers", type=int, default=4)
    parser.add_argument("--decode-tokens", type=int, default=16, help="tokens for the decode ms/token figure")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--wall", action="store_true", help="time elapsed (wall) seconds, not CPU seconds")
    args = parser.parse_args()
    global WALL
    WALL = args.wall

    import torch

    from guardrail import Guard
    from guardrail.backends.transformers import TransformersBackend
    from guardrail.testing import cached_tiny_model

    torch.set_num_threads(args.threads)
    clock = "wall seconds" if WALL else "CPU seconds of the process"
    print(f"torch threads: {args.threads}; CPU: {os.cpu_count()} logical cores; best of {args.reps}; {clock}")
    tiny = Guard.from_pretrained(cached_tiny_model("guardreasoner-omni", Path(tempfile.gettempdir()) / "guardrail-tiny"),
                                 device="cpu", max_new_tokens=1)  # fmt: skip
    tiny_rows = measure("tiny", lambda p: Guard(tiny.backend, profile=profile_for(p), max_new_tokens=1),
                        args.seconds, args.pixels, args.reps, tiny.backend.model.model.visual)  # fmt: skip
    table(tiny_rows, None)
    ratios(tiny_rows)
    if not args.mid_seconds or not args.mid_pixels:
        return
    t0 = _clock()
    model, processor = build_mid(args.mid_text_layers, args.mid_vision_layers)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"mid model: {params:.0f}M parameters ({args.mid_text_layers} text layers, "
          f"{args.mid_vision_layers} vision blocks at Qwen2.5-Omni-3B widths), built in {_clock() - t0:.0f} s")  # fmt: skip
    backend = TransformersBackend(model, processor, model_name="mid-omni")
    mid_rows = measure("mid", lambda p: Guard(backend, profile=profile_for(p), max_new_tokens=1),
                       args.mid_seconds, args.mid_pixels, args.reps, model.model.visual)  # fmt: skip
    scale = (OMNI_3B_TEXT["num_hidden_layers"] / args.mid_text_layers,
             OMNI_3B_VISION["depth"] / args.mid_vision_layers)  # fmt: skip
    table(mid_rows, scale)
    ratios(mid_rows)
    # decode: the cost per reasoning token at the 10-second default clip (or the nearest)
    seconds = min(args.mid_seconds, key=lambda s: abs(s - 10))
    pixels = 64 if 64 in args.mid_pixels else max(args.mid_pixels)
    item = {"prompt": PROMPT, "videos": [clip(seconds)]}
    timings = {}
    for n in (1, 1 + args.decode_tokens):
        guard = Guard(backend, profile=profile_for(pixels), max_new_tokens=n)
        guard.moderate(**item)
        timings[n] = min(_timed(guard, item) for _ in range(args.reps))
    per_token = (timings[1 + args.decode_tokens] - timings[1]) / args.decode_tokens
    print(f"mid: decode {per_token * 1000:.0f} ms/token at a {seconds} s clip x {pixels}x28x28 "
          f"(est. 3B: {per_token * scale[0] * 1000:.0f} ms/token before the output layer)")  # fmt: skip


def _timed(guard, item) -> float:  # noqa: ANN001
    t0 = _clock()
    guard.moderate(**item)
    return _clock() - t0


if __name__ == "__main__":
    main()
