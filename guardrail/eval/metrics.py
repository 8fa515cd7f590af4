"""Metrics: pure functions over labels, no I/O.

- Label metrics (:class:`Confusion`): precision, recall and F1 of the positive class, in percent
  as the papers report them; :func:`weighted_mean` is the papers' sample-weighted average.
- Score-based metrics take :class:`Outcomes` (gold labels with the guard's per-task scores,
  P(harmful), from fast or cascade mode) and return a number or a typed result; those in
  :data:`SCORE_METRICS` (ROC AUC, average precision) are computed by the scorer.
- Threshold curves: :func:`threshold_curve` gives, for every distinct score taken as the
  threshold (a sample is flagged when ``score >= threshold``, as the guard decides), the
  confusion counts; from them the ROC curve, the precision/recall curve, and
  :func:`pick_threshold`, the threshold with the best recall under a target false-positive rate.

>>> c = confusion(["harmful", "unharmful", "harmful"], ["harmful", "harmful", "unharmful"], "harmful")
>>> (c.tp, c.fp, c.fn, c.tn), round(c.f1, 2)
((1, 1, 1, 0), 50.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SCORE_METRICS",
    "Confusion",
    "CurvePoint",
    "Outcomes",
    "ThresholdChoice",
    "ThresholdCurve",
    "average_precision",
    "confusion",
    "pick_threshold",
    "roc_auc",
    "threshold_curve",
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


@dataclass(frozen=True)
class CurvePoint:
    """Confusion counts when samples with ``score >= threshold`` are flagged positive."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def tpr(self) -> float:
        """True-positive rate (recall), as a fraction; 0 without positives."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def fpr(self) -> float:
        """False-positive rate, as a fraction; 0 without negatives."""
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def precision(self) -> float:
        """As a fraction; 1 when nothing is flagged (the curve's convention)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tpr


@dataclass(frozen=True)
class ThresholdCurve:
    """Every operating point of a score, highest threshold first.

    The first point has threshold ``inf`` (nothing flagged); then one point per distinct score,
    down to the lowest (everything flagged). Ratios are fractions, not percent.
    """

    points: tuple[CurvePoint, ...]

    @property
    def positives(self) -> int:
        return self.points[0].fn if self.points else 0

    @property
    def negatives(self) -> int:
        return self.points[0].tn if self.points else 0

    def roc(self) -> list[tuple[float, float]]:
        """``(fpr, tpr)`` per point, from (0, 0) to (1, 1)."""
        return [(p.fpr, p.tpr) for p in self.points]

    def pr(self) -> list[tuple[float, float]]:
        """``(recall, precision)`` per point (the first, nothing flagged, has precision 1)."""
        return [(p.recall, p.precision) for p in self.points]


def threshold_curve(outcomes: Outcomes) -> ThresholdCurve:
    """The confusion counts at every threshold (samples without a score are left out).

    >>> curve = threshold_curve(Outcomes([True, False, True, False], [0.9, 0.8, 0.4, 0.1]))
    >>> [(p.threshold, p.tp, p.fp) for p in curve.points]
    [(inf, 0, 0), (0.9, 1, 0), (0.8, 1, 1), (0.4, 2, 1), (0.1, 2, 2)]
    """
    scored = sorted(outcomes.scored, key=lambda ys: -ys[1])
    positives = sum(1 for y, _ in scored if y)
    negatives = len(scored) - positives
    points = [CurvePoint(math.inf, 0, 0, positives, negatives)]
    tp = fp = 0
    for i, (y, score) in enumerate(scored):
        if y:
            tp += 1
        else:
            fp += 1
        if i + 1 < len(scored) and scored[i + 1][1] == score:
            continue  # ties: one point per distinct score
        points.append(CurvePoint(score, tp, fp, positives - tp, negatives - fp))
    return ThresholdCurve(tuple(points))


def roc_auc(outcomes: Outcomes) -> float | None:
    """Area under the ROC curve (trapezoids; ties count half); None without both classes.

    >>> roc_auc(Outcomes([True, False, True, False], [0.9, 0.8, 0.4, 0.1]))
    0.75
    """
    curve = threshold_curve(outcomes)
    if not curve.positives or not curve.negatives:
        return None
    roc = curve.roc()
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(roc, roc[1:], strict=False))


def average_precision(outcomes: Outcomes) -> float | None:
    """Average precision: the sum over thresholds of (recall gain) x precision, as
    scikit-learn's ``average_precision_score``; None without positives.

    >>> round(average_precision(Outcomes([True, False, True, False], [0.9, 0.8, 0.4, 0.1])), 4)
    0.8333
    """
    curve = threshold_curve(outcomes)
    if not curve.positives:
        return None
    points = curve.points
    return sum((b.recall - a.recall) * b.precision for a, b in zip(points, points[1:], strict=False))


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold :func:`pick_threshold` chose and what it gives on the samples (fractions).

    ``threshold`` is None when no threshold in [0, 1] meets the target (a negative sample
    scored 1.0 and the target allows no false positive)."""

    target_fpr: float
    threshold: float | None
    tpr: float
    fpr: float
    precision: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def recall(self) -> float:
        return self.tpr

    def as_dict(self) -> dict[str, Any]:
        return {"target_fpr": self.target_fpr, "threshold": self.threshold, "tpr": self.tpr, "fpr": self.fpr,
                "precision": self.precision, "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}  # fmt: skip


def pick_threshold(outcomes: Outcomes, target_fpr: float) -> ThresholdChoice:
    """The threshold with the highest recall whose false-positive rate is at most ``target_fpr``
    (among equal recalls, the lowest false-positive rate, then the highest threshold).

    >>> c = pick_threshold(Outcomes([True, False, True, False], [0.9, 0.8, 0.4, 0.1]), 0.0)
    >>> c.threshold, c.tpr, c.fpr
    (0.9, 0.5, 0.0)
    >>> pick_threshold(Outcomes([True, False, True, False], [0.9, 0.8, 0.4, 0.1]), 0.5).threshold
    0.4
    """
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1]; got {target_fpr}")
    curve = threshold_curve(outcomes)
    feasible = [p for p in curve.points if p.fpr <= target_fpr + 1e-12]
    best = max(feasible, key=lambda p: (p.tpr, -p.fpr, p.threshold))
    threshold: float | None = best.threshold
    if threshold == math.inf:  # flag nothing: any threshold above the highest score
        top = curve.points[1].threshold if len(curve.points) > 1 else 0.0
        threshold = math.nextafter(top, math.inf) if top < 1.0 else None
    return ThresholdChoice(target_fpr, threshold, best.tpr, best.fpr, best.precision,
                           best.tp, best.fp, best.fn, best.tn)  # fmt: skip


#: Score-based metric name -> function(Outcomes) -> result (JSON-serialisable), computed by the
#: scorer for every benchmark and task that has scores.
SCORE_METRICS: dict[str, Callable[[Outcomes], Any]] = {
    "roc_auc": roc_auc,
    "average_precision": average_precision,
}


def score_metrics(
    outcomes: Outcomes, metrics: Mapping[str, Callable[[Outcomes], Any]] | None = None
) -> dict[str, Any]:
    """Run the score-based metrics on ``outcomes`` (nothing when no sample has a score)."""
    if not outcomes.scored:
        return {}
    return {name: fn(outcomes) for name, fn in (metrics if metrics is not None else SCORE_METRICS).items()}
