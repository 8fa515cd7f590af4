"""Check a data set before training: what it holds and what a stage would drop.

``python -m guardrail.training validate --config recipe.yaml`` (and the start of every ``run``)
reads the data of each stage that takes the user's files - ``sft`` (targets needed), ``sample``,
and ``augment``/``rl`` when their section names its own ``data`` - exactly as the stage would
(its profile, ``image_root``, ``data_format``), and prints a :class:`DataSummary`: rows per
task, label balance, modalities, images referenced and missing, rows dropped and why.

Rows whose target contradicts their own labels are errors (:class:`~guardrail.errors.DataError`)
whatever ``on_bad_row`` says; other bad rows are dropped (``on_bad_row: skip``) or fail the run
(``fail``). Nothing here imports torch.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail.errors import DataError
from guardrail.samples import Sample
from guardrail.training.data import LoadedData, RowIssue, load_examples

__all__ = [
    "DataSummary",
    "category_balance",
    "check_summaries",
    "format_balance",
    "issue_kind",
    "label_balance",
    "summarize",
    "validate_stages",
]

log = logging.getLogger("guardrail.training")

#: Stages whose default data is the output of an earlier stage (validated only when overridden).
_DERIVED = {"augment": "sample", "rl": "augment"}

_KINDS = (
    (re.compile(r"^contradiction"), "target contradicts labels"),
    (re.compile(r"^image file not found"), "image missing"),
    (re.compile(r"^cannot read image"), "image unreadable"),
    (re.compile(r"<image> placeholder"), "image count mismatch"),
    (re.compile(r"not valid JSON|must be a JSON object"), "not a JSON object"),
    (re.compile(r"^unknown row format"), "unknown row format"),
    (re.compile(r"^duplicate id"), "duplicate id"),
    (re.compile(r"categor"), "categories missing or unknown"),
    (re.compile(r"target|assistant text"), "target missing or malformed"),
    (re.compile(r"label"), "labels missing or unknown"),
    (re.compile(r"chat-template token"), "chat-template token in text"),
    (re.compile(r"empty|no request"), "empty text"),
)


def issue_kind(reason: str) -> str:
    """A short category for a bad row's reason (what the summary counts)."""
    for pattern, kind in _KINDS:
        if pattern.search(reason):
            return kind
    return "other"


def label_balance(samples: Iterable[Sample]) -> dict[str, dict[str, int]]:
    """``task -> label -> count`` over ``samples``; the response task counts ``no response`` too."""
    out: dict[str, Counter[str]] = {"request": Counter(), "response": Counter()}
    for s in samples:
        out["request"][s.request_label or "none"] += 1
        out["response"][s.response_label or "no response"] += 1
        if s.refusal_label is not None:
            out.setdefault("refusal", Counter())[s.refusal_label] += 1
    order = ("harmful", "unharmful", "refusal", "compliance", "no response", "none")
    rank = {label: i for i, label in enumerate(order)}
    return {
        task: dict(sorted(c.items(), key=lambda kv: (rank.get(kv[0], len(order)), kv[0])))
        for task, c in out.items()
        if c
    }


def category_balance(samples: Iterable[Sample]) -> dict[str, int]:
    """``code -> samples`` naming it (most frequent first); empty when no sample names one."""
    counts: Counter[str] = Counter(c for s in samples for c in (s.categories or ()))
    return dict(counts.most_common())


def format_balance(balance: Mapping[str, Mapping[str, int]]) -> list[str]:
    """One line per task: ``request: harmful 8 (50.0%), unharmful 8 (50.0%)``."""
    lines = []
    for task, counts in balance.items():
        total = sum(counts.values()) or 1
        shown = ", ".join(f"{label} {n} ({100 * n / total:.1f}%)" for label, n in counts.items())
        lines.append(f"{task}: {shown}")
    return lines


@dataclass(frozen=True)
class DataSummary:
    """What one stage's data holds (see the module docstring)."""

    stage: str
    files: tuple[str, ...]
    profile: str
    require_target: bool
    rows: int
    samples: int
    labels: Mapping[str, Mapping[str, int]]
    modalities: Mapping[str, int]
    images: int
    dropped: Mapping[str, int]
    issues: tuple[RowIssue, ...] = field(default=())
    #: samples per harm category (training on a policy)
    categories: Mapping[str, int] = field(default_factory=dict)

    @property
    def contradictions(self) -> tuple[RowIssue, ...]:
        return tuple(i for i in self.issues if i.contradiction)

    @property
    def images_missing(self) -> int:
        return self.dropped.get("image missing", 0)

    def lines(self, show_issues: int = 10) -> list[str]:
        need = ", targets required" if self.require_target else ""
        out = [
            f"{self.stage} data: {', '.join(self.files)} (profile {self.profile}{need})",
            f"  rows {self.rows}, usable samples {self.samples}, dropped {len(self.issues)}",
        ]
        out += [f"  {line}" for line in format_balance(self.labels)]
        if self.categories:
            out.append("  categories: " + ", ".join(f"{k} {v}" for k, v in self.categories.items()))
        out.append("  modality: " + ", ".join(f"{k} {v}" for k, v in self.modalities.items()))
        out.append(f"  images: {self.images} in usable samples, {self.images_missing} missing")
        if self.dropped:
            out.append("  dropped: " + ", ".join(f"{k} {v}" for k, v in self.dropped.items()))
            out += [f"    {i}" for i in self.issues[:show_issues]]
            if len(self.issues) > show_issues:
                out.append(f"    ... and {len(self.issues) - show_issues} more")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "files": list(self.files),
            "profile": self.profile,
            "rows": self.rows,
            "samples": self.samples,
            "labels": {k: dict(v) for k, v in self.labels.items()},
            "modalities": dict(self.modalities),
            "images": self.images,
            "dropped": dict(self.dropped),
            "contradictions": len(self.contradictions),
            "categories": dict(self.categories),
        }


def summarize(
    stage: str, loaded: LoadedData, files: Sequence[str], profile: str, require_target: bool
) -> DataSummary:
    """The :class:`DataSummary` of what :func:`~guardrail.training.data.load_examples` read."""
    modalities = Counter(s.modality for s in loaded.examples)
    dropped = Counter(issue_kind(i.reason) for i in loaded.issues)
    return DataSummary(
        stage=stage,
        files=tuple(files),
        profile=profile,
        require_target=require_target,
        rows=loaded.rows,
        samples=len(loaded.examples),
        labels=label_balance(loaded.examples),
        modalities={k: modalities[k] for k in ("text", "image", "text+image") if modalities[k]},
        images=sum(len(s.images) for s in loaded.examples),
        dropped=dict(dropped.most_common()),
        issues=tuple(loaded.issues),
        categories=category_balance(loaded.examples),
    )


def validate_stages(recipe: Mapping[str, Any], stages: Sequence[str]) -> list[DataSummary]:
    """Read the user data of ``stages`` of ``recipe`` (resolved as :func:`run_pipeline` does)
    and summarise it; each distinct (files, profile, options) set is read once."""
    from guardrail.training.recipe import stage_config

    summaries: list[DataSummary] = []
    seen: set[tuple] = set()
    for stage in stages:
        derived = _DERIVED.get(stage)
        section = recipe.get(stage) or {}
        if derived is not None and (derived in stages or "data" not in section):
            continue  # reads an earlier stage's output
        config = stage_config(recipe, stage)
        if not getattr(config, "data", None):
            continue
        need_target = stage == "sft"
        key = (tuple(config.data), config.profile, config.data_format, config.image_root, need_target,
               config.max_samples, config.policy)  # fmt: skip
        if key in seen:
            continue
        seen.add(key)
        config.require_data()
        missing = [p for p in config.data if not _is_file(p)]
        if missing:
            raise DataError(f"{stage}.data: file(s) not found: {', '.join(missing)}")
        quiet = _Quiet()
        log.addFilter(quiet)
        try:
            loaded = load_examples(
                config.data,
                profile=config.get_profile(),
                data_format=config.data_format,
                image_root=config.image_root,
                on_bad_row="skip",
                require_target=need_target,
                max_samples=config.max_samples,
                allow_contradictions=True,
            )
        finally:
            log.removeFilter(quiet)
        summaries.append(summarize(stage, loaded, config.data, config.profile, need_target))
    return summaries


def check_summaries(summaries: Sequence[DataSummary], on_bad_row: Mapping[str, str]) -> None:
    """Raise :class:`~guardrail.errors.DataError` for contradictions, and for bad rows of a stage
    whose ``on_bad_row`` is ``fail``."""
    problems = []
    for s in summaries:
        if s.contradictions:
            problems.append(
                f"{s.stage}: {len(s.contradictions)} row(s) whose target contradicts their labels "
                "(SFT would learn one answer and RL reward the other):"
            )
            problems += [f"  {i}" for i in s.contradictions[:20]]
        elif s.issues and on_bad_row.get(s.stage) == "fail":
            problems.append(f"{s.stage}: {len(s.issues)} bad row(s) and on_bad_row is fail:")
            problems += [f"  {i}" for i in s.issues[:20]]
    if problems:
        raise DataError("the data is not usable as it is:\n" + "\n".join(problems))


class _Quiet(logging.Filter):
    """Hide the loader's per-row warnings: the summary lists the bad rows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("skipping bad row", "skipped ", "... "))


def _is_file(path: str) -> bool:
    return Path(path).is_file()
