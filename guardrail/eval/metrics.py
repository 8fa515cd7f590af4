"""Metrics: pure functions over labels, no I/O.

- Label metrics (:class:`Confusion`): precision, recall and F1 of the positive class, in percent
  as the papers report them; :func:`weighted_mean` is the papers' sample-weighted average.
- Score-based metrics take :class:`Outcomes` (gold labels with the guard's ``Verdict.score``,
  P(harmful), where the backend gives one) and return a number or a typed result; they are
  registered in :data:`SCORE_METRICS` (threshold curves and threshold picking go there).

>>> c = confusion(["harmful", "unharmful", "harmful"], ["harmful", "harmful", "unharmful"], "harmful")
>>> (c.tp, c.fp, c.fn, c.tn), round(c.f1, 2)
((1, 1, 1, 0), 50.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SCORE_METRICS",
    "Confusion",
    "Outcomes",
    "confusion",
    "weighted_mean",
]


@dataclass(frozen=True)
class Confusion:
    """Counts for one positive class. Ratios are in percent; 0 when undefined (no positives
    predicted or present), as scikit-learn returns them."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        return 100.0 * self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return 100.0 * self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 100.0 * 2 * self.tp / denominator if denominator else 0.0

    @property
    def accuracy(self) -> float:
        return 100.0 * (self.tp + self.tn) / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}


def confusion(gold: Sequence[str], predicted: Sequence[str], positive: str) -> Confusion:
    """Count one positive class over paired labels (anything not ``positive`` is negative)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels for {len(predicted)} predictions")
    tp = fp = fn = tn = 0
    for g, p in zip(gold, predicted, strict=True):
        if p == positive:
            if g == positive:
                tp += 1
            else:
                fp += 1
        elif g == positive:
            fn += 1
        else:
            tn += 1
    return Confusion(tp, fp, fn, tn)


def weighted_mean(values: Sequence[tuple[float, float]]) -> float | None:
    """Mean of ``(value, weight)`` pairs weighted by ``weight``; None when the weights sum to 0."""
    total = sum(w for _, w in values)
    if not total:
        return None
    return sum(v * w for v, w in values) / total


@dataclass(frozen=True)
class Outcomes:
    """What score-based metrics see for one benchmark and task: per sample, whether the gold
    label is the positive class and the guard's score (P(positive); None when not available)."""

    positive: Sequence[bool]
    scores: Sequence[float | None]

    @property
    def scored(self) -> list[tuple[bool, float]]:
        return [(y, s) for y, s in zip(self.positive, self.scores, strict=True) if s is not None]


#: Score-based metric name -> function(Outcomes) -> result (JSON-serialisable), computed by the
#: scorer for every benchmark and task that has scores. Empty until a metric is registered.
SCORE_METRICS: dict[str, Callable[[Outcomes], Any]] = {}


def score_metrics(
    outcomes: Outcomes, metrics: Mapping[str, Callable[[Outcomes], Any]] | None = None
) -> dict[str, Any]:
    """Run the score-based metrics on ``outcomes`` (nothing when no sample has a score)."""
    if not outcomes.scored:
        return {}
    return {name: fn(outcomes) for name, fn in (metrics if metrics is not None else SCORE_METRICS).items()}
