"""Prefix reuse in a real llama.cpp server: our launcher
(``python -m guardrail.integrations.llamacpp_server``) with ``--prefix_cache true`` (the default)
and ``false`` (llama-cpp-python's stock behaviour: every chat request evaluates the whole prompt),
side by side, both serving the same GGUF on 127.0.0.1 and called through ``Guard.from_endpoint``.

The model is ``bench/prefix_cache.py``'s mid-size random Qwen2.5-VL (``bench/llamacpp_scale.py``:
12 layers of width 1024; its GGUF export, ``--quant``, default q8_0), or the tiny test guard
(``--tiny``). Per server, the median over ``--reps`` interleaved runs, each on a different
request so nothing but the instruction can be reused:

- text check with one output token (``max_new_tokens=1``): the prompt evaluation, which is what a
  fast-mode check costs (fast mode itself needs prompt log-probabilities, which llama-cpp-python's
  chat endpoint does not return; see docs/backends/remote.md);
- reasoning check (``--new-tokens`` generated);
- image check (448x448, one output token): no slower.

The prompt tokens the launcher reused and evaluated are read from its log lines.

    python bench/remote_prefix_cache.py [--reps 5] [--threads 2] [--quant q8_0] [--tiny]

First run: builds the mid-size model and its GGUF under $TMPDIR/guardrail-bench (a few minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from bench.prefix_cache import REQUESTS  # noqa: E402

REUSE_LINE = re.compile(r"guardrail prefix reuse: (\d+) prompt tokens reused, (\d+) evaluated")
NEUTRAL = {"repeat_penalty": 1.0}  # greedy decoding as the local backends do


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(model: Path, mmproj: Path, *, prefix_cache: bool, threads: int, log: Path) -> Iterator[str]:
    """The launcher on 127.0.0.1 serving ``model`` as ``guard``; yields the base URL."""
    import httpx

    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "guardrail.integrations.llamacpp_server", "--model", str(model),
             "--clip_model_path", str(mmproj), "--chat_format", "qwen2.5-vl", "--model_alias", "guard",
             "--n_ctx", "4096", "--n_threads", str(threads), "--n_threads_batch", str(threads),
             "--prefix_cache", "true" if prefix_cache else "false", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + 300
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(base + "/models", timeout=2).status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def model_files(args: argparse.Namespace) -> tuple[Path, Path, str]:
    from guardrail.export.gguf import export_gguf

    if args.tiny:
        from guardrail.testing import build_tiny_model, cached_tiny_gguf

        root = Path(tempfile.gettempdir()) / "guardrail-bench" / "tiny"
        if not (root / "guardreasoner-vl" / "config.json").exists():
            build_tiny_model(root / "guardreasoner-vl", "guardreasoner-vl")
        files = cached_tiny_gguf("guardreasoner-vl", root)
        return Path(files.model), Path(files.mmproj), "the tiny test guard (f32)"
    from bench.llamacpp_scale import build_mid_model

    root = Path(tempfile.gettempdir()) / "guardrail-bench"
    root.mkdir(parents=True, exist_ok=True)
    model_dir = build_mid_model(root / "mid-qwen2.5-vl")
    out = root / "mid-gguf"
    model_file = out / f"{model_dir.name}-{args.quant}.gguf"
    mmproj_file = out / f"mmproj-{model_dir.name}-f16.gguf"
    if not (model_file.exists() and mmproj_file.exists()):
        files = export_gguf(model_dir, out, quant=args.quant)
        model_file, mmproj_file = files.model, files.mmproj
    return model_file, mmproj_file, f"the mid-size random Qwen2.5-VL ({args.quant})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quant", default="q8_0")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny test guard instead of the mid-size model"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["image", "reasoning"])
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from guardrail import Guard

    model, mmproj, what = model_files(args)
    image = Image.fromarray((np.random.RandomState(0).rand(448, 448, 3) * 255).astype(np.uint8))
    logs = Path(tempfile.mkdtemp(prefix="guardrail-remote-bench-"))
    print(
        f"{what}: {model.name}; {args.threads} thread(s), {args.reps} reps, servers' logs in {logs}",
        flush=True,
    )

    with contextlib.ExitStack() as stack:
        guards = {}
        for on in (True, False):
            base = stack.enter_context(
                server(model, mmproj, prefix_cache=on, threads=args.threads, log=logs / f"cache-{'on' if on else 'off'}.log")
            )  # fmt: skip
            guards[on] = {
                n: stack.enter_context(
                    contextlib.closing(
                        Guard.from_endpoint(
                            base,
                            "guard",
                            max_new_tokens=n,
                            timeout=600,
                            extra_body=NEUTRAL,
                            max_retries=0,
                            on_error="raise",
                        )
                    )  # fmt: skip
                )
                for n in (1, args.new_tokens)
            }

        def timed(guard: Guard, item: dict) -> float:
            t0 = time.perf_counter()
            guard.moderate(**item)  # on_error="raise": a failed request stops the run
            return time.perf_counter() - t0

        checks = [
            (
                "text check, 1 output token (a fast check's cost)",
                1,
                lambda i: {"prompt": REQUESTS[i % len(REQUESTS)]},
            )
        ]
        if "reasoning" not in args.skip:
            checks.append((f"reasoning check, {args.new_tokens} tokens", args.new_tokens,
                           lambda i: {"prompt": REQUESTS[(i + 3) % len(REQUESTS)]}))  # fmt: skip
        if "image" not in args.skip:
            checks.append(("image check (448x448), 1 output token", 1,
                           lambda i: {"prompt": REQUESTS[(i + 5) % len(REQUESTS)], "images": [image]}))  # fmt: skip
        for on in (True, False):  # warm both (the first request of a server also fills its context)
            timed(guards[on][1], {"prompt": "Hello."})
        rows = []
        for name, n, item in checks:
            times: dict[bool, list[float]] = {True: [], False: []}
            for i in range(args.reps):
                for on in (True, False) if i % 2 == 0 else (False, True):  # interleaved
                    times[on].append(timed(guards[on][n], item(i)))
            off_s, on_s = statistics.median(times[False]), statistics.median(times[True])
            rows.append((name, off_s, on_s))
            print(f"{name}: {off_s * 1000:.0f} ms -> {on_s * 1000:.0f} ms ({off_s / on_s:.2f}x)", flush=True)

    reuse = [
        tuple(map(int, m)) for m in REUSE_LINE.findall((logs / "cache-on.log").read_text(errors="replace"))
    ]
    text = [(r, e) for r, e in reuse[1:] if r]  # after the first request
    print()
    print("| check | cache off | cache on | speed-up |")
    print("|---|---|---|---|")
    for name, off_s, on_s in rows:
        print(f"| {name} | {off_s * 1000:.0f} ms | {on_s * 1000:.0f} ms | {off_s / on_s:.2f}x |")
    if text:
        r, e = statistics.median(r for r, _ in text), statistics.median(e for _, e in text)
        print(f"\nprompt tokens per request with the cache on (median): {r:.0f} reused, {e:.0f} evaluated")


if __name__ == "__main__":
    main()
