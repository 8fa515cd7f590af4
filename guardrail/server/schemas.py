"""Request and response bodies of the moderation server (pydantic models).

``/v1/moderations`` follows OpenAI's moderation API. The guard has no per-category output, so
OpenAI's category keys are always present and false/0; what the guard knows is reported under
our own namespaced keys (``guardrail/request_harmful``), the way other OpenAI-compatible
servers add custom categories, and the reasoning and decision details go in the ``guardrail``
extension field of each result.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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

# OpenAI's omni-moderation category keys.
OPENAI_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
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
    """Our native request: a prompt and/or images, optionally with the AI response."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = None
    response: str | None = None
    images: list[str] | None = Field(None, description="data:image/...;base64 URLs")
    videos: list[str] | None = Field(
        None, description="data:video/...;base64 URLs (inline only; media extra)"
    )
    audios: list[str] | None = Field(
        None, description="data:audio/...;base64 URLs (inline only; media extra)"
    )
