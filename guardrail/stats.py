"""Counters of what a :class:`~guardrail.Guard` did, for metrics (``guard.stats``).

Every counter is named in :data:`COUNTERS` with its help text; the moderation server exports
each as a Prometheus counter ``guardrail_guard_<name>_total``. To count something new, add a
name to :data:`COUNTERS` and call ``guard.stats.incr(name)`` where it happens: nothing else needs
to change.

>>> stats = GuardStats()
>>> stats.incr("cache_hits", 2)
>>> stats.snapshot()["cache_hits"]
2
"""

from __future__ import annotations

import threading

__all__ = ["COUNTERS", "GuardStats"]

#: Counter name -> help text.
COUNTERS: dict[str, str] = {
    "checks": "Requests checked (cache hits included).",
    "cache_hits": "Verdicts served from the verdict cache.",
    "cache_misses": "Cache lookups that found nothing (only counted when a cache is set).",
    "fast_verdicts": "Verdicts decided by label probabilities (fast and cascade modes).",
    "reasoning_verdicts": "Verdicts decided by a generated output (reasoning and cascade modes).",
    "escalations": "Cascade checks whose fast score fell in the uncertainty band and went on to reasoning (or, for a family that cascades by reasoning, whose first answer was re-checked).",
    "backend_calls": "Calls made to the backend (one per scoring or generation batch).",
    "backend_items": "Requests sent to the backend in those calls.",
    "microbatches": "Batches formed by the micro-batcher from concurrent async calls.",
    "microbatched_items": "Requests in those batches.",
    "policy_blocks": "Verdicts blocked by the failure policy (unparsable output, backend failure, timeout).",
    "policy_allows": "Verdicts allowed by the failure policy (on_parse_error/on_error='allow').",
    "parse_failures": "Model outputs with no parsable verdict.",
    "contradictions": "Verdicts whose reasoning concludes otherwise than their result (the result decided).",
    "backend_errors": "Requests whose backend call failed (after the backend's own retries), timeouts included.",
    "timeouts": "Requests whose generation did not finish within timeout_s (or the remote deadline).",
    "flagged": "Harmful verdicts let through because every violated category's action is 'flag'.",
    "controversial": "Verdicts where the guard gave its graded middle answer (Qwen3Guard's 'Controversial').",
    "unknown_categories": "Category codes the guard named that the policy in effect does not have (kept in the verdict).",
}


class GuardStats:
    """Thread-safe monotonic counters (see :data:`COUNTERS`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    def incr(self, name: str, n: int = 1) -> None:
        if name not in COUNTERS:
            raise KeyError(f"unknown counter {name!r}; add it to guardrail.stats.COUNTERS")
        with self._lock:
            self._counts[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        """All counters at one instant."""
        with self._lock:
            return dict(self._counts)

    def __repr__(self) -> str:
        return f"GuardStats({self.snapshot()})"
