"""One moderation pass over a batch of validated requests, free of I/O.

:func:`moderation_pass` is a generator: it yields the backend calls it needs (:class:`ScoreCall`,
:class:`GenerateCall`), receives their results (or :class:`Failed`), and returns one outcome
per request: a :class:`~guardrail.Verdict`, or the exception that request raises in its caller
(a :class:`~guardrail.errors.ParseError` under ``on_parse_error="raise"``...). The sync and the
async guard methods drive the same generator with :func:`run_sync` and :func:`run_async`, so
both follow one logic (httpx's sans-I/O style):

1. requests in ``fast`` or ``cascade`` mode are scored in one call (label probabilities);
2. requests in ``reasoning`` mode, and cascade requests whose score lies in the uncertainty
   band, are generated in one call and parsed. A family that reasons before its label
   (:meth:`~guardrail.profiles.Profile.cascade_first`: gpt-oss-safeguard at low effort) has
   its cascade requests generated with that cheaper profile first (:func:`_cascade_first`),
   and only those :meth:`~guardrail.profiles.Profile.cascade_escalates` picks join step 2;
3. backend failures follow ``on_error``, unparsable outputs ``on_parse_error``; the ``error``
   of such a verdict goes through :func:`guardrail._redact.redact` (URL credentials, tokens),
   whichever backend wrote the text.

A failure of a whole call under ``on_error="raise"``, and :class:`~guardrail.errors.UnsupportedError`
(fast mode on a backend that cannot score), raise out of the pass instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail import fast
from guardrail._redact import redact
from guardrail.backends.base import Backend, Generation, GenerationOptions, ScoreRequest, ScoreResult
from guardrail.errors import BackendTimeoutError, ParseError, UnsupportedError
from guardrail.fast import Mode
from guardrail.inputs import Prepared
from guardrail.profiles.base import Profile, RenderedPrompt
from guardrail.stats import GuardStats
from guardrail.verdict import (
    FailurePolicy,
    Verdict,
    policy_verdict,
    verdict_from_generation,
    verdict_from_scores,
)

__all__ = [
    "Failed",
    "GenerateCall",
    "ScoreCall",
    "Settings",
    "Work",
    "moderation_pass",
    "run_async",
    "run_sync",
]

log = logging.getLogger("guardrail")

Outcome = Verdict | BaseException


@dataclass(frozen=True)
class Work:
    """One validated request, the mode to check it in, and when its check started."""

    prepared: Prepared
    mode: Mode
    start: float


@dataclass(frozen=True)
class Settings:
    """What a pass needs from the guard (read once per pass)."""

    profile: Profile
    options: GenerationOptions
    threshold: float
    band: tuple[float, float]
    on_parse_error: FailurePolicy
    on_error: FailurePolicy
    model: str | None
    backend: str
    controversial: str = "block"


@dataclass(frozen=True)
class ScoreCall:
    requests: list[ScoreRequest]

    def run(self, backend: Backend) -> list[ScoreResult]:
        return backend.score(self.requests)

    async def arun(self, backend: Backend) -> list[ScoreResult]:
        return await backend.ascore(self.requests)


@dataclass(frozen=True)
class GenerateCall:
    prompts: list[RenderedPrompt]
    options: GenerationOptions

    def run(self, backend: Backend) -> list[Generation]:
        return backend.generate(self.prompts, self.options)

    async def arun(self, backend: Backend) -> list[Generation]:
        return await backend.agenerate(self.prompts, self.options)


@dataclass(frozen=True)
class Failed:
    """A backend call raised ``error``."""

    error: Exception


Call = ScoreCall | GenerateCall


def moderation_pass(
    s: Settings, works: Sequence[Work], stats: GuardStats, clock: Callable[[], float]
) -> Generator[Call, Any, list[Outcome]]:
    """Check ``works``; see the module docstring."""
    out: list[Outcome | None] = [None] * len(works)
    fast_verdicts: dict[int, Verdict] = {}
    # a scoring-only family (ShieldGemma 2) writes no answer: every mode is its scoring
    scoring_only = s.profile.scoring_only
    to_generate = [i for i, w in enumerate(works) if w.mode == "reasoning" and not scoring_only]
    # a family that reasons before its label cascades by reasoning (a cheaper profile first)
    first = None if scoring_only else s.profile.cascade_first()
    staged = [i for i, w in enumerate(works) if w.mode == "cascade" and first is not None]
    in_stage = set(staged)
    if staged:
        to_generate += yield from _cascade_first(s, first, works, staged, out, stats, clock)

    scored = [i for i, w in enumerate(works) if (w.mode != "reasoning" or scoring_only) and i not in in_stage]
    if scored:
        plans = {i: fast.plan(s.profile, works[i].prepared.item) for i in scored}
        requests = {i: fast.score_requests(s.profile, works[i].prepared, plans[i]) for i in scored}
        call = ScoreCall([r for i in scored for r in requests[i]])
        _count_call(stats, len(call.requests))
        flat = _results((yield call), len(call.requests), s, lambda e: ScoreResult(error=e), stats)
        grouped, at = [], 0
        for i in scored:  # each check's results (several for per-category prompts)
            grouped.append(flat[at : at + len(requests[i])])
            at += len(requests[i])
        now = clock()
        for i, group in zip(scored, grouped, strict=True):
            w = works[i]
            latency = (now - w.start) * 1000.0
            result = next((r for r in group if r.error is not None), group[0])
            try:
                if result.error is not None:
                    if isinstance(result.error, UnsupportedError):
                        raise result.error
                    _count_error(stats, result.error)
                    out[i] = _error_verdict(s, result.error, latency, path="fast")
                    continue
                per_category = None
                try:
                    if plans[i].prompts:
                        per_category = fast.category_scores(plans[i], [r.logprobs for r in group])
                        scores = {"request": max(per_category.values())}
                    else:
                        scores = fast.marginals(plans[i], result.logprobs, controversial=s.controversial)
                except ValueError as exc:
                    out[i] = _error_verdict(s, RuntimeError(f"unusable label probabilities: {exc}"), latency,
                                            path="fast")  # fmt: skip
                    continue
                verdict = verdict_from_scores(s.profile, w.prepared, scores, threshold=s.threshold,
                                              latency_ms=latency, model=s.model,
                                              category_scores=per_category)  # fmt: skip
                if w.mode == "cascade" and not scoring_only and fast.uncertain(verdict, s.band):
                    fast_verdicts[i] = verdict
                    to_generate.append(i)
                    stats.incr("escalations")
                else:
                    out[i] = verdict
                    stats.incr("fast_verdicts")
                    if per_category is not None:
                        _count_categories(stats, w.prepared.item.policy, verdict)
            except UnsupportedError:
                raise
            except Exception as exc:  # noqa: BLE001 - this request's own failure
                out[i] = exc

    if to_generate:
        to_generate.sort()
        call = GenerateCall([works[i].prepared.prompt for i in to_generate], s.options)
        _count_call(stats, len(to_generate))
        generations = _results((yield call), len(to_generate), s,
                               lambda e: Generation(text="", finish_reason="error", error=e), stats)  # fmt: skip
        now = clock()
        for i, generation in zip(to_generate, generations, strict=True):
            w = works[i]
            if generation.error is not None:
                _count_error(stats, generation.error)
            try:
                verdict = verdict_from_generation(
                    s.profile, w.prepared, generation, on_parse_error=s.on_parse_error, on_error=s.on_error,
                    latency_ms=(now - w.start) * 1000.0, model=s.model, controversial=s.controversial,
                )  # fmt: skip
                update: dict[str, Any] = {"path": "reasoning"}
                first = fast_verdicts.get(i)
                if first is not None:  # cascade: keep the scores of the fast pass
                    update.update(score=first.score, request_score=first.request_score,
                                  response_score=first.response_score, refusal_score=first.refusal_score)  # fmt: skip
                out[i] = verdict.model_copy(update=update)
                if verdict.decided_by == "model":
                    stats.incr("reasoning_verdicts")
                    _count_categories(stats, w.prepared.item.policy, verdict)
                    if verdict.contradiction:
                        stats.incr("contradictions")
                elif generation.error is None:
                    stats.incr("parse_failures")
            except ParseError as exc:  # on_parse_error="raise"
                stats.incr("parse_failures")
                out[i] = exc
            except Exception as exc:  # noqa: BLE001 - this request's own failure (on_error="raise")
                out[i] = exc

    for i, outcome in enumerate(out):
        if isinstance(outcome, Verdict) and outcome.decided_by == "policy":
            if outcome.error:  # backend error texts are not all ours: no URL credentials or tokens
                outcome = out[i] = outcome.model_copy(update={"error": redact(outcome.error)})
            log.warning("verdict decided by policy: %s", outcome.error)
            stats.incr("policy_allows" if outcome.allowed else "policy_blocks")
    return out  # type: ignore[return-value]


def _cascade_first(
    s: Settings, first: Profile, works: Sequence[Work], staged: list[int], out: list[Outcome | None],
    stats: GuardStats, clock: Callable[[], float],
) -> Generator[Call, Any, list[int]]:  # fmt: skip
    """Generate ``staged`` checks with the cheaper profile ``first``; fill ``out`` with their
    verdicts and return the indices to re-check with the guard's profile (an unparsable or
    uncertain answer, when ``first`` differs from it; a backend error is not re-run)."""
    rerun = first != s.profile
    call = GenerateCall([first.render(works[i].prepared.item) for i in staged], s.options)
    _count_call(stats, len(staged))
    generations = _results((yield call), len(staged), s,
                           lambda e: Generation(text="", finish_reason="error", error=e), stats)  # fmt: skip
    now = clock()
    escalate: list[int] = []
    for i, generation in zip(staged, generations, strict=True):
        w = works[i]
        if generation.error is not None:
            _count_error(stats, generation.error)
        try:
            verdict = verdict_from_generation(
                first, w.prepared, generation, on_parse_error="block" if rerun else s.on_parse_error,
                on_error=s.on_error, latency_ms=(now - w.start) * 1000.0, model=s.model,
                controversial=s.controversial,
            )  # fmt: skip
        except ParseError as exc:  # on_parse_error="raise", nothing to escalate to
            stats.incr("parse_failures")
            out[i] = exc
            continue
        except Exception as exc:  # noqa: BLE001 - this request's own failure (on_error="raise")
            out[i] = exc
            continue
        if rerun and generation.error is None and s.profile.cascade_escalates(verdict, w.prepared.item):
            escalate.append(i)
            stats.incr("escalations")
            continue
        out[i] = verdict.model_copy(update={"path": "reasoning"})
        if verdict.decided_by == "model":
            stats.incr("reasoning_verdicts")
            _count_categories(stats, w.prepared.item.policy, verdict)
        elif generation.error is None:
            stats.incr("parse_failures")
    return escalate


def _count_categories(stats: GuardStats, policy: Any, verdict: Verdict) -> None:
    """Count what a verdict says about categories: flagged verdicts, codes the policy lacks
    (kept in the verdict, never dropped), graded answers."""
    if verdict.flagged:
        stats.incr("flagged")
    if verdict.controversial:
        stats.incr("controversial")
    if policy is not None and verdict.categories:
        unknown = policy.unknown(verdict.categories)
        if unknown:
            stats.incr("unknown_categories", len(unknown))
            log.warning("the guard named categories the policy does not have: %s", ", ".join(unknown))
    elif policy is None and verdict.categories:
        stats.incr("unknown_categories", len(verdict.categories))


def _count_error(stats: GuardStats, error: BaseException) -> None:
    stats.incr("backend_errors")
    if isinstance(error, BackendTimeoutError):
        stats.incr("timeouts")


def _count_call(stats: GuardStats, n: int) -> None:
    stats.incr("backend_calls")
    stats.incr("backend_items", n)


def _results(
    received: Any, n: int, s: Settings, failed: Callable[[Exception], Any], stats: GuardStats
) -> list[Any]:
    """The per-request results of a call, or per-request failures when the whole call failed."""
    if isinstance(received, Failed):
        error = received.error
    elif len(received) != n:
        error = RuntimeError(f"backend returned {len(received)} results for {n} requests")
    else:
        return list(received)
    if isinstance(error, UnsupportedError):
        raise error
    if s.on_error == "raise":
        for _ in range(n):
            _count_error(stats, error)
        raise error
    log.warning("guard backend %s failed: %r", s.backend, error, exc_info=error)
    return [failed(error)] * n


def _error_verdict(s: Settings, error: BaseException, latency_ms: float, *, path: str) -> Verdict:
    if s.on_error == "raise":
        raise error
    verdict = policy_verdict(s.on_error, f"backend error: {error}", latency_ms=latency_ms, model=s.model,
                             profile=s.profile.name)  # fmt: skip
    return verdict.model_copy(update={"path": path})


def run_sync(backend: Backend, gen: Generator[Call, Any, list[Outcome]]) -> list[Outcome]:
    """Drive a pass with blocking backend calls."""
    try:
        call = next(gen)
        while True:
            try:
                result: Any = call.run(backend)
            except Exception as exc:  # noqa: BLE001 - the pass decides (policy or raise)
                result = Failed(exc)
            call = gen.send(result)
    except StopIteration as done:
        return done.value


async def run_async(backend: Backend, gen: Generator[Call, Any, list[Outcome]]) -> list[Outcome]:
    """Drive a pass with async backend calls."""
    try:
        call = next(gen)
        while True:
            try:
                result: Any = await call.arun(backend)
            except Exception as exc:  # noqa: BLE001
                result = Failed(exc)
            call = gen.send(result)
    except StopIteration as done:
        return done.value
