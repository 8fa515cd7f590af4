"""Long texts: check them in overlapping windows instead of truncating them.

A guard model reads a bounded context. guardrail never truncates a text to fit it: a text over
``InputLimits.max_text_chars`` raises :class:`~guardrail.errors.TextTooLongError`. To check
longer documents, :func:`moderate_windows` splits them into overlapping windows, checks every
window in one batched call and blocks if any window is harmful::

    from guardrail.windows import moderate_windows
    verdict = moderate_windows(guard, prompt=long_document, window_chars=6000, overlap_chars=600)

- The request (prompt) is checked window by window, with the images (if any) in every window.
- A long response is checked window by window, each window together with the prompt's last
  window (the part of the request closest to the answer).
- The verdict: ``request_harmful`` / ``response_harmful`` are True if any window says so; a
  window decided by the failure policy decides the whole verdict the same way (a blocked window
  blocks everything); ``reasoning`` and ``raw_output`` are the deciding window's (the first
  harmful one, else the first); ``latency_ms`` is the whole call, ``output_tokens`` the sum.

Choose ``window_chars`` for your model's context: about 3-4 characters per token, minus the
system prompt (~120 tokens for GuardReasoner-VL), the images and ``max_new_tokens``. The overlap
keeps a harmful sentence that straddles two windows whole in at least one of them, as long as
it is shorter than the overlap.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from guardrail.errors import ConfigurationError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.guard import Guard
    from guardrail.verdict import Verdict

__all__ = ["amoderate_windows", "moderate_windows", "split_windows"]


def split_windows(text: str, window_chars: int, overlap_chars: int = 0) -> list[str]:
    """Split ``text`` into windows of at most ``window_chars`` characters, consecutive windows
    sharing ``overlap_chars`` characters. Every character is in at least one window; windows end
    at whitespace when one is near, so words are not cut.

    >>> split_windows("abcdefghij", 4, 1)
    ['abcd', 'defg', 'ghij']
    >>> split_windows("short", 100)
    ['short']
    """
    if window_chars < 1 or overlap_chars < 0 or overlap_chars >= window_chars:
        raise ConfigurationError("need window_chars >= 1 and 0 <= overlap_chars < window_chars")
    if len(text) <= window_chars:
        return [text]
    windows, start = [], 0
    while True:
        end = min(start + window_chars, len(text))
        if end < len(text):
            # end at whitespace in the last tenth of the window, if there is some
            cut = text.rfind(" ", start + window_chars - window_chars // 10, end)
            if cut > start + overlap_chars:
                end = cut + 1
        windows.append(text[start:end])
        if end >= len(text):
            return windows
        start = end - overlap_chars


def _items(prompt: str | None, response: str | None, images: Any, window_chars: int, overlap_chars: int):
    if prompt is None and response is None and not images:
        raise InputError("nothing to moderate: give a prompt, a response or images")
    request_windows = split_windows(prompt, window_chars, overlap_chars) if prompt is not None else [None]
    items: list[dict[str, Any]] = [{"prompt": w, "images": images} for w in request_windows]
    kinds = ["request"] * len(items)
    if response is not None:
        context = request_windows[-1]
        for w in split_windows(response, window_chars, overlap_chars):
            items.append({"prompt": context, "response": w, "images": images})
            kinds.append("response")
        if prompt is None and not images:
            items, kinds = items[1:], kinds[1:]  # no request at all: only response windows
    return items, kinds


def _combine(verdicts: list[Verdict], kinds: list[str], started: float) -> Verdict:
    blocked_by_policy = [v for v in verdicts if v.decided_by == "policy" and not v.allowed]
    harmful_by_model = [v for v in verdicts if v.decided_by == "model" and v.harmful]
    if blocked_by_policy:  # fail closed: one window the guard could not judge blocks all
        deciding, harmful, allowed = blocked_by_policy[0], blocked_by_policy[0].harmful, False
    elif harmful_by_model:
        deciding, harmful, allowed = harmful_by_model[0], True, False
    else:
        deciding, harmful, allowed = verdicts[0], False, True

    def any_of(field: str, only: str | None) -> bool | None:
        known = [
            getattr(v, field)
            for v, k in zip(verdicts, kinds, strict=True)
            if (only is None or k == only) and getattr(v, field) is not None
        ]
        return any(known) if known else None

    tokens = [v.output_tokens for v in verdicts if v.output_tokens is not None]
    return deciding.model_copy(
        update={
            "request_harmful": any_of("request_harmful", None),
            "response_harmful": any_of("response_harmful", "response"),
            "response_refusal": any_of("response_refusal", "response"),
            "harmful": harmful,
            "allowed": allowed,
            "latency_ms": (time.perf_counter() - started) * 1000.0,
            "output_tokens": sum(tokens) if tokens else None,
        }
    )


def moderate_windows(
    guard: Guard,
    prompt: str | None = None,
    response: str | None = None,
    images: Any = None,
    *,
    window_chars: int = 6000,
    overlap_chars: int = 600,
) -> Verdict:
    """Check a request (and response) of any length in overlapping windows; see the module."""
    started = time.perf_counter()
    items, kinds = _items(prompt, response, images, window_chars, overlap_chars)
    return _combine(guard.moderate_batch(items), kinds, started)


async def amoderate_windows(
    guard: Guard,
    prompt: str | None = None,
    response: str | None = None,
    images: Any = None,
    *,
    window_chars: int = 6000,
    overlap_chars: int = 600,
) -> Verdict:
    """Async twin of :func:`moderate_windows`."""
    started = time.perf_counter()
    items, kinds = _items(prompt, response, images, window_chars, overlap_chars)
    return _combine(await guard.amoderate_batch(items), kinds, started)
