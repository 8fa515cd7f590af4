"""The demo's paths and its console output (shared by the steps of ``examples/demo.py``)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the checkout's guardrail, when run from the source tree

DEMO_DATA = HERE / "demo_data"
TRAIN = DEMO_DATA / "train.jsonl"
HELDOUT = DEMO_DATA / "heldout.jsonl"
SAMPLES = HERE / "samples.jsonl"
RECIPE = REPO / "training" / "tiny.yaml"
#: ``--policy``: tiny.yaml trained on ``training/policies/demo.yaml`` (verdicts name categories)
POLICY_RECIPE = REPO / "training" / "tiny-policy.yaml"


class Console:
    """Progress lines on standard output, with the time since the start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def say(self, message: str = "") -> None:
        print(message, flush=True)

    def step(self, message: str) -> None:
        self.say(f"[{self.elapsed():6.1f}s] {message}")

    @contextlib.contextmanager
    def timed(self, message: str) -> Iterator[None]:
        self.step(message + " ...")
        t0 = time.perf_counter()
        yield
        self.say(f"{'':10} done in {time.perf_counter() - t0:.1f}s")


def quiet_third_party() -> None:
    """Keep the output to what the demo says: no deprecation notices, no weight-loading bars."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("           %(name)s: %(message)s"))
    for name in ("guardrail.training", "guardrail.export"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False
    # policy decisions are shown in the table (decided_by); no need for a warning per verdict
    logging.getLogger("guardrail").setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
