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
=====================  =========================================  ==============================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guardrail.errors import ConfigurationError
from guardrail.profiles.base import (
    ImageSlot,
    ModerationInput,
    ParsedOutput,
    Profile,
    RenderedPrompt,
    Special,
)
from guardrail.profiles.guardreasoner import GUARDREASONER_INSTRUCTION, GuardReasonerProfile
from guardrail.profiles.guardreasoner_omni import GUARDREASONER_OMNI_INSTRUCTION, GuardReasonerOmniProfile
from guardrail.profiles.guardreasoner_vl import (
    GUARDREASONER_VL_INSTRUCTION,
    GuardReasonerVLProfile,
    parse_user_text,
)
from guardrail.profiles.labels import TASK_LABELS, TASKS, answer_labels, gold_label

__all__ = [
    "END_TOKENS",
    "GUARDREASONER_INSTRUCTION",
    "GUARDREASONER_OMNI_INSTRUCTION",
    "GUARDREASONER_VL_INSTRUCTION",
    "PROFILES",
    "GuardReasonerOmniProfile",
    "GuardReasonerProfile",
    "GuardReasonerVLProfile",
    "ImageSlot",
    "ModerationInput",
    "NEVER_GENERATED",
    "ParsedOutput",
    "Profile",
    "RenderedPrompt",
    "Special",
    "TASKS",
    "TASK_LABELS",
    "answer_labels",
    "get_profile",
    "gold_label",
    "parse_user_text",
    "profile_for_gguf_architecture",
    "profile_for_model_type",
]

PROFILES: dict[str, type[Profile]] = {
    GuardReasonerVLProfile.name: GuardReasonerVLProfile,
    GuardReasonerProfile.name: GuardReasonerProfile,
    GuardReasonerOmniProfile.name: GuardReasonerOmniProfile,
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


def profile_for_model_type(model_type: str | None, config: Mapping[str, Any] | None = None) -> str | None:
    """The profile name for a Hugging Face ``model_type`` (None when unknown)."""
    if config and isinstance(config.get("guardrail_profile"), str):
        return config["guardrail_profile"]
    return _MODEL_TYPES.get(model_type or "")


def profile_for_gguf_architecture(architecture: str | None) -> str | None:
    """The profile name for a GGUF ``general.architecture`` (None when unknown)."""
    return _GGUF_ARCHITECTURES.get(architecture or "")
