"""Reward functions for GRPO, as plain callables with TRL's signature.

TRL calls each reward function as ``f(prompts=..., completions=..., completion_ids=...,
**columns)`` where ``columns`` are the data set's other columns, one value per completion
(here ``request_label`` and ``response_label``). Completions are strings, or for chat prompts
lists holding one assistant message; both are accepted. Every function returns one float per
completion.

The rewards of GuardReasoner-VL (paper, section 2; ``docs/training.md``):

- :func:`format_reward`: ``I_format``, 1.0 when the completion is ``<think>reasoning</think>``
  then ``<result>labels</result>`` (nothing else around them), else 0.0.
- :func:`accuracy_reward`: ``0.5 * r_prompt + 0.5 * r_response``, each 1 for a correct label.
  A sample without a response expects ``Response: None`` (or ``unharmful``, or no response
  label at all).
- :func:`safety_reward`: ``r_safety = I_format * accuracy``.
- :func:`length_aware_safety_reward`: ``r = (r_safety - 1) / min(l_norm, beta)^2``: 0 for a
  fully correct, well-formed answer; a wrong one is penalised less the longer it reasoned, up to
  the cut-off ``beta`` (1 for GuardReasoner-VL, 1/6 for the Eco models). ``l_norm`` is the
  completion length (tokens from ``completion_ids``; characters when TRL's ids are not given)
  divided by ``max_length`` and capped at 1. The denominator is ``max(min(l_norm, beta),
  floor)^2`` so that a (near) empty completion gets a large but finite penalty
  (``-1 / floor^2``, -400 with the default floor 0.05) instead of a division by zero.

Guards trained on your own policy (``policy:`` in the recipe) also name the violated categories
(a ``Categories:`` line in the result block), and the data set gives TRL a ``categories`` column
(the gold codes; empty for a safe sample). Then:

- :func:`category_score` / :func:`category_reward`: ``r_category``, the Jaccard overlap of the
  predicted and the gold codes, ``|P & G| / |P | G|`` (1 when both are empty). A wrong extra
  category lowers it, a missing one lowers it, and a harmful sample answered with no category
  (``Categories: None``, or no line at all) gets 0; a safe sample gets 1 only with no category.
  Codes compare as the policy spells them (``s1`` is ``S1``); a code the policy does not have
  is always wrong.
- :func:`accuracy_reward` becomes ``(r_prompt + r_response + r_category) / 3``, so
  :func:`safety_reward` and the length-aware reward score the categories too (a perfect answer
  still gets ``r_safety = 1``; a right label with a wrong category gets at most 2/3).

Rows without the ``categories`` column (no policy) keep the paper's formulas exactly.

Examples (``ok`` is a correct, well-formed answer for a harmful request without a response)::

    >>> ok = "<think>\\nIt asks for a weapon.\\n</think>\\n<result>\\nRequest: harmful\\nResponse: None\\n</result>"
    >>> bad = ok.replace("Request: harmful", "Request: unharmful")
    >>> format_reward([ok, "Request: harmful"])
    [1.0, 0.0]
    >>> accuracy_reward([ok, bad, "Request: harmful"], request_label=["harmful"] * 3, response_label=[None] * 3)
    [1.0, 0.5, 1.0]
    >>> safety_reward([ok, bad, "Request: harmful"], request_label=["harmful"] * 3, response_label=[None] * 3)
    [1.0, 0.5, 0.0]
    >>> reward = make_length_aware_safety_reward(beta=1.0, max_length=100)
    >>> reward([ok, bad, bad], request_label=["harmful"] * 3, response_label=[None] * 3,
    ...        completion_ids=[[0] * 50, [0] * 50, [0] * 100])
    [0.0, -2.0, -0.5]

With a policy (``profile`` trained on it; the gold ``categories`` column)::

    >>> from guardrail.policies import MLCOMMONS
    >>> prof = GuardReasonerVLProfile(trained_policy=MLCOMMONS)
    >>> right = prof.answer("It asks for a weapon.", {"request": "harmful"}, ["S9"])
    >>> extra = prof.answer("It asks for a weapon.", {"request": "harmful"}, ["S9", "S1"])
    >>> none = prof.answer("It asks for a weapon.", {"request": "harmful"}, [])
    >>> accuracy_reward([right, extra, none], request_label=["harmful"] * 3, response_label=[None] * 3,
    ...                 categories=[["S9"]] * 3, profile=prof)
    [1.0, 0.8333333333333334, 0.6666666666666666]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from guardrail.profiles import GuardReasonerVLProfile, ModerationInput, Profile
from guardrail.profiles.base import label_regex

__all__ = [
    "REWARDS",
    "RewardFunc",
    "accuracy_reward",
    "build_reward_funcs",
    "category_reward",
    "category_score",
    "completion_text",
    "format_reward",
    "is_well_formed",
    "label_scores",
    "length_aware_safety_reward",
    "make_length_aware_safety_reward",
    "parsed_reward",
    "safety_reward",
]

RewardFunc = Callable[..., list[float]]

_VL = GuardReasonerVLProfile()
_WELL_FORMED = re.compile(
    r"\A\s*<think>(?P<think>(?:(?!<think>|</think>|<result>|</result>).)*)</think>\s*"
    r"<result>(?P<result>(?:(?!<think>|</think>|<result>|</result>).)*)</result>\s*\Z",
    re.DOTALL,
)
_REQUEST = label_regex("request")


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or a chat completion (list of messages / one message)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return completion_text(completion.get("content", ""))
    if isinstance(completion, Sequence):
        parts = []
        for item in completion:
            if isinstance(item, Mapping) and "role" in item:
                parts.append(completion_text(item.get("content", "")))
            elif isinstance(item, Mapping):
                parts.append(str(item.get("text", "") or ""))
            else:
                parts.append(str(item))
        return "".join(parts)
    return str(completion)


def is_well_formed(text: str) -> bool:
    """``I_format``: reasoning inside one ``<think></think>``, then the labels inside one
    ``<result></result>`` (a ``Request:`` label at least), and nothing outside them.

    >>> is_well_formed("<think>\\nfine\\n</think>\\n<result>\\nRequest: unharmful\\nResponse: None\\n</result>")
    True
    >>> is_well_formed("<think></think><result>\\nRequest: unharmful\\n</result>")
    False
    """
    m = _WELL_FORMED.match(text)
    if not m or not m.group("think").strip():
        return False
    return _REQUEST.search(m.group("result")) is not None


def label_scores(
    text: str, request_label: str | None, response_label: str | None, *, profile: Profile | None = None
) -> tuple[float, float]:
    """``(r_prompt, r_response)`` in {0, 1} for one completion against the gold labels.

    The labels are read as :class:`~guardrail.Guard` reads them (the profile's parser). With no
    response (``response_label`` None) a predicted ``None``/``unharmful`` or a missing label is
    correct.
    """
    prof = profile or _VL
    has_response = response_label is not None
    item = ModerationInput(prompt="x", response="x" if has_response else None)
    labels = prof.parse(text, item).labels
    r_prompt = 1.0 if request_label is not None and labels.get("request") == request_label else 0.0
    predicted = labels.get("response")
    if has_response:
        r_response = 1.0 if predicted == response_label else 0.0
    else:
        r_response = 1.0 if predicted in (None, "unharmful") else 0.0
    return r_prompt, r_response


def category_score(text: str, categories: Sequence[str], *, profile: Profile | None = None) -> float:
    """``r_category`` of one completion: the Jaccard overlap of the codes its ``Categories:``
    line names and the gold ``categories`` (1.0 when both are empty); see the module docstring.

    ``profile`` must be the one trained on the policy (its ``trained_policy`` reads the line and
    spells the codes)."""
    prof = profile or _VL
    policy = prof.trained_policy
    item = ModerationInput(prompt="x")
    predicted = prof.parse(text, item).categories
    if policy is not None:
        predicted, gold = set(policy.canonical(predicted)), set(policy.canonical(list(categories)))
    else:
        predicted, gold = set(predicted), set(categories)
    if not predicted and not gold:
        return 1.0
    return len(predicted & gold) / len(predicted | gold)


def _column(kwargs: Mapping[str, Any], name: str, n: int) -> list[Any]:
    values = kwargs.get(name)
    if values is None:
        return [None] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"reward column {name!r} has {len(values)} values for {n} completions")
    return values


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 for a well-formed completion (see :func:`is_well_formed`), else 0.0."""
    return [1.0 if is_well_formed(completion_text(c)) else 0.0 for c in completions]


def parsed_reward(
    completions: Sequence[Any], request_label: Sequence[str | None] | None = None, **kwargs: Any
) -> list[float]:
    """1.0 when the guard's parser reads every label the sample needs (the request's; the
    response's when the sample has one), else 0.0: the parse rate, logged during RL."""
    n = len(completions)
    responses = _column(kwargs, "response_label", n)
    prof = kwargs.get("profile") or _VL
    out = []
    for c, res in zip(completions, responses, strict=True):
        item = ModerationInput(prompt="x", response="x" if res is not None else None)
        out.append(1.0 if prof.parse(completion_text(c), item).ok else 0.0)
    return out


def accuracy_reward(
    completions: Sequence[Any], request_label: Sequence[str | None] | None = None, **kwargs: Any
) -> list[float]:
    """``0.5 * r_prompt + 0.5 * r_response`` (format not required); with a ``categories``
    column (training on a policy), ``(r_prompt + r_response + r_category) / 3``."""
    n = len(completions)
    requests = _column({"request_label": request_label}, "request_label", n)
    responses = _column(kwargs, "response_label", n)
    categories = _column(kwargs, "categories", n)
    profile = kwargs.get("profile")
    out = []
    for c, req, res, cats in zip(completions, requests, responses, categories, strict=True):
        text = completion_text(c)
        rp, rr = label_scores(text, req, res, profile=profile)
        if cats is None:
            out.append(0.5 * rp + 0.5 * rr)
        else:
            out.append((rp + rr + category_score(text, cats, profile=profile)) / 3)
    return out


def category_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """``r_category`` per completion (see :func:`category_score`); 1.0 for rows without a
    ``categories`` column. Logged with weight 0 when training on a policy."""
    n = len(completions)
    categories = _column(kwargs, "categories", n)
    profile = kwargs.get("profile")
    return [
        1.0 if cats is None else category_score(completion_text(c), cats, profile=profile)
        for c, cats in zip(completions, categories, strict=True)
    ]


def safety_reward(
    completions: Sequence[Any], request_label: Sequence[str | None] | None = None, **kwargs: Any
) -> list[float]:
    """``r_safety = I_format * (0.5 * r_prompt + 0.5 * r_response)``."""
    fmt = format_reward(completions)
    acc = accuracy_reward(completions, request_label, **kwargs)
    return [f * a for f, a in zip(fmt, acc, strict=True)]


def length_aware_safety_reward(
    completions: Sequence[Any],
    request_label: Sequence[str | None] | None = None,
    completion_ids: Sequence[Sequence[int]] | None = None,
    *,
    beta: float = 1.0,
    max_length: int = 4096,
    floor: float = 0.05,
    **kwargs: Any,
) -> list[float]:
    """``(r_safety - 1) / max(min(l_norm, beta), floor)^2`` (see the module docstring)."""
    if not 0 < beta <= 1:
        raise ValueError("beta must be in (0, 1]")
    if not 0 < floor <= beta:
        raise ValueError("floor must be in (0, beta]")
    if max_length < 1:
        raise ValueError("max_length must be at least 1")
    safety = safety_reward(completions, request_label, **kwargs)
    if completion_ids is not None:
        lengths = [len(ids) for ids in completion_ids]
        if len(lengths) != len(safety):
            raise ValueError(f"{len(lengths)} completion_ids for {len(safety)} completions")
    else:
        lengths = [len(completion_text(c)) for c in completions]
    out = []
    for r_safety, length in zip(safety, lengths, strict=True):
        l_norm = min(length / max_length, 1.0)
        denominator = max(min(l_norm, beta), floor) ** 2
        out.append((r_safety - 1.0) / denominator)
    return out


def make_length_aware_safety_reward(
    beta: float = 1.0, max_length: int = 4096, floor: float = 0.05, *, profile: Profile | None = None
) -> RewardFunc:
    """:func:`length_aware_safety_reward` with its settings bound (TRL logs it by name)."""
    if not 0 < beta <= 1:
        raise ValueError("beta must be in (0, 1]")
    if not 0 < floor <= beta:
        raise ValueError("floor must be in (0, beta]")

    def length_aware_safety(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        if profile is not None:
            kwargs.setdefault("profile", profile)
        return length_aware_safety_reward(
            completions, beta=beta, max_length=max_length, floor=floor, **kwargs
        )

    length_aware_safety.__doc__ = (
        f"Length-aware safety reward, beta={beta:g}, max_length={max_length}, floor={floor:g}."
    )
    return length_aware_safety


def _bind_profile(func: RewardFunc, name: str, profile: Profile | None) -> RewardFunc:
    if profile is None:
        return func

    def bound(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        kwargs.setdefault("profile", profile)
        return func(completions, **kwargs)

    bound.__name__ = bound.__qualname__ = name
    bound.__doc__ = func.__doc__
    return bound


#: Reward names usable in recipes (``rl.rewards``).
REWARDS: dict[str, str] = {
    "format": "I_format: <think>...</think><result>...</result>",
    "accuracy": "0.5 * r_prompt + 0.5 * r_response; with a policy (r_prompt + r_response + r_category) / 3",
    "category": "r_category: Jaccard overlap of the predicted and the gold categories (policy training)",
    "safety": "I_format * accuracy",
    "length_aware_safety": "(r_safety - 1) / min(l_norm, beta)^2 (the paper's reward)",
    "parsed": "1 when the guard's parser reads every label the sample needs (the parse rate)",
}


def build_reward_funcs(
    names: Sequence[str],
    *,
    beta: float = 1.0,
    max_length: int = 4096,
    floor: float = 0.05,
    profile: Profile | None = None,
) -> list[RewardFunc]:
    """The reward callables for ``names`` (keys of :data:`REWARDS`), in order."""
    plain = {
        "format": format_reward,
        "accuracy": accuracy_reward,
        "safety": safety_reward,
        "parsed": parsed_reward,
        "category": category_reward,
    }
    out: list[RewardFunc] = []
    for name in names:
        if name == "length_aware_safety":
            out.append(make_length_aware_safety_reward(beta, max_length, floor, profile=profile))
        elif name in plain:
            out.append(
                _bind_profile(plain[name], name, profile)
                if profile is not None
                else _named(plain[name], name)
            )
        else:
            raise ValueError(f"unknown reward {name!r}; known: {', '.join(REWARDS)}")
    return out


def _named(func: RewardFunc, name: str) -> RewardFunc:
    if func.__name__ == name:
        return func

    def named(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return func(completions, **kwargs)

    named.__name__ = named.__qualname__ = name
    return named
