"""Is the model's output usable? Parse rate and format reward of the stages that generate.

Rejection sampling and RL learn from the model's own answers. When most of them cannot be read
(no ``<result>`` block, ``Request: None``...), sampling keeps everything as "hard" and GRPO
optimises noise, which is how an RL stage lowers a guard's held-out F1. Both stages measure
it and warn loudly below a threshold:

- ``parse rate``: the share of answers whose labels the guard's parser reads for every task the
  sample needs (what ``Guard`` would decide on rather than its ``on_parse_error`` policy);
- ``format reward``: RL's ``rewards/format/mean``, the share of answers that are exactly
  ``<think>...</think><result>...</result>``.

``on_unusable_output: stop`` makes the stage stop instead (a :class:`~guardrail.errors.TrainingError`,
exit status 2; RL saves no model). RL logs ``rewards/parsed/mean`` (a zero-weight reward) and
``rewards/format/mean`` every generation step in ``metrics.jsonl``; sampling writes
``parse_rate`` in ``stats.json``. Nothing here imports torch at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from guardrail._deps import require
from guardrail.errors import TrainingError

__all__ = [
    "PARSED_METRIC",
    "FORMAT_METRIC",
    "below_thresholds",
    "health_callback",
    "run_means",
    "warn_unusable",
]

log = logging.getLogger("guardrail.training")

PARSED_METRIC = "rewards/parsed/mean"
FORMAT_METRIC = "rewards/format/mean"


def below_thresholds(
    parse_rate: float | None,
    format_reward: float | None,
    *,
    min_parse_rate: float,
    min_format_reward: float = 0.0,
) -> list[str]:
    """What is under its threshold, in words (empty when the output is usable)."""
    out = []
    if parse_rate is not None and parse_rate < min_parse_rate:
        out.append(f"parse rate {parse_rate:.0%} < min_parse_rate {min_parse_rate:.0%}")
    if format_reward is not None and format_reward < min_format_reward:
        out.append(f"format reward {format_reward:.2f} < min_format_reward {min_format_reward:.2f}")
    return out


def warn_unusable(stage: str, where: str, problems: list[str], advice: str) -> str:
    """Log a loud warning; return its text."""
    text = f"{stage}: UNUSABLE MODEL OUTPUT {where}: {'; '.join(problems)}. {advice}"
    log.warning("!" * 78)
    log.warning("%s", text)
    log.warning("!" * 78)
    return text


RL_ADVICE = (
    "GRPO is learning from answers the guard cannot read: train SFT longer (or check the SFT "
    "data), raise rl.max_completion_length if answers are cut, or set on_unusable_output: stop"
)


def health_callback(min_parse_rate: float, min_format_reward: float, stop: bool) -> Any:
    """A TrainerCallback checking each logged RL step (see the module docstring)."""
    transformers = require("transformers", extra="training")

    class OutputHealth(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.stopped: str | None = None
            self.warned = 0

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not logs or (PARSED_METRIC not in logs and FORMAT_METRIC not in logs):
                return
            problems = below_thresholds(
                _number(logs.get(PARSED_METRIC)),
                _number(logs.get(FORMAT_METRIC)),
                min_parse_rate=min_parse_rate,
                min_format_reward=min_format_reward,
            )
            if not problems:
                return
            self.warned += 1
            if state.is_world_process_zero:
                text = warn_unusable("rl", f"at step {state.global_step}", problems, RL_ADVICE)
            else:
                text = "; ".join(problems)
            if stop:
                self.stopped = text
                control.should_training_stop = True

        def raise_if_stopped(self) -> None:
            if self.stopped:
                raise TrainingError(f"{self.stopped} (stopped: on_unusable_output is stop; no model saved)")

    return OutputHealth()


def run_means(log_history: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """Mean parse rate and format reward over a run's logged steps (None: not logged)."""
    out: dict[str, float | None] = {}
    for name, key in (("parse_rate", PARSED_METRIC), ("format_reward", FORMAT_METRIC)):
        values = [v for v in (_number(h.get(key)) for h in log_history) if v is not None]
        out[name] = round(sum(values) / len(values), 4) if values else None
    return out


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
