"""Fast mode: the candidate label lines to score, and P(harmful) from their probabilities.

Pure: no I/O, no model, no clock.

In fast mode the guard does not generate. It forces the start of the answer (the profile's
:attr:`~guardrail.profiles.Profile.fast_prefix`, e.g. ``<think>\\n\\n</think>\\n<result>\\nRequest:``
for GuardReasoner-VL) and asks the backend for the log-probability of every way the label
lines can continue, each token teacher-forced:

- request only: ``" harmful"`` and ``" unharmful"``;
- with a response: the joint label lines, ``" harmful\\nResponse: unharmful"`` and the three
  other combinations (GuardReasoner, with its refusal task: eight, ``Completion:`` included).

The probabilities are normalised over these candidates and each task's score is its marginal:
``P(request harmful)`` is the total probability of the candidates whose request label is
``harmful``. Scoring whole continuations rather than one next token handles labels that are
several tokens long and labels that share their first token; scoring the joint lines gives the
response task from the same forward pass, conditioned on the request label as the model writes
it, without choosing that label first.

:func:`guardrail.verdict.verdict_from_scores` turns the scores into the verdict: a task is
harmful when its score reaches the threshold (``score >= threshold``); the refusal task
(GuardReasoner) is a refusal when ``P(refusal) >= 0.5``. ``Verdict.score`` is the larger of the
request and response scores that apply, so ``harmful == (score >= threshold)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from guardrail._deprecated import moved
from guardrail.backends.base import ScoreRequest
from guardrail.errors import ConfigurationError
from guardrail.inputs import Prepared
from guardrail.profiles.base import TASK_LABELS, ModerationInput, Profile, RenderedPrompt
from guardrail.verdict import Verdict

__all__ = [
    "MODES",
    "FastPlan",
    "Mode",
    "marginals",
    "category_scores",
    "plan",
    "score_request",
    "score_requests",
    "uncertain",
    "validate_band",
    "validate_mode",
    "validate_threshold",
]

Mode = Literal["reasoning", "fast", "cascade"]
MODES: tuple[str, ...] = ("reasoning", "fast", "cascade")


def validate_mode(mode: str) -> Mode:
    if mode not in MODES:
        raise ConfigurationError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode  # type: ignore[return-value]


def validate_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ConfigurationError(f"threshold must be a number in [0, 1]; got {threshold!r}")
    return float(threshold)


def validate_band(band: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in band)
    except (TypeError, ValueError):
        raise ConfigurationError(f"cascade_band must be two numbers (low, high); got {band!r}") from None
    if not 0.0 <= low <= high <= 1.0:
        raise ConfigurationError(f"cascade_band must satisfy 0 <= low <= high <= 1; got {band!r}")
    return low, high


@dataclass(frozen=True)
class FastPlan:
    """The candidates scored for one request: ``assignments[k]`` gives a label per task of
    ``tasks`` and ``continuations[k]`` is its text after the profile's fast prefix."""

    tasks: tuple[str, ...]
    assignments: tuple[tuple[str, ...], ...]
    continuations: tuple[str, ...]
    #: A scoring-only family (ShieldGemma 2): ``(category code, prompt)`` pairs, each scored
    #: with the continuations (the positive answer first) instead of the request's one prompt.
    prompts: tuple[tuple[str, RenderedPrompt], ...] = ()


def plan(profile: Profile, item: ModerationInput) -> FastPlan:
    """The candidate label lines for ``item`` (every combination of the tasks' labels); for a
    scoring-only family, its per-category prompts and answers."""
    if profile.scoring_only:
        return FastPlan(
            ("request",), (("harmful",), ("unharmful",)), tuple(profile.category_labels),
            prompts=profile.category_prompts(item),
        )  # fmt: skip
    tasks = profile.fast_tasks(item)
    key = profile.answer_keys[tasks[0]] + ":"
    # a family whose answer starts with the label itself (Llama Guard's safe/unsafe) has no key
    if key != ":" and not profile.fast_prefix.rstrip(" ").endswith(key):
        raise ConfigurationError(
            f"profile {profile.name!r} cannot run fast mode: its fast_prefix must end with {key!r}"
        )
    assignments = tuple(itertools.product(*(profile.fast_labels(t) for t in tasks)))
    continuations = tuple(profile.answer_text(dict(zip(tasks, a, strict=True)), tasks) for a in assignments)
    return FastPlan(tasks, assignments, continuations)


def score_request(profile: Profile, prepared: Prepared, fast_plan: FastPlan) -> ScoreRequest:
    return ScoreRequest(
        prompt=prepared.prompt, prefix=profile.fast_prefix, continuations=fast_plan.continuations
    )


def score_requests(profile: Profile, prepared: Prepared, fast_plan: FastPlan) -> list[ScoreRequest]:
    """The scoring requests of one check: one, or one per category prompt (scoring-only families)."""
    if not fast_plan.prompts:
        return [score_request(profile, prepared, fast_plan)]
    return [ScoreRequest(prompt=p, prefix=profile.fast_prefix, continuations=fast_plan.continuations)
            for _, p in fast_plan.prompts]  # fmt: skip


def category_scores(fast_plan: FastPlan, logprobs: Sequence[Sequence[float]]) -> dict[str, float]:
    """P(positive answer) per category code from each category prompt's log-probabilities
    (normalised over the answers: the softmax of the two logits for Yes/No), the largest over
    the prompts of one code (several images). Raises ``ValueError`` like :func:`marginals`.

    >>> p = FastPlan(("request",), (("harmful",), ("unharmful",)), ("Yes", "No"),
    ...              prompts=(("sexual", None), ("sexual", None)))
    >>> round(category_scores(p, [[math.log(0.2), math.log(0.8)], [math.log(0.6), math.log(0.4)]])["sexual"], 4)
    0.6
    """
    if len(logprobs) != len(fast_plan.prompts):
        raise ValueError(f"{len(logprobs)} results for {len(fast_plan.prompts)} category prompts")
    out: dict[str, float] = {}
    for (code, _), values in zip(fast_plan.prompts, logprobs, strict=True):
        p = marginals(fast_plan, values)["request"]
        out[code] = max(p, out.get(code, 0.0))
    return out


def marginals(fast_plan: FastPlan, logprobs: Sequence[float], *, controversial: str = "block") -> dict[str, float]:
    """P(positive label) per task from the candidates' log-probabilities. A graded family's
    ``"controversial"`` candidates count as positive unless ``controversial="allow"``.

    >>> p = FastPlan(("request",), (("harmful",), ("unharmful",)), (" harmful", " unharmful"))
    >>> round(marginals(p, [math.log(0.3), math.log(0.1)])["request"], 4)
    0.75

    Raises ``ValueError`` when the values are unusable (wrong count, NaN, all impossible).
    """
    if len(logprobs) != len(fast_plan.continuations):
        raise ValueError(f"{len(logprobs)} log-probabilities for {len(fast_plan.continuations)} candidates")
    values = [float(v) for v in logprobs]
    if any(math.isnan(v) or v == math.inf for v in values):
        raise ValueError(f"unusable log-probabilities {values}")
    top = max(values)
    if top == -math.inf:
        raise ValueError("every candidate label has probability 0")
    weights = [math.exp(v - top) for v in values]
    total = sum(weights)
    out = {}
    for i, task in enumerate(fast_plan.tasks):
        positive = {TASK_LABELS[task][0]} | ({"controversial"} if controversial != "allow" else set())
        out[task] = (
            sum(w for w, a in zip(weights, fast_plan.assignments, strict=True) if a[i] in positive) / total
        )
    return out


def uncertain(verdict: Verdict, band: tuple[float, float]) -> bool:
    """Whether a fast verdict goes on to reasoning in cascade mode: some task score lies in the
    band, ``low <= score <= high``."""
    low, high = band
    return any(s is not None and low <= s <= high for s in (verdict.request_score, verdict.response_score))


# Deprecated: the fast-mode verdict is built in guardrail.verdict, next to the reasoning one.
__getattr__ = moved("guardrail.fast", {"assemble": "guardrail.verdict:verdict_from_scores"})
