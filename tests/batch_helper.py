"""Run one batch job from a JSON config, in its own process (tests/test_batch*.py, bench/batch.py).

    python tests/batch_helper.py CONFIG.json

Config keys: ``input``, ``output``, ``model`` (a tiny model folder), ``mode`` (default fast),
``max_new_tokens``, ``engine``, ``num_workers``, ``batch_size``, ``shard_size``, ``format``,
``ray_address`` (an existing cluster), ``delay`` (seconds of sleep added to each guard call, so that a test can interrupt the job in
the middle), ``log`` (a file where each guard appends ``start PID`` when built and
``batch PID N TIME SECONDS`` after each call: when it ended, how long the guard took), ``kill_after`` (Ray: SIGKILL the first actor that has done
this many batches; its pid goes into the result), ``result`` (where the summary is written).

The guard is the real tiny model wrapped to log and sleep; Ray ships the factory (defined
here, in ``__main__``) to its actors by value.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Logged:
    """A guard that logs its pid and calls (and sleeps ``delay`` seconds per call)."""

    def __init__(self, guard: Any, log: str | None, delay: float):
        self.guard, self.log, self.delay = guard, log, delay
        self._write(f"start {os.getpid()}")

    def _write(self, line: str) -> None:
        if self.log:
            with open(self.log, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    def moderate_batch(self, items: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        start = time.perf_counter()
        verdicts = self.guard.moderate_batch(items, **kwargs)
        took = time.perf_counter() - start
        self._write(f"batch {os.getpid()} {len(items)} {time.time():.6f} {took:.6f}")
        return verdicts

    def __getattr__(self, name: str) -> Any:
        return getattr(self.guard, name)


def make_factory(cfg: dict[str, Any]) -> Any:
    model, mode = cfg["model"], cfg.get("mode", "fast")
    max_new_tokens, log, delay = cfg.get("max_new_tokens"), cfg.get("log"), float(cfg.get("delay", 0))

    def factory() -> Any:
        import torch

        from guardrail import Guard

        torch.set_num_threads(1)  # the same arithmetic in every process (and no oversubscription)
        guard = Guard.from_pretrained(model, device="cpu", mode=mode, max_new_tokens=max_new_tokens)
        return Logged(guard, log, delay)

    return factory


def read_log(path: str) -> list[list[str]]:
    try:
        return [line.split() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _killer(log: str, after: int, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first process that has logged ``after`` batches."""
    while not stop.is_set():
        counts: dict[int, int] = {}
        for entry in read_log(log):
            if entry[0] == "batch":
                counts[int(entry[1])] = counts.get(int(entry[1]), 0) + 1
        for pid, n in counts.items():
            if n >= after and pid != os.getpid():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.05)


def main(config_path: str) -> int:
    from guardrail.batch import run_batch

    cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
    killed: list[int] = []
    stop = threading.Event()
    if cfg.get("kill_after"):
        threading.Thread(
            target=_killer, args=(cfg["log"], cfg["kill_after"], killed, stop), daemon=True
        ).start()
    start = time.perf_counter()
    result = run_batch(
        cfg["input"], cfg["output"], make_factory(cfg),
        guard_identity={"model": cfg["model"], "mode": cfg.get("mode", "fast"),
                        "max_new_tokens": cfg.get("max_new_tokens")},
        engine=cfg.get("engine", "local"), num_workers=cfg.get("num_workers", 1),
        batch_size=cfg.get("batch_size", 4), shard_size=cfg.get("shard_size", 8),
        output_format=cfg.get("format", "parquet"), progress=False,
        cpus_per_worker=cfg.get("cpus_per_worker"), ray_address=cfg.get("ray_address"),
    )  # fmt: skip
    stop.set()
    if cfg.get("result"):
        Path(cfg["result"]).write_text(
            json.dumps({"summary": result.summary, "killed": killed, "seconds": time.perf_counter() - start}),
            encoding="utf-8",
        )
    return 0 if result.complete else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
