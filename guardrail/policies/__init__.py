"""Policies: the harm categories a guard checks for and what the app does about each.

>>> from guardrail import Policy, Category
>>> from guardrail.policies import MLCOMMONS
>>> MLCOMMONS.get("S9").name
'Indiscriminate Weapons'
>>> MLCOMMONS.with_actions(S6="flag").action("S6")
'flag'

See docs/policies.md: which guard families take a policy, how a verdict's ``categories`` and
``allowed`` follow from it, and the mapping to OpenAI moderation categories.
"""

from guardrail.policies.builtin import (
    BUILTIN_POLICIES,
    MLCOMMONS,
    MLCOMMONS_TO_OPENAI,
    OPENAI_MODERATION,
    OPENAI_MODERATION_KEYS,
    OPENAI_TO_MLCOMMONS,
    get_policy,
    resolve_policy,
    to_openai_categories,
)
from guardrail.policies.model import Action, Category, Policy, PolicyError

__all__ = [
    "Action",
    "BUILTIN_POLICIES",
    "Category",
    "MLCOMMONS",
    "MLCOMMONS_TO_OPENAI",
    "OPENAI_MODERATION",
    "OPENAI_MODERATION_KEYS",
    "OPENAI_TO_MLCOMMONS",
    "Policy",
    "PolicyError",
    "get_policy",
    "resolve_policy",
    "to_openai_categories",
]
