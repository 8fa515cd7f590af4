"""TRL data sets from samples: prompts built by the profile, images decoded on the fly.

A trained guard must see in training exactly what :class:`~guardrail.Guard` sends at inference,
so prompts come from the profile (never from the data file), and the model's chat template is
checked against the profile before training starts. ``datasets`` is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from guardrail._deps import require
from guardrail.errors import ConfigurationError
from guardrail.profiles import GuardReasonerVLProfile, Profile
from guardrail.samples import Sample

__all__ = [
    "check_chat_template",
    "is_chat_profile",
    "load_images_transform",
    "make_dataset",
    "prompt_messages",
]

_EXTRA = "training"


def prompt_messages(profile: Profile, example: Sample) -> list[dict[str, Any]]:
    """The chat prompt of one sample, built by the profile exactly as Guard builds it.

    Content parts are uniform ``{"type", "text"}`` records (``text`` None for image, video and
    audio parts) so that rows fit one Arrow schema; TRL puts the images into the ``image`` parts
    in order (clips go through :mod:`guardrail.training.media` instead).
    """
    rendered = profile.render(example.moderation_input())
    if rendered.messages is None:
        raise ConfigurationError(f"the {profile.name} profile has no chat messages")
    out = []
    for message in rendered.messages:
        content = message["content"]
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        else:
            parts = [
                {"type": "text", "text": p["text"]}
                if p["type"] == "text"
                else {"type": p["type"] if p["type"] in ("video", "audio") else "image", "text": None}
                for p in content
            ]
        out.append({"role": message["role"], "content": parts})
    return out


def is_chat_profile(profile: Profile) -> bool:
    return isinstance(profile, GuardReasonerVLProfile)


def load_images_transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Dataset transform: decode image paths the way Guard decodes images (RGB, EXIF, first frame)."""
    if "images" in batch:
        from guardrail.inputs import load_image

        batch = dict(batch)
        batch["images"] = [
            [load_image(p, index=i) for i, p in enumerate(paths or [])] for paths in batch["images"]
        ]
    return batch


def make_dataset(rows: Sequence[Mapping[str, Any]], *, images: bool) -> Any:
    datasets = require("datasets", extra=_EXTRA)
    ds = datasets.Dataset.from_list(list(rows))
    return ds.with_transform(load_images_transform) if images else ds


def check_chat_template(processor: Any, profile: Profile, examples: Sequence[Sample]) -> None:
    """Fail early when the processor's chat template would not render the prompt Guard sends
    (checked on the first sample, and on the first one with images, videos, audios)."""
    if not is_chat_profile(profile) or not examples:
        return
    probes = [examples[0]] + [e for e in examples if e.images][:1] + [e for e in examples if e.videos][:1]
    probes += [e for e in examples if e.audios][:1]
    for example in probes:
        want = profile.render(example.moderation_input()).text
        messages = [
            {
                "role": m["role"],
                "content": [
                    {"type": p["type"], **({"text": p["text"]} if p["type"] == "text" else {})}
                    for p in m["content"]
                ],
            }
            for m in prompt_messages(profile, example)
        ]
        try:
            got = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # noqa: BLE001 - any template failure is a setup problem
            raise ConfigurationError(
                f"the model's chat template cannot render a guard prompt: {exc}"
            ) from exc
        if got != want:
            raise ConfigurationError(
                "the model's chat template renders the guard prompt differently from the "
                f"{profile.name} profile (so the trained model would not match what Guard sends). "
                f"Template:\n{got!r}\nProfile:\n{want!r}"
            )
