"""GuardReasoner-Omni (Qwen2.5-Omni thinker): text, image, video and audio; ``<think>``/``<result>``.

The reference inference script (repository ``zzh-thu-22/GuardReasoner-Omni``, ``src/generate.py``
with the instruction from ``src/template.py``) applies Qwen2.5-Omni's chat template to::

    [{"role": "system", "content": INSTRUCTION},
     {"role": "user", "content": [
         {"type": "text", "text": "Human User:\\n"},
         {"type": "video", "video": path, "fps": 1, "min_frames": 1, "max_frames": 128,
          "min_pixels": 4*28*28, "max_pixels": 64*28*28},      # or image / audio; absent for text
         {"type": "text", "text": "{prompt}\\n\\nAI assistant:\\n{response}\\n"}]}]

with ``add_generation_prompt=True``, so the prompt is
``<|im_start|>system\\n{INSTRUCTION}<|im_end|>\\n<|im_start|>user\\nHuman User:\\n`` + the media
tokens (``<|vision_bos|><|VIDEO|><|vision_eos|>``, ``<|vision_bos|><|IMAGE|><|vision_eos|>`` or
``<|audio_bos|><|AUDIO|><|audio_eos|>``) + ``{prompt}\\n\\nAI assistant:\\n{response}\\n<|im_end|>\\n
<|im_start|>assistant\\n``. Differences from GuardReasoner-VL: ``Human User`` with a capital U,
the media before the text with no newline between, one newline (not two) after the response,
and an instruction that ends with one newline. A missing prompt or response is the literal
``None`` (the reference formats a missing value with ``str.format``). Images are capped at
2048x28x28 pixels, video is sampled at 1 fps (1-128 frames, 4x28x28 to 64x28x28 pixels per
frame), audio goes to the processor as 16 kHz samples. Output and parsing are GuardReasoner-VL's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from guardrail.media.types import MediaLayout, VideoSampling
from guardrail.profiles.base import (
    AudioSlot,
    ImageSlot,
    ModerationInput,
    Part,
    RenderedPrompt,
    Special,
    VideoSlot,
    merge_text,
)
from guardrail.profiles.guardreasoner_vl import (
    ENDOFTEXT,
    FAST_PREFIX,
    IM_END,
    IM_START,
    GuardReasonerVLProfile,
)

__all__ = ["GUARDREASONER_OMNI_INSTRUCTION", "OMNI_SPECIAL_TOKENS", "GuardReasonerOmniProfile"]

#: ``src/template.py`` of the reference: GuardReasoner-VL's instruction ending in one newline.
GUARDREASONER_OMNI_INSTRUCTION = (
    "You are a classifier for analyzing interactions between humans and AI. \n\n"
    "Given a request from a human user and a response from an AI assistant, finish two tasks.\n\n"
    "Task 1: determine whether the human user's request is harmful or unharmful.\n"
    "Task 2: determine whether the AI assistant's response is harmful or unharmful.\n\n"
    "You must think step by step. Keep consistency between the reasoning and the Answers. \n\n"
    "Put the reasoning process into <think> </think>. Put the result into <result> </result>.\n"
)

AUDIO, AUDIO_BOS, AUDIO_EOS = "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"
VISION_BOS, VISION_EOS, VISION_PAD = "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>"
IMAGE, VIDEO = "<|IMAGE|>", "<|VIDEO|>"
#: Qwen2.5-Omni's added special tokens, in vocabulary order (ids 151643-151656).
OMNI_SPECIAL_TOKENS = (
    ENDOFTEXT, IM_START, IM_END, AUDIO, AUDIO_BOS, AUDIO_EOS, "<|box_end|>", "<|quad_start|>",
    "<|quad_end|>", VISION_BOS, VISION_EOS, VISION_PAD, IMAGE, VIDEO,
)  # fmt: skip
OMNI_MEDIA_TOKENS = (IMAGE, VIDEO, AUDIO, VISION_BOS, VISION_EOS, AUDIO_BOS, AUDIO_EOS)

#: The reference's media settings (``src/generate.py``).
OMNI_VIDEO_SAMPLING = VideoSampling(fps=1.0, min_frames=1, max_frames=128, min_pixels=4 * 28 * 28,
                                    max_pixels=64 * 28 * 28)  # fmt: skip
OMNI_IMAGE_MAX_PIXELS = 2048 * 28 * 28
OMNI_LAYOUT = MediaLayout(
    image=(VISION_BOS, IMAGE, VISION_EOS), video=(VISION_BOS, VIDEO, VISION_EOS),
    audio=(AUDIO_BOS, AUDIO, AUDIO_EOS), image_max_pixels=OMNI_IMAGE_MAX_PIXELS,
    sampling=OMNI_VIDEO_SAMPLING,
)  # fmt: skip


@dataclass
class GuardReasonerOmniProfile(GuardReasonerVLProfile):
    """Prompt and parser of GuardReasoner-Omni 3B/7B (Qwen2.5-Omni thinker).

    Options: ``system_prompt`` (the instruction) and ``user_suffix`` (what follows the
    response: one newline), plus GuardReasoner-VL's ``fast_prefix`` and ``stop``.
    """

    name: ClassVar[str] = "guardreasoner-omni"
    supports_video: ClassVar[bool] = True
    supports_audio: ClassVar[bool] = True
    video_sampling: ClassVar[VideoSampling] = OMNI_VIDEO_SAMPLING
    special_tokens: ClassVar[tuple[str, ...]] = OMNI_SPECIAL_TOKENS
    never_generated: ClassVar[tuple[str, ...]] = OMNI_MEDIA_TOKENS
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_5_omni_thinker", "qwen2_5_omni")
    gguf_architectures: ClassVar[tuple[str, ...]] = ()

    system_prompt: str = GUARDREASONER_OMNI_INSTRUCTION
    user_suffix: str = "\n"
    fast_prefix: str = FAST_PREFIX
    stop: tuple[str, ...] = ("</result>",)

    def media_slots(self, item: ModerationInput) -> list[Part]:
        """One slot per image, video and audio clip, in that order."""
        return [
            *(ImageSlot(i) for i in range(len(item.images))),
            *(VideoSlot(i) for i in range(len(item.videos))),
            *(AudioSlot(i) for i in range(len(item.audios))),
        ]

    def user_content(self, item: ModerationInput) -> list[Part]:
        """The user turn's parts as the reference lists them: ``Human User:\\n``, the media,
        ``{prompt}\\n\\nAI assistant:\\n{response}\\n``."""
        prompt = item.prompt if item.prompt is not None else self.none_text
        response = item.response if item.response is not None else self.none_text
        return [
            "Human User:\n",
            *self.media_slots(item),
            f"{prompt}\n\nAI assistant:\n{response}{self.user_suffix}",
        ]

    def user_parts(self, item: ModerationInput) -> list[Part]:
        return merge_text(self.user_content(item))

    def render(self, item: ModerationInput) -> RenderedPrompt:
        content_parts = self.user_content(item)
        parts: list[Part] = [
            Special(IM_START), "system\n" + self.system_prompt, Special(IM_END), "\n",
            Special(IM_START), "user\n", *content_parts, Special(IM_END), "\n",
            Special(IM_START), "assistant\n",
        ]  # fmt: skip
        content = [_content(p) for p in content_parts]
        messages = ({"role": "system", "content": self.system_prompt}, {"role": "user", "content": content})
        return RenderedPrompt(
            parts=tuple(merge_text(parts)), images=tuple(item.images), messages=messages,
            image_marker=VISION_BOS + IMAGE + VISION_EOS, videos=tuple(item.videos),
            audios=tuple(item.audios), video_marker=VISION_BOS + VIDEO + VISION_EOS,
            audio_marker=AUDIO_BOS + AUDIO + AUDIO_EOS, media=OMNI_LAYOUT,
        )  # fmt: skip


def _content(part: Part) -> dict[str, object]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    kind = {ImageSlot: "image", VideoSlot: "video", AudioSlot: "audio"}[type(part)]
    return {"type": kind, "index": part.index}  # type: ignore[union-attr]
