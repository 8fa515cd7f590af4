"""Rows/s of the batch job: the local engine against the Ray engine with 1 and 2 workers.

The same JSONL rows, the same tiny Qwen2.5-VL guard (built offline, reasoning mode: the random
model never closes its answer, so every row costs exactly ``--new-tokens`` generated tokens),
one torch thread per guard. Each job runs in its own process (tests/batch_helper.py); the Ray
jobs run in a network namespace holding only loopback (``unshare -n``), because Ray's processes
listen on every interface. Ray's workers run at the local engine's priority (nice 0; Ray's
default of 15 makes them yield the CPU to any other work on a shared machine:
``--ray-niceness 15`` shows that). Two rates per job:

- steady: rows/s between the first and the last finished batch (what a long job approaches);
- end to end: rows / the job's wall time, Ray's start and every worker's model load included.

    python bench/batch.py [--rows 64] [--new-tokens 100] [--batch-size 4] [--rounds 2]

Goal: on 2 shared cores, Ray with 1 worker within 1.3x of local (steady rows/s) for rows that
take at least 50 ms each. Ray with 2 workers shows what a second worker adds on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

NAMESPACE = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


def steady_rate(log: Path) -> tuple[float, float, float]:
    """(rows/s between the first and last finished batch, wall seconds per row over that span,
    seconds per row spent inside the guard's calls)."""
    batches = sorted(
        (float(e[3]), int(e[2]), float(e[4]))
        for e in (line.split() for line in log.read_text().splitlines())
        if e and e[0] == "batch"
    )
    span = batches[-1][0] - batches[0][0]
    rows = sum(n for _, n, _ in batches[1:])
    in_guard = sum(t for *_, t in batches) / sum(n for _, n, _ in batches)
    return (rows / span if span > 0 else float("nan")), span / max(rows, 1), in_guard


def run_job(work: Path, name: str, model: Path, src: Path, args: argparse.Namespace, **cfg) -> dict:
    log, out = work / f"{name}.log", work / name
    log.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    config = work / f"{name}.json"
    config.write_text(json.dumps({
        "input": str(src), "output": str(out), "model": str(model), "mode": "reasoning",
        "max_new_tokens": args.new_tokens, "batch_size": args.batch_size, "shard_size": args.batch_size * 2,
        "log": str(log), "result": str(work / f"{name}.result.json"), **cfg,
    }))  # fmt: skip
    prefix = NAMESPACE if cfg.get("engine") == "ray" and not args.no_namespace else []
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               RAY_DISABLE_USAGE_STATS="1", RAY_worker_niceness=str(args.ray_niceness))  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run([*prefix, sys.executable, str(REPO / "tests" / "batch_helper.py"), str(config)],
                          env=env, capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    result = json.loads((work / f"{name}.result.json").read_text())
    assert result["summary"]["complete"], f"{name}: rows are missing"
    rate, per_row, in_guard = steady_rate(log)
    return {"steady": rate, "end_to_end": args.rows / wall, "wall": wall, "per_row_ms": 1000 * per_row,
            "guard_ms": 1000 * in_guard}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=64, help="rows per job (default 64)")
    parser.add_argument("--new-tokens", type=int, default=100, help="generated tokens per row (default 100)")
    parser.add_argument("--batch-size", type=int, default=4, help="rows per guard call (default 4)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray pool sizes (default 1 2)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; each engine's best counts")
    parser.add_argument("--ray-niceness", type=int, default=0,
                        help="nice level of Ray's workers (default 0, as the local engine; Ray's own default "
                             "is 15, which on a shared machine gives them less CPU than other work)")  # fmt: skip
    parser.add_argument("--no-namespace", action="store_true",
                        help="run Ray on the host's network (only where that is safe)")  # fmt: skip
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    from guardrail.testing import cached_tiny_model

    if not args.no_namespace:
        probe = subprocess.run([*NAMESPACE, "true"], capture_output=True, text=True)
        if probe.returncode != 0:
            sys.exit(f"cannot make a network namespace ({probe.stderr.strip()}); see --no-namespace")
    model = cached_tiny_model("guardreasoner-vl", Path(tempfile.gettempdir()) / "guardrail-bench")
    with tempfile.TemporaryDirectory(prefix="guardrail-batch-bench-") as tmp:
        work = Path(tmp)
        src = work / "rows.jsonl"
        src.write_text("".join(json.dumps({"prompt": f"Request {i}: how do I fix a bike at home?"}) + "\n"
                               for i in range(args.rows)))  # fmt: skip
        jobs = {"local": {}, **{f"ray x{n}": {"engine": "ray", "num_workers": n} for n in args.workers}}
        results: dict[str, dict] = {}
        for _ in range(args.rounds):  # alternate, keep each engine's best round: the cores are shared
            for name, cfg in jobs.items():
                r = run_job(work, name.replace(" ", ""), model, src, args, **cfg)
                if name not in results or r["steady"] > results[name]["steady"]:
                    results[name] = r

    local = results["local"]
    print(f"tiny Qwen2.5-VL guard, CPU, 1 torch thread per guard, {args.rows} rows, batches of "
          f"{args.batch_size}, {args.new_tokens} generated tokens per row, {os.cpu_count()} cores, "
          f"Ray workers at nice {args.ray_niceness}, load average {load_before:.1f} before")  # fmt: skip
    print(f"{'engine':<10} | {'steady rows/s':>13} | {'ms/row':>6} | {'in guard':>8} | {'end-to-end rows/s':>17} | "
          f"{'wall s':>6} | steady vs local")  # fmt: skip
    for name, r in results.items():
        print(f"{name:<10} | {r['steady']:>13.2f} | {r['per_row_ms']:>6.0f} | {r['guard_ms']:>8.0f} | "
              f"{r['end_to_end']:>17.2f} | {r['wall']:>6.1f} | {r['steady'] / local['steady']:.2f}x")  # fmt: skip
    if "ray x1" in results:
        slowdown = local["steady"] / results["ray x1"]["steady"]
        ok = "within" if slowdown <= 1.3 else "OVER"
        print(f"ray x1 takes {slowdown:.2f}x local's time per row (goal <= 1.3x, rows of "
              f"{local['per_row_ms']:.0f} ms): {ok}")  # fmt: skip


if __name__ == "__main__":
    main()
