"""Deprecated names of :mod:`guardrail.training.data` (still importable from there, with a
``DeprecationWarning``)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from guardrail.profiles import GuardReasonerVLProfile
from guardrail.profiles import parse_user_text as _parse_user_text
from guardrail.samples import Sample, task_labels

__all__ = ["Example", "parse_user_text", "vl_target"]

_VL = GuardReasonerVLProfile()


def Example(  # noqa: N802 - the old class name
    prompt: str | None,
    response: str | None,
    images: tuple[str, ...] = (),
    request_label: str | None = None,
    response_label: str | None = None,
    target: str | None = None,
    refusal_label: str | None = None,
    id: str = "",  # noqa: A002
    source: str = "",
    meta: Mapping[str, Any] | None = None,
) -> Sample:
    """Deprecated: training samples are :class:`guardrail.samples.Sample` objects (labels in
    ``labels``, one per task); this builds one from the old fields."""
    warnings.warn(
        "guardrail.training.data.Example is deprecated; use guardrail.samples.Sample "
        "(labels=task_labels(request=..., response=...))",
        DeprecationWarning,
        stacklevel=2,
    )
    labels = task_labels(request=request_label, response=response_label, refusal=refusal_label)
    return Sample(id=id, labels=labels, prompt=prompt, response=response, images=tuple(images),
                  meta=dict(meta or {}), target=target, source=source)  # fmt: skip


def parse_user_text(text: str) -> tuple[str | None, str | None]:
    """Deprecated: use :func:`guardrail.profiles.parse_user_text` (which raises
    :class:`~guardrail.errors.FormatError`)."""
    warnings.warn(
        "guardrail.training.data.parse_user_text is deprecated; use guardrail.profiles.parse_user_text",
        DeprecationWarning,
        stacklevel=2,
    )
    return _parse_user_text(text)


def vl_target(reasoning: str, request: str | None, response: str | None) -> str:
    """Deprecated: use ``GuardReasonerVLProfile().answer(reasoning, labels)``."""
    warnings.warn(
        "guardrail.training.data.vl_target is deprecated; use GuardReasonerVLProfile().answer(reasoning, labels)",
        DeprecationWarning,
        stacklevel=2,
    )
    return _VL.answer(reasoning, {"request": request, "response": response})
