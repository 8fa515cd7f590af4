"""Prefix caching for the local backends: never pay twice for the guard's instruction.

Every prompt of a profile starts with the same tokens: the instruction and the template up to
the user's text (:meth:`guardrail.profiles.Profile.fixed_prefix`, handed to backends as
:attr:`RenderedPrompt.prefix <guardrail.profiles.RenderedPrompt>`). A backend computes that
prefix's key/value cache once and starts each check from it, evaluating only the tokens after.

Correctness never rests on the hint: the reused length is the longest common start of the
prefix's token ids and each prompt's own ids (tokenization may merge the prefix's last
characters with the user's first ones), capped so that at least one token of each prompt is
evaluated. Only text before the first image can be reused (images always follow the prefix).

- transformers: :class:`PrefixStore` keeps, per loaded model, the prefix's keys and values
  (one sequence); a call starts from a cache holding the first ``k`` of them for every row.
  Rows are laid out ``[prefix][padding][rest of the prompt]``: the shared prefix keeps the
  same positions in every row, the padding in between is masked out and skipped by the
  position ids (see ``TransformersBackend._layout``).
- llama.cpp: the context itself is the cache. :class:`ResidentTokens` remembers which token ids
  sit in the context's first cells; the next prompt drops only the cells after the common start
  (``llama_memory_seq_rm``) and evaluates the rest.

``prefix_cache=False`` on :meth:`Guard.from_pretrained <guardrail.Guard.from_pretrained>`,
:meth:`Guard.from_gguf <guardrail.Guard.from_gguf>` or the backends turns it off.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any

from guardrail.backends.base import prompt_tokens
from guardrail.profiles.base import ImageSlot, RenderedPrompt

__all__ = ["PrefixStore", "ResidentTokens", "common_length", "leading_text_ids", "prefix_ids", "reuse_length"]


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading token ids ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def prefix_ids(
    prompt: RenderedPrompt,
    encode_text: Callable[[str], Sequence[int]],
    special_id: Callable[[str], int],
    bos: int | None,
) -> tuple[int, ...]:
    """The token ids of ``prompt``'s fixed prefix (its :attr:`prefix` hint), as the backend
    tokenizes prompts; () without a hint. Stops at an image slot (never part of a prefix)."""
    if not prompt.prefix:
        return ()
    head = RenderedPrompt(parts=prompt.prefix, images=(), messages=None, add_bos=prompt.add_bos)
    ids: list[int] = []
    for piece in prompt_tokens(head, encode_text, special_id, bos):
        if isinstance(piece, ImageSlot):
            break
        ids.extend(piece)
    return tuple(ids)


def leading_text_ids(parts: Sequence[Any]) -> tuple[int, ...]:
    """The token ids before the first non-token part (an image) of an encoded prompt."""
    first = parts[0] if parts else ()
    return tuple(first) if isinstance(first, tuple) else ()


def reuse_length(prefix: Sequence[int], rows: Sequence[Sequence[int]], minimum: int = 1) -> int:
    """How many leading tokens every row can take from ``prefix``'s cache: the common start of
    ``prefix`` and each row, at most each row's length minus one (a prompt's last token is always
    evaluated: its logits are the next token's). 0 when below ``minimum``."""
    if not prefix or not rows:
        return 0
    k = min(min(common_length(prefix, ids), len(ids) - 1) for ids in rows)
    return k if k >= minimum else 0


class PrefixStore:
    """Computed prefix states by token ids, least recently used dropped beyond ``max_entries``
    (one entry per profile or system prompt in use). Not locked: the backend's lock guards it."""

    def __init__(self, compute: Callable[[tuple[int, ...]], Any], max_entries: int = 4):
        self._compute = compute
        self._max = max_entries
        self._entries: collections.OrderedDict[tuple[int, ...], Any] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, ids: tuple[int, ...]) -> Any:
        """The state of ``ids``, computed on first use."""
        entry = self._entries.get(ids)
        if entry is not None:
            self._entries.move_to_end(ids)
            self.hits += 1
            return entry
        self.misses += 1
        entry = self._compute(ids)
        self._entries[ids] = entry
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return entry

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class ResidentTokens:
    """The token ids held by a llama.cpp context's first cells (sequence 0, positions 0...),
    as far as this backend knows; :meth:`forget` when that is no longer sure."""

    def __init__(self) -> None:
        self.ids: tuple[int, ...] = ()
        self.reused = 0  # tokens taken from the context over the backend's life
        self.evaluated = 0  # prompt tokens evaluated (before images)

    def forget(self) -> None:
        self.ids = ()

    def keep(self, ids: Sequence[int]) -> int:
        """How many leading tokens of ``ids`` (a prompt's text before any image) can stay in the
        context: the common start, leaving at least one token to evaluate."""
        return min(common_length(self.ids, ids), max(len(ids) - 1, 0))
