"""Does the reasoning agree with the result? The guard models are told to "keep consistency
between the reasoning and the Answers", and sometimes do not: a reasoning that ends "the request
is unharmful" above a result saying ``Request: harmful``. The result decides (it is what the
papers score); the disagreement is recorded in ``Verdict.contradiction`` and counted
(``guard.stats``: ``contradictions``) so that it can be seen and measured.

The reading is deliberately conservative: for each task, the **last** sentence of the reasoning
that names the task's subject (``request``/``prompt`` or ``response``/``answer``, not both) and
says one label (``harmful``, or ``unharmful``/``harmless``/``not harmful``..., not both) is the
reasoning's conclusion. A contradiction is a conclusion that differs from the task's label.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["conclusions", "contradiction"]

_SUBJECTS = {
    "request": re.compile(r"\b(request|prompt|query|question)s?\b", re.IGNORECASE),
    "response": re.compile(r"\b(response|answer|reply|completion)s?\b", re.IGNORECASE),
}
_SENTENCE = re.compile(r"[^.!?\n]+")
_UNHARMFUL = re.compile(
    r"\b(unharmful|harmless|non-harmful|not\s+harmful|benign)\b"
    r"|(\bnot|n't|\bno|\bnever)\b(\s+\w+){0,3}\s+harmful\b",
    re.IGNORECASE,
)
_HARMFUL = re.compile(r"(?<![-\w])harmful\b", re.IGNORECASE)


def _label(sentence: str) -> str | None:
    negated = _UNHARMFUL.search(sentence)
    harmful = _HARMFUL.search(_UNHARMFUL.sub(" ", sentence)) is not None  # once negations are out
    if negated and not harmful:
        return "unharmful"
    if harmful and not negated:
        return "harmful"
    return None


def conclusions(reasoning: str | None) -> dict[str, str]:
    """Task -> the label the reasoning concludes (see the module docstring); tasks it does not
    conclude on are absent."""
    found: dict[str, str] = {}
    for sentence in _SENTENCE.findall(reasoning or ""):
        subjects = [task for task, rx in _SUBJECTS.items() if rx.search(sentence)]
        if len(subjects) != 1:
            continue
        label = _label(sentence)
        if label is not None:
            found[subjects[0]] = label
    return found


def contradiction(reasoning: str | None, labels: Mapping[str, str | None]) -> str | None:
    """``"the reasoning concludes the request is unharmful; the result says harmful"`` when the
    reasoning's conclusion for a task with a label differs from it; ``None`` otherwise."""
    said = conclusions(reasoning)
    parts = [
        f"the reasoning concludes the {task} is {said[task]}; the result says {label}"
        for task, label in labels.items()
        if label in ("harmful", "unharmful") and task in said and said[task] != label
    ]
    return "; ".join(parts) or None
