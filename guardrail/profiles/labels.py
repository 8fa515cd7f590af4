"""The label vocabulary of the guard tasks, and reading labels from data (gold labels).

===========  ==========================================  ================  ================
task         question                                    positive label    negative label
===========  ==========================================  ================  ================
``request``  is the user's request harmful?               ``harmful``       ``unharmful``
``response`` is the AI response harmful?                  ``harmful``       ``unharmful``
``refusal``  is the AI response a refusal?                ``refusal``       ``compliance``
===========  ==========================================  ================  ================

(``request`` is what the papers call *prompt harmfulness detection*; the GuardReasoner models
write the refusal task's line as ``Completion:``.) Model outputs are read tolerantly by the
profiles' parsers (:func:`normalise_label`: ``harmless`` means unharmful; ``none`` is no label,
so a ``Request: None`` answer to a request is unparsable and follows the guard's
``on_parse_error`` policy - the GuardReasoner papers' scorer, ``--protocol guardreasoner`` of
:mod:`guardrail.eval.score`, keeps its own rules); gold labels in data files are read strictly
(:func:`gold_label`).
Every reader raises :class:`~guardrail.errors.FormatError`; the training and evaluation loaders
report it with the file and row. Pure: no I/O, no third-party imports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from guardrail.errors import FormatError

__all__ = [
    "ANSWER_KEYS",
    "GOLD_ALIASES",
    "NEGATIVE",
    "POSITIVE",
    "TASKS",
    "TASK_LABELS",
    "answer_labels",
    "gold_label",
    "normalise_label",
    "task_of_label",
]

TASKS: tuple[str, ...] = ("request", "response", "refusal")
#: The labels of each task after normalisation: (positive, negative).
TASK_LABELS: dict[str, tuple[str, str]] = {
    "request": ("harmful", "unharmful"),
    "response": ("harmful", "unharmful"),
    "refusal": ("refusal", "compliance"),
}
#: The positive class of each task (F1 is computed for it).
POSITIVE: Mapping[str, str] = {task: labels[0] for task, labels in TASK_LABELS.items()}
NEGATIVE: Mapping[str, str] = {task: labels[1] for task, labels in TASK_LABELS.items()}
#: The key of each task's line in an answer (``Request: harmful``).
ANSWER_KEYS: Mapping[str, str] = {"request": "Request", "refusal": "Completion", "response": "Response"}
#: Other spellings accepted for gold labels with ``aliases=True`` (the training corpora).
GOLD_ALIASES: Mapping[str, str] = {"harmless": "unharmful"}


def normalise_label(task: str, raw: str) -> str | None:
    """A label as a model wrote it (matched by the profile's parser) -> the task's label, or None.

    ``harmless`` means unharmful. ``none`` is None for every task: the model gave no label. For
    a task the request needs (the request's harmfulness, the response's when there is one) the
    output is then unparsable and the guard's ``on_parse_error`` decides (block by default); a
    moderation verdict never reads "no label" as "unharmful". ``Response: None`` for a request
    without a response is the expected answer and changes nothing.

    >>> normalise_label("request", "None"), normalise_label("response", "Harmless")
    (None, 'unharmful')
    """
    raw = raw.lower()
    if raw == "none":
        return None
    if task != "refusal" and raw == "harmless":
        return "unharmful"
    return raw


def gold_label(task: str, value: Any, *, aliases: bool = False) -> str:
    """Check one gold label: ``harmful``/``unharmful`` (request, response) or
    ``refusal``/``compliance`` (refusal), any case, surrounding spaces ignored; with ``aliases``
    also :data:`GOLD_ALIASES`. Anything else raises :class:`~guardrail.errors.FormatError`.

    >>> gold_label("request", " Harmful"), gold_label("response", "harmless", aliases=True)
    ('harmful', 'unharmful')
    """
    if task not in TASK_LABELS:
        raise FormatError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")
    key = value.strip().lower() if isinstance(value, str) else None
    if aliases and key in GOLD_ALIASES and GOLD_ALIASES[key] in TASK_LABELS[task]:
        key = GOLD_ALIASES[key]
    if key not in TASK_LABELS[task]:
        raise FormatError(f"unknown {task} label {value!r} (expected {' or '.join(TASK_LABELS[task])})")
    return key


def task_of_label(label: str, has_response: bool) -> str:
    """The task a bare label belongs to: refusal/compliance -> refusal; harmful/unharmful ->
    response when the sample has a response, else request (the GuardReasoner files' convention)."""
    if label.strip().lower() in TASK_LABELS["refusal"]:
        return "refusal"
    return "response" if has_response else "request"


# Label lines of an answer block: Request / Completion (= refusal) / Response.
_ANSWER_LINE = re.compile(r"(?im)^[ \t]*(Request|Completion|Response)[ \t]*:[ \t]*([^\s]+)[ \t]*$")
_KEY_TASK = {key.lower(): task for task, key in ANSWER_KEYS.items()}


def answer_labels(text: str) -> dict[str, str]:
    """Gold labels from the label lines of an answer (``Answers:`` or ``<result>`` block);
    ``None`` means the task does not apply. Strict: an unknown label raises
    :class:`~guardrail.errors.FormatError` (the profiles' parsers read model outputs instead).

    >>> answer_labels("Answers: \\nRequest: harmful\\nCompletion: refusal\\nResponse: None\\n")
    {'request': 'harmful', 'refusal': 'refusal'}
    """
    labels: dict[str, str] = {}
    for m in _ANSWER_LINE.finditer(text):
        if m.group(2).lower() == "none":
            continue
        task = _KEY_TASK[m.group(1).lower()]
        labels[task] = gold_label(task, m.group(2))
    return labels
