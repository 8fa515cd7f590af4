"""A scripted backend for tests of code that uses a guard (yours and ours).

>>> from guardrail import Guard
>>> from guardrail.testing import FakeBackend
>>> guard = Guard(FakeBackend(outputs=["<think>ok</think><result>\\nRequest: unharmful\\nResponse: None\\n</result>"]))
>>> guard.moderate(prompt="hello").allowed
True
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from guardrail.backends.base import Backend, Generation, GenerationOptions, ScoreRequest, ScoreResult
from guardrail.profiles.base import RenderedPrompt
from guardrail.profiles.guardreasoner_vl import GuardReasonerVLProfile

__all__ = ["FakeBackend", "result_output"]


def result_output(
    request: str = "unharmful", response: str = "unharmful", reasoning: str = "scripted"
) -> str:
    """A well-formed GuardReasoner-VL output with the given labels (written by the profile).

    ``response="None"`` writes ``Response: None``, which answers only requests without a response:
    ``None`` is no label, so a request with a response gets an unparsable output."""
    return GuardReasonerVLProfile().answer(reasoning, {"request": request, "response": response})


class FakeBackend(Backend):
    """Returns scripted outputs instead of running a model.

    - ``outputs``: texts returned in turn, one per prompt (the last one repeats when they run
      out). An item may be an exception instance: that prompt then fails with it.
    - ``respond``: alternatively, a function ``(prompt) -> str`` computed per prompt.
    - ``error``: raise this for every call (tests of the failure policy).
    - ``scores``: for fast and cascade modes, the label probabilities returned in turn, one per
      request (the last one repeats): a float is P(harmful) for every task, a dict gives it per
      task (``{"request": 0.9, "response": 0.2, "refusal": 0.5}``), an exception fails that
      request. Tasks are treated as independent. ``score_fn`` computes it per request instead.
      Without either, the backend cannot score (like a backend with no log-probabilities).

    ``calls`` records every generation batch received (lists of :class:`RenderedPrompt`),
    ``score_calls`` every scoring batch (lists of :class:`ScoreRequest`).
    """

    name = "fake"

    def __init__(
        self,
        outputs: Iterable[str | BaseException] | None = None,
        *,
        respond: Callable[[RenderedPrompt], str] | None = None,
        error: BaseException | None = None,
        model_name: str = "fake-guard",
        profile: str | None = None,
        scores: Iterable[float | Mapping[str, float] | BaseException] | None = None,
        score_fn: Callable[[ScoreRequest], float | Mapping[str, float] | BaseException] | None = None,
    ):
        self._outputs = list(outputs or [])
        if not self._outputs and respond is None and error is None:
            self._outputs = [result_output()]
        self._respond = respond
        self._error = error
        self._next = 0
        self._lock = threading.Lock()
        self._profile = profile
        self.model_name = model_name
        self.calls: list[list[RenderedPrompt]] = []
        self._scores = list(scores or [])
        self._score_fn = score_fn
        self._next_score = 0
        self.score_calls: list[list[ScoreRequest]] = []
        self.supports_scoring = bool(self._scores) or score_fn is not None

    def default_profile(self) -> str | None:
        return self._profile

    def generate(self, prompts: Sequence[RenderedPrompt], options: GenerationOptions) -> list[Generation]:
        with self._lock:
            self.calls.append(list(prompts))
            if self._error is not None:
                raise self._error
            results = []
            for prompt in prompts:
                if self._respond is not None:
                    out: str | BaseException = self._respond(prompt)
                else:
                    out = self._outputs[min(self._next, len(self._outputs) - 1)]
                    self._next += 1
                if isinstance(out, BaseException):
                    results.append(Generation(text="", finish_reason="error", error=out))
                else:
                    results.append(Generation(text=out, output_tokens=len(out.split()), finish_reason="stop"))
            return results

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        if not self.supports_scoring:
            return super().score(requests)
        with self._lock:
            self.score_calls.append(list(requests))
            if self._error is not None:
                raise self._error
            results = []
            for request in requests:
                if self._score_fn is not None:
                    spec = self._score_fn(request)
                else:
                    spec = self._scores[min(self._next_score, len(self._scores) - 1)]
                    self._next_score += 1
                if isinstance(spec, BaseException):
                    results.append(ScoreResult(error=spec))
                else:
                    results.append(
                        ScoreResult(logprobs=tuple(_logprob(spec, c) for c in request.continuations))
                    )
            return results


_TASK_OF_KEY = {"request": "request", "completion": "refusal", "response": "response"}
_POSITIVE = ("harmful", "refusal")


def _logprob(spec: float | Mapping[str, float], continuation: str) -> float:
    """log P(continuation) when each task's label is drawn independently with P(positive) from
    ``spec``: the continuation is `` <request label>`` then ``\nKey: <label>`` lines."""
    first, *rest = continuation.split("\n")
    labels = [("request", first.strip().lower())]
    for line in rest:
        m = re.match(r"\s*(\w+)\s*:\s*(\w+)", line)
        if m and m.group(1).lower() in _TASK_OF_KEY:
            labels.append((_TASK_OF_KEY[m.group(1).lower()], m.group(2).lower()))
    total = 0.0
    for task, label in labels:
        p = spec if isinstance(spec, (int, float)) else spec.get(task, 0.5)
        p = min(max(float(p), 1e-12), 1 - 1e-12)
        total += math.log(p if label in _POSITIVE else 1.0 - p)
    return total
