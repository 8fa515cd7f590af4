"""Profiles: each guard model family's text format, both ways.

A profile renders prompts and parses outputs (what a guard does at inference) and also reads and
writes the same texts in data: :func:`parse_user_text` reads the ``Human user:`` text of the
reference data files, :meth:`Profile.answer` writes an answer (training targets, scripted
outputs), and :mod:`guardrail.profiles.labels` holds the label vocabulary of the tasks.

=====================  =========================================  ==============================
name                   models                                     output
=====================  =========================================  ==============================
``guardreasoner-vl``   GuardReasoner-VL 3B/7B and Eco (Qwen2.5-VL) ``<think>`` + ``<result>``
``guardreasoner``      GuardReasoner 1B/3B/8B (Llama 3, text)     reasoning + ``Answers:``
``guardreasoner-omni`` GuardReasoner-Omni 3B/7B (Qwen2.5-Omni;    ``<think>`` + ``<result>``
                       text, image, video, audio)
``qwen3guard``         Qwen3Guard-Gen 0.6B/4B/8B (Qwen3, text)    ``Safety:`` + ``Categories:``
``gpt-oss-safeguard``  gpt-oss-safeguard 20b/120b (gpt-oss)       harmony: analysis + final JSON
``llama-guard-4``      Llama-Guard-4-12B (Llama 4, images)        ``safe`` / ``unsafe`` + codes
``llama-guard-3``      Llama-Guard-3-1B/-8B/-11B-Vision           ``safe`` / ``unsafe`` + codes
``shieldgemma-2``      shieldgemma-2-4b-it (Gemma 3, images)      P(Yes) per image x policy
=====================  =========================================  ==============================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guardrail.errors import ConfigurationError
from guardrail.policies import Policy, PolicyError
from guardrail.profiles.base import (
    ImageSlot,
    ModerationInput,
    ParsedOutput,
    Profile,
    RenderedPrompt,
    Special,
)
from guardrail.profiles.gpt_oss_safeguard import GptOssSafeguardProfile
from guardrail.profiles.guardreasoner import GUARDREASONER_INSTRUCTION, GuardReasonerProfile
from guardrail.profiles.guardreasoner_omni import GUARDREASONER_OMNI_INSTRUCTION, GuardReasonerOmniProfile
from guardrail.profiles.guardreasoner_vl import (
    GUARDREASONER_VL_INSTRUCTION,
    GuardReasonerVLProfile,
    parse_user_text,
)
from guardrail.profiles.labels import TASK_LABELS, TASKS, answer_labels, gold_label
from guardrail.profiles.llama_guard import LlamaGuard3Profile, LlamaGuard4Profile
from guardrail.profiles.qwen3guard import QWEN3GUARD_POLICY, Qwen3GuardProfile
from guardrail.profiles.shieldgemma2 import SHIELDGEMMA2_POLICY, ShieldGemma2Profile

__all__ = [
    "END_TOKENS",
    "GUARDREASONER_INSTRUCTION",
    "GUARDREASONER_OMNI_INSTRUCTION",
    "GUARDREASONER_VL_INSTRUCTION",
    "GptOssSafeguardProfile",
    "PROFILES",
    "QWEN3GUARD_POLICY",
    "Qwen3GuardProfile",
    "SHIELDGEMMA2_POLICY",
    "ShieldGemma2Profile",
    "GuardReasonerOmniProfile",
    "GuardReasonerProfile",
    "GuardReasonerVLProfile",
    "ImageSlot",
    "LlamaGuard3Profile",
    "LlamaGuard4Profile",
    "ModerationInput",
    "NEVER_GENERATED",
    "ParsedOutput",
    "Profile",
    "RenderedPrompt",
    "Special",
    "TASKS",
    "TASK_LABELS",
    "answer_labels",
    "effective_policy",
    "get_profile",
    "gold_label",
    "parse_user_text",
    "profile_for_gguf_architecture",
    "profile_for_model_type",
    "profile_options_for_model",
    "unknown_model_error",
]

PROFILES: dict[str, type[Profile]] = {
    GuardReasonerVLProfile.name: GuardReasonerVLProfile,
    GuardReasonerProfile.name: GuardReasonerProfile,
    Qwen3GuardProfile.name: Qwen3GuardProfile,
    GptOssSafeguardProfile.name: GptOssSafeguardProfile,
    LlamaGuard4Profile.name: LlamaGuard4Profile,
    LlamaGuard3Profile.name: LlamaGuard3Profile,
    GuardReasonerOmniProfile.name: GuardReasonerOmniProfile,
    ShieldGemma2Profile.name: ShieldGemma2Profile,
}

# Model identifiers -> profile name, for choosing a profile from a loaded model: each profile
# lists the Hugging Face `model_type` and GGUF `general.architecture` values it serves.
_MODEL_TYPES: dict[str, str] = {t: name for name, cls in PROFILES.items() for t in cls.model_types}
_GGUF_ARCHITECTURES: dict[str, str] = {
    a: name for name, cls in PROFILES.items() for a in cls.gguf_architectures
}

#: End-of-turn tokens of the built-in families (an output ends at any of them; a backend looks
#: them up by name, so one table serves Qwen and Llama vocabularies).
END_TOKENS: tuple[str, ...] = tuple(t for cls in PROFILES.values() for t in cls.end_tokens)
#: Tokens no guard generates (the vision tokens): backends ban them while decoding.
NEVER_GENERATED: tuple[str, ...] = tuple(t for cls in PROFILES.values() for t in cls.never_generated)

DEFAULT_PROFILE = "guardreasoner-vl"


def get_profile(profile: str | Profile | None = None, **options: Any) -> Profile:
    """Return a profile instance from a name (with options) or pass an instance through."""
    if isinstance(profile, Profile):
        if options:
            raise ConfigurationError("profile options given together with a profile instance")
        return profile
    name = profile or DEFAULT_PROFILE
    try:
        cls = PROFILES[name]
    except KeyError:
        raise ConfigurationError(f"unknown profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigurationError(f"bad options for profile {name!r}: {exc}") from exc


def effective_policy(profile: Profile, policy: Policy | None) -> Policy | None:
    """The policy a check with ``profile`` runs under: ``policy`` when the family renders
    policies (or the guard was trained on this policy: same codes, names and descriptions; the
    actions may differ), else the profile's default (its taxonomy or trained policy).

    Never ignores a policy silently: a fixed-prompt family given a policy it was not trained on
    raises :class:`~guardrail.policies.PolicyError` naming the families that take policies.
    """
    if policy is None:
        return profile.default_policy()
    if profile.takes_policy:
        return policy
    trained = profile.trained_policy
    if trained is not None and trained.same_prompt(policy):
        return policy
    default = profile.default_policy()
    if default is not None and default.same_prompt(policy):  # the family's taxonomy, other actions
        return policy
    takers = sorted(name for name, cls in PROFILES.items() if cls.takes_policy)
    families = ", ".join(takers) if takers else "none installed"
    what = (
        f"was trained on a different policy ({trained.name or ', '.join(trained.codes)}); change only "
        "the actions of that policy, or train on the new one"
        if trained is not None
        else "has a fixed prompt and was not trained on a policy"
    )
    raise PolicyError(
        f"the '{profile.name}' guard {what}. Families that render a policy given at run time: "
        f"{families}; or train a guard on your policy with guardrail.training (docs/policies.md)"
    )


def _by_name(name: Any) -> str | None:
    """A family named in a model's name or path (``meta-llama/Llama-Guard-3-1B``): Llama Guard 3
    shares the ``llama`` architecture with GuardReasoner, so only its name tells them apart."""
    text = str(name or "").lower().replace("_", "-").replace(" ", "-")
    for family in ("llama-guard-4", "llama-guard-3"):
        if family in text or family.replace("-guard-", "guard-") in text:
            return family
    if "shieldgemma-2" in text or "shieldgemma2" in text:  # its GGUF is a plain `gemma3`
        return ShieldGemma2Profile.name
    return None


def profile_for_model_type(model_type: str | None, config: Mapping[str, Any] | None = None) -> str | None:
    """The profile name for a Hugging Face ``model_type`` and config (None when unknown): the
    config's ``guardrail_profile``, a family named in ``_name_or_path``, else the model type."""
    if config and isinstance(config.get("guardrail_profile"), str):
        return config["guardrail_profile"]
    return _by_name((config or {}).get("_name_or_path")) or _MODEL_TYPES.get(model_type or "")


def profile_for_gguf_architecture(architecture: str | None, name: str | None = None) -> str | None:
    """The profile name for a GGUF ``general.architecture`` (and ``general.name``; None when unknown)."""
    return _by_name(name) or _GGUF_ARCHITECTURES.get(architecture or "")


def profile_options_for_model(profile: str | None, name: Any) -> dict[str, Any]:
    """Profile options a model's name calls for (Llama Guard 3 8B has its own template)."""
    text = str(name or "").lower().replace("_", "-")
    if profile == LlamaGuard3Profile.name and ("guard-3-8b" in text or "guard3-8b" in text):
        return {"variant": "8b"}
    return {}


def unknown_model_error(what: str) -> ConfigurationError:
    """The error for a model no family serves: names the families and the ``profile=`` override."""
    return ConfigurationError(
        f"cannot tell which guard family {what} is; pass profile= (known: {', '.join(sorted(PROFILES))})"
    )
