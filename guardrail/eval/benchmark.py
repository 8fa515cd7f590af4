"""The evaluation data model: a :class:`Benchmark` is a named list of labelled samples.

Samples are :class:`guardrail.samples.Sample` objects (what the training loaders give too), each
with its gold label for the tasks it is scored on; the tasks and their labels are defined in
:mod:`guardrail.profiles.labels` (:data:`TASKS`, :data:`POSITIVE`). The helpers here read gold
labels from data files and raise :class:`~guardrail.errors.DatasetError` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guardrail.errors import DatasetError, FormatError
from guardrail.profiles.labels import POSITIVE, TASKS, answer_labels, gold_label, task_of_label
from guardrail.samples import Sample

__all__ = [
    "POSITIVE",
    "TASKS",
    "Benchmark",
    "Sample",
    "answers_labels",
    "infer_task",
    "normalise_gold",
]

#: The task a bare label belongs to (see :func:`guardrail.profiles.labels.task_of_label`).
infer_task = task_of_label


@dataclass(frozen=True)
class Benchmark:
    """A named list of samples. ``skipped`` counts source rows left out for lack of a usable
    label (e.g. OpenAI moderation rows whose flags are missing)."""

    name: str
    samples: tuple[Sample, ...]
    source: str = ""
    description: str = ""
    skipped: int = 0

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for s in self.samples:
            if s.id in seen:
                raise DatasetError(
                    f"duplicate sample id {s.id!r} in benchmark {self.name!r}", path=self.source
                )
            seen.add(s.id)

    @property
    def tasks(self) -> tuple[str, ...]:
        present = {t for s in self.samples for t in s.labels}
        return tuple(t for t in TASKS if t in present)

    @property
    def modality(self) -> str:
        """The samples' modality when they all share one, else ``mixed``."""
        kinds = {s.modality for s in self.samples}
        return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "text")

    def __len__(self) -> int:
        return len(self.samples)


# ------------------------------------------------------------------ gold labels in files
def normalise_gold(task: str, value: Any, *, path: str | None = None, line: int | None = None) -> str:
    """Check one gold label (:func:`guardrail.profiles.labels.gold_label`): ``harmful`` /
    ``unharmful`` (request, response) or ``refusal`` / ``compliance`` (refusal), any case.
    Anything else raises :class:`DatasetError` at ``path:line``."""
    try:
        return gold_label(task, value)
    except FormatError as exc:
        raise DatasetError(str(exc), path=path, line=line) from None


def answers_labels(text: str, *, path: str | None = None, line: int | None = None) -> dict[str, str]:
    """Gold labels from an ``Answers:`` / ``<result>`` block (``None``: the task does not apply);
    see :func:`guardrail.profiles.labels.answer_labels`."""
    try:
        return answer_labels(text)
    except FormatError as exc:
        raise DatasetError(str(exc), path=path, line=line) from None
