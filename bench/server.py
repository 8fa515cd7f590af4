"""Moderation server vs in-process checks: throughput and per-request overhead.

The same guard answers the same checks two ways, side by side in one run:
- in-process: ``guard.moderate`` from N threads;
- over HTTP: N concurrent clients POSTing ``/v1/guard`` to the server on 127.0.0.1
  (uvicorn, one process, JSON bodies, images as data URLs).

    python bench/server.py [--clients 1 8] [--requests 40] [--model tiny|fake]

``--model tiny`` uses the tiny random Qwen2.5-VL guard (real model time); ``--model fake`` a
scripted backend with no model time, which isolates the HTTP and validation cost.
Goal: under 2 ms of overhead per request on top of the model time.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--model", choices=["tiny", "fake"], default="tiny")
    args = parser.parse_args()

    import httpx

    from guardrail import Guard
    from guardrail.server import ServerSettings, create_app
    from guardrail.testing import FakeBackend, cached_tiny_model, serve_app
    from tests.conftest import make_image

    if args.model == "tiny":
        path = cached_tiny_model("guardreasoner-vl", Path(tempfile.gettempdir()) / "guardrail-bench")
        guard = Guard.from_pretrained(path, device="cpu", max_new_tokens=16)
    else:
        guard = Guard(FakeBackend())
    png = make_image()
    item = {"prompt": "What is shown here? Is it safe?", "images": [png]}
    body = {"prompt": item["prompt"], "images": ["data:image/png;base64," + base64.b64encode(png).decode()]}
    settings = ServerSettings(max_concurrency=8)

    with serve_app(create_app(guard, settings)) as url, httpx.Client(timeout=120) as http:

        def over_http() -> float:
            t0 = time.perf_counter()
            r = http.post(url + "/v1/guard", json=body)
            r.raise_for_status()
            return time.perf_counter() - t0

        def direct() -> float:
            t0 = time.perf_counter()
            guard.moderate(**item)
            return time.perf_counter() - t0

        for f in (direct, over_http):  # warm up
            f()
        print(f"{args.model} guard, text+image, {args.requests} requests per run, interleaved runs")
        print(
            f"{'clients':>7} {'in-process/s':>13} {'http/s':>9} {'p50 direct':>11} {'p50 http':>9} {'overhead':>10}"
        )
        for n in args.clients:
            results = {}
            for name, f in (
                ("direct", direct),
                ("http", over_http),
                ("direct2", direct),
                ("http2", over_http),
            ):
                with ThreadPoolExecutor(n) as pool:
                    t0 = time.perf_counter()
                    lat = list(pool.map(lambda _, f=f: f(), range(args.requests)))
                    results[name] = (args.requests / (time.perf_counter() - t0), lat)
            d_tp = (results["direct"][0] + results["direct2"][0]) / 2
            h_tp = (results["http"][0] + results["http2"][0]) / 2
            d50 = statistics.median(results["direct"][1] + results["direct2"][1])
            h50 = statistics.median(results["http"][1] + results["http2"][1])
            print(
                f"{n:>7} {d_tp:>13.1f} {h_tp:>9.1f} {d50 * 1000:>9.2f}ms {h50 * 1000:>7.2f}ms {(h50 - d50) * 1000:>8.2f}ms"
            )
    print("overhead = median HTTP latency - median in-process latency (goal < 2 ms at 1 client)")


if __name__ == "__main__":
    main()
