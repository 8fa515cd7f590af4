"""Training on your own policy: the categories of training rows and the ``Categories:`` line.

With a ``policy`` (:class:`~guardrail.training.config.DataConfig`), the profile carries it as
``trained_policy`` and :func:`~guardrail.training.data.load_examples` passes every row through
:func:`with_policy`: its categories are checked against the policy and its target gets the
``Categories:`` line the guard writes. Problems are bad rows of the loader (``_BadRow``) or
contradictions, reported like every other; see ``docs/training.md`` (*Train on your own policy*).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from guardrail.profiles import Profile
from guardrail.profiles.base import read_categories
from guardrail.samples import Sample
from guardrail.training.data import _BadRow, _Contradiction

__all__ = ["row_categories", "target_categories", "with_policy"]


def row_categories(raw: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The row's ``categories`` (codes of the harm categories it violates); None when absent."""
    value = raw.get("categories")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        raise _BadRow('\'categories\' must be a list of category codes, e.g. ["S1", "S9"]')
    return tuple(dict.fromkeys(c.strip() for c in value))


def target_categories(target: str) -> tuple[str, ...] | None:
    """The codes of a target's ``Categories:`` line (in its result block); None without one."""
    block = target.rsplit("<result>", 1)[-1]
    if not _CATEGORIES_LINE.search(block):
        return None
    return read_categories(block)


_CATEGORIES_LINE = re.compile(r"(?im)^[ \t*#>-]*categories\s*:")


def with_policy(ex: Sample, prof: Profile) -> Sample:
    """A sample for a guard trained on ``prof.trained_policy``: its categories checked against
    the policy (spelled as the policy spells them) and its target given the ``Categories:`` line.

    The categories come from the row's ``categories`` field, or from a ``Categories:`` line the
    target already has (both: they must agree). A row whose labels say harmful must name at
    least one category; a row with no harmful label names none (``Categories: None``); a code
    the policy does not have makes the row bad.
    """
    policy = prof.trained_policy
    assert policy is not None
    gold = ex.categories
    said = target_categories(ex.target) if ex.target is not None else None
    if said is not None:
        if gold is not None and set(policy.canonical(said)) != set(policy.canonical(gold)):
            raise _Contradiction(
                f"contradiction: the answer text says 'Categories: {', '.join(said) or 'None'}' "
                f"but the row's categories are {list(gold)}"
            )
        gold = said if gold is None else gold
    harmful = any(v == "harmful" for t, v in ex.labels.items() if t in ("request", "response"))
    unknown = policy.unknown(gold or ())
    if unknown:
        named = f"policy {policy.name}" if policy.name else "policy"
        raise _BadRow(
            f"unknown category code(s) {', '.join(unknown)}: the {named} has {', '.join(policy.codes)}"
        )
    if harmful and not gold:
        raise _BadRow(
            "no categories for a harmful row: training on a policy needs the codes it violates "
            "('categories': [...])"
        )
    if gold and not harmful:
        raise _BadRow(
            f"categories {list(gold)} given for a row whose labels are not harmful (a safe row names none)"
        )
    codes = policy.canonical(gold or ())
    target = ex.target
    if target is not None:
        target = _set_categories_line(target, prof.categories_text(codes))
    return replace(ex, categories=codes, target=target)


def _set_categories_line(target: str, line: str) -> str:
    """``target`` with its result block's ``Categories:`` line replaced by ``line`` (which starts
    with a newline), or ``line`` added after the last label line (before ``</result>``)."""
    close = target.lower().rfind("</result>")
    if close < 0:
        return target  # not in the guard's format: reported as a bad target where one is needed
    start = target.lower().rfind("<result>", 0, close)
    start = start + len("<result>") if start >= 0 else 0
    head, block, tail = target[:start], target[start:close], target[close:]
    block = _CATEGORIES_LINE_FULL.sub("", block)
    stripped = block.rstrip()
    return head + stripped + line + block[len(stripped) :] + tail


_CATEGORIES_LINE_FULL = re.compile(r"(?im)\n?^[ \t*#>-]*categories\s*:[^\n]*")
