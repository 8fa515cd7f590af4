"""Per-sample agreement between two guards' predictions on the same benchmarks.

F1 side by side says how often each guard is right, not whether they are right on the same
samples. :func:`agreement` pairs the samples of two guards by benchmark and id and counts, per
task: samples both scored, labels that agree (a missing label - a parse failure - agrees only
with another missing one), samples both got right, and samples only one got right, with the ids
where they disagree. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from guardrail.eval.predictions import PredictionSet
from guardrail.profiles.labels import TASKS

__all__ = ["Agreement", "agreement"]


@dataclass(frozen=True)
class Agreement:
    """How two guards compare on one benchmark and task."""

    benchmark: str
    task: str
    guard_a: str
    guard_b: str
    samples: int
    agree: int
    both_right: int
    only_a_right: int
    only_b_right: int
    disagreeing: tuple[str, ...]

    @property
    def rate(self) -> float:
        return 100.0 * self.agree / self.samples if self.samples else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "disagreeing": list(self.disagreeing), "rate": round(self.rate, 2)}


def agreement(
    a: Sequence[PredictionSet], b: Sequence[PredictionSet], guard_a: str = "a", guard_b: str = "b"
) -> list[Agreement]:
    """Compare two guards' predictions sample by sample (benchmarks and ids both have)."""
    by_name = {s.benchmark: s for s in b}
    out = []
    for set_a in a:
        set_b = by_name.get(set_a.benchmark)
        if set_b is None:
            continue
        rows_b = {r.id: r for r in set_b.rows}
        for task in TASKS:
            pairs = [(ra, rows_b[ra.id]) for ra in set_a.rows if task in ra.labels and ra.id in rows_b]
            if not pairs:
                continue
            agree = both = only_a = only_b = 0
            disagreeing = []
            for ra, rb in pairs:
                pa, pb, gold = ra.predicted.get(task), rb.predicted.get(task), ra.labels[task]
                if pa == pb:
                    agree += 1
                else:
                    disagreeing.append(ra.id)
                right_a, right_b = pa == gold, pb == gold
                both += right_a and right_b
                only_a += right_a and not right_b
                only_b += right_b and not right_a
            out.append(Agreement(set_a.benchmark, task, guard_a, guard_b, len(pairs), agree, both, only_a,
                                 only_b, tuple(disagreeing)))  # fmt: skip
    return out
