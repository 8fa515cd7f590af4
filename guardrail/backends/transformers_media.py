"""Video and audio for the transformers backend: processor calls, slot tokens, batch tensors.

:meth:`TransformersBackend.encode` calls :func:`process` for a prompt that carries video or
audio. Frames arrive decoded, sampled and sized by :mod:`guardrail.media` (transformers' own
path reader needs torchcodec and FFmpeg; see ../shared/docs/feasibility.md), so the video
processor is called with ``do_sample_frames=False`` and ``do_resize=False``: the frames are
already multiples of 28 pixels within the profile's budget, and the processor's class-level
video size (which overrides a saved one) never comes into play. The sampled rate goes to the
model as seconds per temporal patch (``temporal_patch_size / fps``: ``second_per_grid_ts`` for
Qwen2.5-VL, ``video_second_per_grid`` for the Qwen2.5-Omni thinker). Audio goes through the
feature extractor with the 16 kHz rate and ``padding="max_length"`` (the processor's own
setting), and takes as many tokens as the processor gives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from guardrail.errors import MediaError
from guardrail.media.types import AUDIO_SAMPLE_RATE, MediaLayout
from guardrail.profiles.base import AudioSlot, ImageSlot, RenderedPrompt, VideoSlot

__all__ = ["MediaInputs", "image_kwargs", "media_batch", "process", "slot_ids"]


@dataclass
class MediaInputs:
    """The processed media of one prompt: model keyword tensors and each slot's token count."""

    tensors: dict[str, Any] = field(default_factory=dict)
    image_tokens: list[int] = field(default_factory=list)
    video_tokens: list[int] = field(default_factory=list)
    audio_tokens: list[int] = field(default_factory=list)


def image_kwargs(image_processor: Any, prompt: RenderedPrompt) -> dict[str, Any]:
    """The per-image pixel cap of the profile (GuardReasoner-Omni: 2048x28x28) when it is below
    the processor's own."""
    layout: MediaLayout | None = prompt.media
    size = getattr(image_processor, "size", None)
    if layout is None or layout.image_max_pixels is None or size is None:
        return {}
    longest = getattr(size, "longest_edge", None)
    shortest = getattr(size, "shortest_edge", None)
    if longest is None or shortest is None or longest <= layout.image_max_pixels:
        return {}
    return {"size": {"shortest_edge": shortest, "longest_edge": layout.image_max_pixels}}


def process(backend: Any, prompt: RenderedPrompt, pixel_values: Any, grid: Any) -> MediaInputs:
    """Run the video processor and the audio feature extractor for ``prompt`` (images were
    processed by the caller: ``pixel_values``/``grid``)."""
    torch = backend._torch
    processor = backend.processor
    media = MediaInputs()
    if pixel_values is not None:
        merge = int(getattr(backend.image_processor, "merge_size", 2))
        media.tensors.update(pixel_values=pixel_values, image_grid_thw=grid)
        media.image_tokens = [int(g.prod()) // (merge * merge) for g in grid]
    if prompt.videos:
        vp = getattr(processor, "video_processor", None)
        if vp is None:
            raise MediaError("this model takes no video")
        import numpy as np

        out = vp(
            videos=[np.stack(v.frames) for v in prompt.videos], do_sample_frames=False, do_resize=False,
            return_tensors="pt",
        )  # fmt: skip
        merge = int(getattr(vp, "merge_size", 2))
        temporal = int(getattr(vp, "temporal_patch_size", 2))
        seconds = torch.tensor([temporal / v.fps for v in prompt.videos], dtype=torch.float32)
        from guardrail.backends.transformers import _accepts

        key = (
            "video_second_per_grid"
            if _accepts(backend.model, "video_second_per_grid")
            else "second_per_grid_ts"
        )
        media.tensors.update(
            pixel_values_videos=out["pixel_values_videos"],
            video_grid_thw=out["video_grid_thw"],
            **{key: seconds},
        )
        media.video_tokens = [int(g.prod()) // (merge * merge) for g in out["video_grid_thw"]]
    if prompt.audios:
        fe = getattr(processor, "feature_extractor", None)
        if fe is None:
            raise MediaError("this model takes no audio")
        out = fe(
            [a.samples for a in prompt.audios], sampling_rate=AUDIO_SAMPLE_RATE, padding="max_length",
            return_attention_mask=True, return_tensors="pt",
        )  # fmt: skip
        mask = out["attention_mask"]
        media.tensors.update(input_features=out["input_features"], feature_attention_mask=mask)
        lengths = (mask.sum(-1) - 1) // 2 + 1
        media.audio_tokens = [int(n) for n in (lengths - 2) // 2 + 1]
    return media


def slot_ids(piece: ImageSlot | VideoSlot | AudioSlot, media: MediaInputs, prompt: RenderedPrompt,
             special_id: Any) -> list[int]:  # fmt: skip
    """``begin + placeholder * n + end`` for one slot, with the tokens the profile names."""
    layout: MediaLayout = prompt.media
    if isinstance(piece, VideoSlot):
        tokens, n = layout.video, media.video_tokens[piece.index]
    elif isinstance(piece, AudioSlot):
        tokens, n = layout.audio, media.audio_tokens[piece.index]
    else:
        tokens, n = layout.image, media.image_tokens[piece.index]
    if tokens is None:
        raise MediaError(f"the prompt's profile has no tokens for {type(piece).__name__}")
    begin, pad, end = (special_id(t) for t in tokens)
    return [begin, *([pad] * n), end]


def media_batch(
    backend: Any, encoded: Sequence[tuple[list[int], Any, Any]], input_ids: Any
) -> dict[str, Any]:
    """The model keyword tensors of a padded batch whose prompts carry media: each tensor
    concatenated over the prompts in order, and (Qwen2.5-VL) ``mm_token_type_ids`` marking image
    (1) and video (2) placeholders."""
    from guardrail.profiles.guardreasoner_vl import IMAGE_PAD, VIDEO_PAD

    torch = backend._torch
    out: dict[str, list[Any]] = {}
    for _, pv, grid in encoded:
        if isinstance(pv, MediaInputs):
            for key, value in pv.tensors.items():
                out.setdefault(key, []).append(value)
        elif pv is not None:  # a prompt with images only, encoded the usual way
            out.setdefault("pixel_values", []).append(pv)
            out.setdefault("image_grid_thw", []).append(grid)
    batch = {k: torch.cat(v, dim=0) for k, v in out.items()}
    if backend._wants_mm_types:
        marks = torch.zeros_like(input_ids)
        for token, value in ((IMAGE_PAD, 1), (VIDEO_PAD, 2)):
            for i in backend._token_ids((token,)):
                marks = marks + value * (input_ids == i).long()
        batch["mm_token_type_ids"] = marks
    return batch
