"""Dynamic clipping: a clip range that changes with the training step.

GuardReasoner-VL clips the policy ratio with a range ``B_s`` that depends on the step ``s`` of
``s_total``: wide early (exploration), narrower later (exploitation), starting from ``epsilon``.
The paper's formula is garbled in every copy, so the schedule is a named choice here:

==============  ==========================================================  ================
name            clip range at progress ``p = s / (s_total - 1)``            note
==============  ==========================================================  ================
``constant``    ``epsilon``                                                 plain GRPO/PPO
``linear``      ``epsilon + (epsilon_end - epsilon) * p``                   **default**
``cosine``      ``epsilon_end + (epsilon - epsilon_end) * (1 + cos(pi p))/2``
==============  ==========================================================  ================

``epsilon_end`` defaults to ``epsilon / 2`` (0.2 -> 0.1 with the paper's epsilon). With an
asymmetric range (``epsilon_high``, DAPO's "clip higher"), the upper bound is scaled by the same
factor as the lower one.

:class:`DynamicClippingCallback` applies the schedule: a ``TrainerCallback`` that holds the
``GRPOTrainer`` and, before every optimizer step, sets its ``epsilon_low``/``epsilon_high``,
which TRL reads on every loss call. It also logs ``clip_range/low`` and ``clip_range/high``.
Clipping only acts when the policy that generated the rollouts differs from the one being
updated, i.e. with several optimizer updates per generation batch (``num_iterations > 1`` or
``steps_per_generation > gradient_accumulation_steps``); the RL config makes that the default.

>>> schedule = ClipSchedule("linear", epsilon=0.2, epsilon_end=0.1)
>>> [round(schedule.at(s, 5)[0], 3) for s in range(5)]
[0.2, 0.175, 0.15, 0.125, 0.1]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SCHEDULES", "ClipSchedule", "DynamicClippingCallback", "schedule_value"]  # noqa: F822 - built lazily


def _constant(p: float, start: float, end: float) -> float:
    return start


def _linear(p: float, start: float, end: float) -> float:
    return start + (end - start) * p


def _cosine(p: float, start: float, end: float) -> float:
    return end + (start - end) * (1.0 + math.cos(math.pi * p)) / 2.0


#: Schedule name -> function ``(progress in [0, 1], start, end) -> epsilon``.
SCHEDULES: dict[str, Callable[[float, float, float], float]] = {
    "constant": _constant,
    "linear": _linear,
    "cosine": _cosine,
}
DEFAULT_SCHEDULE = "linear"


def schedule_value(name: str, step: int, total_steps: int, start: float, end: float) -> float:
    """The clip epsilon of schedule ``name`` at 0-based optimizer step ``step`` of ``total_steps``."""
    try:
        func = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown clip schedule {name!r}; known: {', '.join(SCHEDULES)}") from None
    progress = 0.0 if total_steps <= 1 else min(max(step / (total_steps - 1), 0.0), 1.0)
    return func(progress, start, end)


@dataclass(frozen=True)
class ClipSchedule:
    """A named clip schedule with its end points (see the module docstring)."""

    name: str = DEFAULT_SCHEDULE
    epsilon: float = 0.2
    epsilon_end: float | None = None
    epsilon_high: float | None = None

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"unknown clip schedule {self.name!r}; known: {', '.join(SCHEDULES)}")
        if not 0 < self.epsilon < 1:
            raise ValueError("epsilon must be in (0, 1)")
        if self.epsilon_end is not None and not 0 < self.epsilon_end < 1:
            raise ValueError("epsilon_end must be in (0, 1)")
        if self.epsilon_high is not None and self.epsilon_high <= 0:
            raise ValueError("epsilon_high must be positive")

    @property
    def end(self) -> float:
        return self.epsilon / 2 if self.epsilon_end is None else self.epsilon_end

    def at(self, step: int, total_steps: int) -> tuple[float, float]:
        """``(epsilon_low, epsilon_high)`` for 0-based optimizer step ``step`` of ``total_steps``."""
        low = schedule_value(self.name, step, total_steps, self.epsilon, self.end)
        if self.epsilon_high is None:
            return low, low
        return low, self.epsilon_high * (low / self.epsilon)


def _make_callback_class() -> type:
    from guardrail._deps import require

    transformers = require("transformers", extra="training")

    class DynamicClippingCallback(transformers.TrainerCallback):
        """Set the trainer's clip range from a :class:`ClipSchedule` before every optimizer step.

        Pass it to ``GRPOTrainer(callbacks=[cb])`` and call :meth:`attach` with the trainer (the
        callback needs the trainer object, which TRL does not hand to callbacks). ``history``
        records ``(step, epsilon_low, epsilon_high)`` as applied.
        """

        def __init__(self, schedule: ClipSchedule, trainer: Any = None):
            self.schedule = schedule
            self.trainer = trainer
            self.history: list[tuple[int, float, float]] = []

        def attach(self, trainer: Any) -> DynamicClippingCallback:
            self.trainer = trainer
            return self

        def _apply(self, state: Any, record: bool = True) -> None:
            if self.trainer is None:
                raise RuntimeError("DynamicClippingCallback.attach(trainer) was not called")
            low, high = self.schedule.at(state.global_step, max(int(state.max_steps or 0), 1))
            self.trainer.epsilon_low = low
            self.trainer.epsilon_high = high
            if not record:
                return
            self.history.append((state.global_step, low, high))
            metrics = getattr(self.trainer, "_metrics", None)  # GRPOTrainer averages these into its logs
            if isinstance(metrics, dict) and "train" in metrics:
                metrics["train"]["clip_range/low"].append(low)
                metrics["train"]["clip_range/high"].append(high)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._apply(state, record=False)  # in place before anything else runs

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._apply(state)

    return DynamicClippingCallback


def __getattr__(name: str) -> Any:  # the callback class needs transformers: build it on first use
    if name == "DynamicClippingCallback":
        cls = _make_callback_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
