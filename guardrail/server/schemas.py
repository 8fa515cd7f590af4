"""Request and response bodies of the moderation server (pydantic models).

``/v1/moderations`` follows OpenAI's moderation API. OpenAI's category keys are always present:
the verdict's categories (codes of the guard's policy) set the keys they map to
(:func:`guardrail.policies.to_openai_categories`; MLCommons S1 -> ``violence`` and
``illicit/violent``...). Whether the request is harmful at all is reported under our own
namespaced key ``guardrail/request_harmful``, the way other OpenAI-compatible servers add custom
categories: a guard that names no category (GuardReasoner-VL) sets ``flagged`` and that key only.
The native codes, the reasoning and the decision details go in the ``guardrail`` extension
field of each result.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from guardrail.policies.builtin import OPENAI_MODERATION_KEYS

__all__ = [
    "OPENAI_CATEGORIES",
    "GuardExtension",
    "GuardRequest",
    "ImagePart",
    "ModerationRequest",
    "ModerationResponse",
    "ModerationResult",
    "TextPart",
]

# OpenAI's omni-moderation category keys (one list: guardrail.policies).
OPENAI_CATEGORIES = OPENAI_MODERATION_KEYS
REQUEST_HARMFUL = "guardrail/request_harmful"


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="ignore")
    url: str = Field(description="a data:image/...;base64 URL (http(s) only when the server allows it)")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ModerationRequest(BaseModel):
    """OpenAI's moderation request: ``input`` is a string, a list of strings (one result each),
    or a list of content parts (one multimodal input, one result)."""

    model_config = ConfigDict(extra="ignore")
    input: str | list[str] | list[ContentPart]
    model: str | None = None


class GuardExtension(BaseModel):
    """What the guard decided and why (our extension of an OpenAI moderation result)."""

    request_harmful: bool | None
    allowed: bool
    categories: list[str] = Field(default_factory=list, description="the policy's codes of the violated categories")
    policy: str | None = None
    controversial: bool | None = None
    decided_by: str
    parsed: bool
    reasoning: str | None = None
    error: str | None = None
    score: float | None = None
    latency_ms: float
    output_tokens: int | None = None


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]
    guardrail: GuardExtension


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]


class GuardRequest(BaseModel):
    """Our native request: a prompt and/or images, optionally with the AI response; or a whole
    conversation (``messages``, OpenAI chat format: the last turn is checked); optionally the
    policy to check against (a built-in name or an inline policy)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = None
    response: str | None = None
    images: list[str] | None = Field(None, description="data:image/...;base64 URLs")
    messages: list[dict[str, Any]] | None = Field(
        None, description="a conversation: [{role: system|user|assistant|tool, content: str | parts}]"
    )
    policy: str | dict[str, Any] | None = Field(
        None, description='a built-in policy name ("mlcommons", "openai-moderation") or {categories: [...]}'
    )
    videos: list[str] | None = Field(
        None, description="data:video/...;base64 URLs (inline only; media extra)"
    )
    audios: list[str] | None = Field(
        None, description="data:audio/...;base64 URLs (inline only; media extra)"
    )
