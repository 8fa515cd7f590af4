"""The policy a guard was trained on, as it travels with the model.

``python -m guardrail.training`` with a policy writes it beside the weights as
``guardrail_policy.yaml`` (:data:`POLICY_FILE`); a GGUF export carries the same YAML text in the
metadata key ``guardrail.policy`` (:data:`GGUF_POLICY_KEY`). The transformers and llama.cpp
backends read it back as their ``trained_policy``, which :class:`guardrail.Guard` hands to the
profile: the prompt shows the policy and the verdict reports the categories the model names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guardrail.policies.model import Policy, PolicyError

__all__ = [
    "GGUF_POLICY_KEY",
    "POLICY_FILE",
    "policy_from_text",
    "read_trained_policy",
    "write_trained_policy",
]

#: The file beside a trained guard's weights.
POLICY_FILE = "guardrail_policy.yaml"
#: The GGUF metadata key holding the same YAML text.
GGUF_POLICY_KEY = "guardrail.policy"


def read_trained_policy(model_dir: str | os.PathLike[str]) -> Policy | None:
    """The policy in ``model_dir/guardrail_policy.yaml``; None when the directory has none (or
    ``model_dir`` is not a local directory, e.g. a hub id). A malformed file raises
    :class:`~guardrail.policies.PolicyError`: a guard trained on a policy must not load as one
    that names no categories."""
    path = Path(model_dir) / POLICY_FILE
    if not path.is_file():
        return None
    return Policy.from_yaml(path)


def write_trained_policy(model_dir: str | os.PathLike[str], policy: Policy) -> Path:
    """Write ``policy`` as ``model_dir/guardrail_policy.yaml``."""
    path = Path(model_dir) / POLICY_FILE
    text = (
        "# The policy this guard was trained on (guardrail.training). Guard.from_pretrained reads it:\n"
        "# the prompt shows these categories and verdicts name them by code. Change only the actions.\n"
        + policy.to_yaml()
    )
    path.write_text(text, encoding="utf-8")
    return path


def policy_from_text(text: Any, where: str = GGUF_POLICY_KEY) -> Policy | None:
    """A policy from YAML text (the GGUF metadata value); None for an empty value."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    import yaml

    try:
        data = yaml.safe_load(text) if isinstance(text, str) else text
    except yaml.YAMLError as exc:
        raise PolicyError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise PolicyError(f"{where}: expected a policy mapping")
    try:
        return Policy.from_dict(data)
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc}") from exc
