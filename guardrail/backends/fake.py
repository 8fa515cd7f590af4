"""A scripted backend for tests of code that uses a guard (yours and ours).

>>> from guardrail import Guard
>>> from guardrail.testing import FakeBackend
>>> guard = Guard(FakeBackend(outputs=["<think>ok</think><result>\\nRequest: unharmful\\nResponse: None\\n</result>"]))
>>> guard.moderate(prompt="hello").allowed
True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

from guardrail.backends.base import Backend, Generation, GenerationOptions
from guardrail.profiles.base import RenderedPrompt

__all__ = ["FakeBackend", "result_output"]


def result_output(request: str = "unharmful", response: str = "None", reasoning: str = "scripted") -> str:
    """A well-formed GuardReasoner-VL output with the given labels."""
    return f"<think>\n{reasoning}\n</think>\n<result>\nRequest: {request}\nResponse: {response}\n</result>"


class FakeBackend(Backend):
    """Returns scripted outputs instead of running a model.

    - ``outputs``: texts returned in turn, one per prompt (the last one repeats when they run
      out). An item may be an exception instance: that prompt then fails with it.
    - ``respond``: alternatively, a function ``(prompt) -> str`` computed per prompt.
    - ``error``: raise this for every call (tests of the failure policy).

    ``calls`` records every batch received (lists of :class:`RenderedPrompt`).
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
