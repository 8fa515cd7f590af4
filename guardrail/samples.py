"""A labelled sample: one thing to moderate and its gold labels, for training and evaluation.

The training loaders (:func:`guardrail.training.data.load_examples`) and the benchmark loaders
(:func:`guardrail.eval.load_benchmark`) both give :class:`Sample` objects, so a training set can
be scored as a benchmark and the other way round. Pure: no I/O, no third-party imports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail.profiles.base import ModerationInput

__all__ = ["Sample", "task_labels"]


@dataclass(frozen=True)
class Sample:
    """One item to moderate and its gold labels.

    - ``labels``: ``task -> label`` for the tasks the sample has a gold label for (see
      :mod:`guardrail.profiles.labels`): ``request`` and ``response`` (``harmful`` /
      ``unharmful``), ``refusal`` (``refusal`` / ``compliance``).
    - ``images``: file paths (decoded only when needed); ``videos``, ``audios``: clip file
      paths, likewise (GuardReasoner-Omni data).
    - ``id``: unique within its data set (benchmark predictions refer to samples by it, which is
      what lets an interrupted run resume).
    - ``target``: the assistant text to train on (SFT); None for evaluation or RL-only samples.
    - ``source``: where the sample was read (``file:row``); ``meta``: anything else, kept as is.
    - ``categories``: the harm categories the sample violates, by code (a policy's codes in
      training data; a benchmark's own category names in evaluation data); ``()`` when it is
      labelled as violating none, ``None`` when it has no category labels at all.
    """

    id: str
    labels: Mapping[str, str]
    prompt: str | None = None
    response: str | None = None
    images: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    target: str | None = None
    source: str = ""
    categories: tuple[str, ...] | None = None
    videos: tuple[str, ...] = ()
    audios: tuple[str, ...] = ()

    @property
    def request_label(self) -> str | None:
        return self.labels.get("request")

    @property
    def response_label(self) -> str | None:
        return self.labels.get("response")

    @property
    def refusal_label(self) -> str | None:
        return self.labels.get("refusal")

    @property
    def modality(self) -> str:
        """``text``, ``image`` (images, no text request) or ``text+image``; ``video``,
        ``text+video``, ``audio``, ``text+audio`` likewise (video, then audio, decides when a
        sample has several kinds of media)."""
        kind = "video" if self.videos else "audio" if self.audios else "image" if self.images else None
        if kind is None:
            return "text"
        return kind if self.prompt is None else f"text+{kind}"

    def request(self) -> dict[str, Any]:
        """The item for :meth:`guardrail.Guard.moderate_batch`."""
        item = {"prompt": self.prompt, "response": self.response, "images": list(self.images) or None}
        if self.videos:
            item["videos"] = list(self.videos)
        if self.audios:
            item["audios"] = list(self.audios)
        return item

    def moderation_input(
        self,
        images: Sequence[Any] | None = None,
        videos: Sequence[Any] | None = None,
        audios: Sequence[Any] | None = None,
    ) -> ModerationInput:
        """The request as the profiles see it; ``images``, ``videos``, ``audios`` replace the
        paths (decoded media)."""
        return ModerationInput(
            prompt=self.prompt,
            response=self.response,
            images=tuple(self.images if images is None else images),
            videos=tuple(self.videos if videos is None else videos),
            audios=tuple(self.audios if audios is None else audios),
        )

    def to_row(self, base_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The sample as one JSONL row, the format both the training stages and the evaluation
        read (``{"id", "prompt", "response", "images", "labels": {task: label}, "target"?,
        "categories"?, "meta"?, "videos"?, "audios"?}``); media paths relative to ``base_dir``
        when inside it (``videos``/``audios`` only when the sample has some)."""
        row: dict[str, Any] = {
            "id": self.id,
            "prompt": self.prompt,
            "response": self.response,
            "images": [_relative(p, base_dir) for p in self.images],
            "labels": dict(self.labels),
        }
        if self.videos:
            row["videos"] = [_relative(p, base_dir) for p in self.videos]
        if self.audios:
            row["audios"] = [_relative(p, base_dir) for p in self.audios]
        if self.target is not None:
            row["target"] = self.target
        if self.categories is not None:
            row["categories"] = list(self.categories)
        if self.meta:
            row["meta"] = dict(self.meta)
        return row


def task_labels(
    request: str | None = None, response: str | None = None, refusal: str | None = None
) -> dict[str, str]:
    """A ``labels`` mapping from one label per task (None: the sample has no label for it)."""
    given = {"request": request, "response": response, "refusal": refusal}
    return {task: label for task, label in given.items() if label is not None}


def _relative(path: str, base: str | os.PathLike[str] | None) -> str:
    if base is None:
        return path
    try:
        return (
            os.path.relpath(path, base) if Path(path).resolve().is_relative_to(Path(base).resolve()) else path
        )
    except ValueError:
        return path
