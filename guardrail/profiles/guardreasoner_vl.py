"""GuardReasoner-VL (Qwen2.5-VL): chat template, ``<think>``/``<result>`` output, two tasks.

The reference prompt (GuardReasoner-VL evaluation code) is the Qwen2.5-VL chat template applied
to ``[system(INSTRUCTION), user(text)]`` with the template's own vision markers removed and each
literal ``<image>`` in the user text replaced by ``<|vision_start|><|image_pad|><|vision_end|>``.
We build the same string structurally (see :mod:`guardrail.profiles.base`), so the words
``<image>`` or ``<|im_end|>`` typed by a user stay plain text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from guardrail.errors import FormatError
from guardrail.media.types import MediaLayout, VideoSampling
from guardrail.profiles.base import (
    ImageSlot,
    ModerationInput,
    ParsedOutput,
    Part,
    Profile,
    RenderedPrompt,
    Special,
    VideoSlot,
    label_regex,
    merge_text,
    normalise_label,
    read_categories,
)

__all__ = ["GUARDREASONER_VL_INSTRUCTION", "GuardReasonerVLProfile", "parse_user_text"]

GUARDREASONER_VL_INSTRUCTION = (
    "You are a classifier for analyzing interactions between humans and AI. \n\n"
    "Given a request from a human user and a response from an AI assistant, finish two tasks.\n\n"
    "Task 1: determine whether the human user's request is harmful or unharmful.\n"
    "Task 2: determine whether the AI assistant's response is harmful or unharmful.\n\n"
    "You must think step by step. Keep consistency between the reasoning and the Answers. \n\n"
    "Put the reasoning process into <think> </think>. Put the result into <result> </result>.\n\n"
)

#: The answer forced in fast mode: no reasoning, the result block up to the first label.
FAST_PREFIX = "<think>\n\n</think>\n<result>\nRequest:"

IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
VISION_START, IMAGE_PAD, VISION_END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"
VISION_PAD, VIDEO_PAD = "<|vision_pad|>", "<|video_pad|>"
#: Qwen2.5-VL's added special tokens, in vocabulary order (ids 151643...).
QWEN25VL_SPECIAL_TOKENS = (
    ENDOFTEXT, IM_START, IM_END, "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", VISION_START, VISION_END, VISION_PAD,
    IMAGE_PAD, VIDEO_PAD,
)  # fmt: skip
#: The vision tokens: an image slot is ``VISION_START + IMAGE_PAD * n + VISION_END``; a guard
#: never generates any of them (random test models like emitting them).
VISION_TOKENS = (IMAGE_PAD, VIDEO_PAD, VISION_START, VISION_END)

VL_LAYOUT = MediaLayout(
    image=(VISION_START, IMAGE_PAD, VISION_END), video=(VISION_START, VIDEO_PAD, VISION_END),
    sampling=VideoSampling(),
)  # fmt: skip

_RESULT_OPEN = re.compile(r"<result>", re.IGNORECASE)
_RESULT_CLOSE = re.compile(r"</result>", re.IGNORECASE)
_THINK = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.IGNORECASE | re.DOTALL)
# Tags in order of appearance; the answer is the first <result> outside <think>...</think>.
_TAG = re.compile(r"<(/?)(think|result)>", re.IGNORECASE)
_STRUCTURE = re.compile(r"<(?:/?think|result)>", re.IGNORECASE)
_ANY_TAG = re.compile(r"</?(?:think|result)>", re.IGNORECASE)


@dataclass
class GuardReasonerVLProfile(Profile):
    """Prompt and parser of the GuardReasoner-VL models (3B, 7B, Eco-3B, Eco-7B).

    Options (defaults reproduce the reference):

    - ``system_prompt``: the instruction. Some copies of the reference end it with one newline
      instead of two; pass that text here if a model was trained with it.
    - ``user_suffix``: what follows the response text (reference: two newlines).
    - ``fast_prefix``: the answer forced in fast mode before the first label: an empty
      reasoning block and the result block up to ``Request:``
      (``<think>\\n\\n</think>\\n<result>\\nRequest:``).
    - ``stop``: reasoning mode stops once the model's own result block is closed: at a
      ``</result>`` that :meth:`answer_end` accepts (one inside ``<think>`` does not stop it);
      pass ``()`` to generate until the end of turn.
    - ``trained_policy``: for a guard trained on your own policy (``guardrail.training``; loaded
      from ``guardrail_policy.yaml`` beside the weights): the system turn is the instruction
      followed by :meth:`~guardrail.profiles.Profile.policy_section`, and the result block
      ends with a ``Categories: S1, S9`` line (``Categories: None`` when nothing is harmful),
      which :meth:`parse` reads into the verdict's ``categories``. Without it the prompt is the
      reference, byte for byte.
    """

    name: ClassVar[str] = "guardreasoner-vl"
    tasks: ClassVar[tuple[str, ...]] = ("request", "response")
    supports_images: ClassVar[bool] = True
    answer_suffix: ClassVar[str] = "\n</result>"
    special_tokens: ClassVar[tuple[str, ...]] = QWEN25VL_SPECIAL_TOKENS
    end_tokens: ClassVar[tuple[str, ...]] = (IM_END, ENDOFTEXT)
    never_generated: ClassVar[tuple[str, ...]] = VISION_TOKENS
    #: Video through Qwen2.5-VL's native video input, sampled as GuardReasoner-Omni samples it
    #: (the VL models were trained on images only: see docs/video-audio.md).
    supports_video: ClassVar[bool] = True
    video_sampling: ClassVar[VideoSampling] = VideoSampling()
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_5_vl", "qwen2_vl")
    gguf_architectures: ClassVar[tuple[str, ...]] = ("qwen2vl",)

    system_prompt: str = GUARDREASONER_VL_INSTRUCTION
    user_suffix: str = "\n\n"
    fast_prefix: str = FAST_PREFIX
    stop: tuple[str, ...] = ("</result>",)

    # ------------------------------------------------------------------------------ render
    def user_parts(self, item: ModerationInput) -> list[Part]:
        """``Human user:\\n<image>...\\n{prompt}\\n\\nAI assistant:\\n{response}\\n\\n``.

        Images come first, right after ``Human user:\\n``, one slot each; the prompt text follows
        on the next line. Image-only requests have no text line.
        """
        parts: list[Part] = ["Human user:\n"]
        parts.extend(ImageSlot(i) for i in range(len(item.images)))
        parts.extend(VideoSlot(i) for i in range(len(item.videos)))  # Qwen2.5-VL's native video
        visual = bool(item.images or item.videos)
        if item.prompt is not None:
            parts.append(("\n" if visual else "") + item.prompt)
        elif not visual:
            parts.append(self.none_text)
        response = item.response if item.response is not None else self.none_text
        parts.append("\n\nAI assistant:\n" + response + self.user_suffix)
        return merge_text(parts)

    def system_text(self, item: ModerationInput | None = None) -> str:
        """The system turn: the instruction, and the policy section of a guard trained on one."""
        if self.trained_policy is None:
            return self.system_prompt
        policy = item.policy if item is not None and item.policy is not None else self.trained_policy
        return self.system_prompt + self.policy_section(policy)

    def render(self, item: ModerationInput) -> RenderedPrompt:
        user = self.user_parts(item)
        system = self.system_text(item)
        parts: list[Part] = [
            Special(IM_START), "system\n" + system, Special(IM_END), "\n",
            Special(IM_START), "user\n", *user, Special(IM_END), "\n",
            Special(IM_START), "assistant\n",
        ]  # fmt: skip
        content = [
            {"type": "text", "text": p} if isinstance(p, str)
            else {"type": "video" if isinstance(p, VideoSlot) else "image", "index": p.index}
            for p in user
        ]  # fmt: skip
        messages = ({"role": "system", "content": system}, {"role": "user", "content": content})
        return RenderedPrompt(
            parts=tuple(merge_text(parts)),
            images=tuple(item.images),
            messages=messages,
            image_marker=VISION_START + IMAGE_PAD + VISION_END,
            videos=tuple(item.videos),
            video_marker=VISION_START + VIDEO_PAD + VISION_END,
            media=VL_LAYOUT if item.videos else None,
        )

    # ----------------------------------------------------------------------- write answers
    def answer_head(self, reasoning: str) -> str:
        """``<think>\\n{reasoning}\\n</think>\\n<result>\\n`` (see :meth:`Profile.answer`)."""
        return f"<think>\n{reasoning}\n</think>\n<result>\n"

    # ------------------------------------------------------------------------------- parse
    def parse(self, output: str, item: ModerationInput) -> ParsedOutput:
        """Read the labels from the model's own ``<result>`` block.

        The answer is the first ``<result>`` block outside the reasoning: tags are read in
        order, everything from a ``<think>`` to the next ``</think>`` is reasoning (a result
        block quoted there, e.g. echoed from the user's text, is never read), and the block
        runs to its ``</result>`` (or to the end of an output that ends inside it).

        - A ``<think>`` never closed, or reasoning not followed by a result block: unparsable.
        - No ``<think>``/``<result>`` tag at all: the whole output is read, as the reference
          regex does (the released models always write ``<think>...</think><result>...``; the
          fast-mode prefix has an empty ``<think>\\n\\n</think>``).
        - When the request or response itself holds one of these tags, the tags of the output
          may be the user's, echoed (a typed ``</think><result>...</result>`` looks like a
          closed reasoning and an answer). The answer is then the *last* result block, which
          must end the output and follow a ``</think>``; reasoning mode does not stop early for
          such requests (:meth:`answer_end`), so the model writes its own answer after any echo.

        An output cut by ``max_new_tokens`` is rejected by the caller
        (:func:`guardrail.verdict.verdict_from_generation`), whatever it holds.
        """
        reasoning = _reasoning(output)
        tagged = any(t is not None and _ANY_TAG.search(t) for t in (item.prompt, item.response))
        block, error = _final_block(output) if tagged else _answer_block(output)
        if block is None:
            labels: dict[str, str | None] = {task: None for task in self.tasks}
            return ParsedOutput(labels, reasoning, ok=False, error=error)
        labels = {}
        for task in self.tasks:
            m = label_regex(task).search(block)
            labels[task] = normalise_label(task, m.group(1)) if m else None
        categories = read_categories(block) if self.trained_policy is not None else ()
        return self._finish(labels, reasoning, item, categories)

    def answer_end(self, text: str, prompt: RenderedPrompt | None = None) -> int | None:
        """Right after the ``</result>`` that closes the answer block :meth:`parse` reads;
        None before it (a ``</result>`` inside ``<think>`` does not count). None always for a
        prompt whose user text holds a ``<think>``/``<result>`` tag (see :meth:`parse`): those
        outputs run to the end of turn."""
        if prompt is not None and _ANY_TAG.search(_user_text(prompt)):
            return None
        span, _ = _scan(text)
        return span[2] if span is not None else None


def _user_text(prompt: RenderedPrompt) -> str:
    """The user-controlled text of a prompt (all of it when the prompt has no messages)."""
    if prompt.messages is None:
        return prompt.text
    out = []
    for message in prompt.messages:
        if message.get("role") == "system":
            continue
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        else:
            out.extend(str(part.get("text", "")) for part in content or () if part.get("type") == "text")
    return "\n".join(out)


def _final_block(output: str) -> tuple[str | None, str | None]:
    """The last ``<result>`` block, when it ends the output and follows a ``</think>`` (or the
    output has no ``<think>`` before it), or an error."""
    opens = list(_RESULT_OPEN.finditer(output))
    if not opens:
        if _STRUCTURE.search(output):
            return None, "no <result> block after the reasoning"
        return output, None
    start = opens[-1]
    close = _RESULT_CLOSE.search(output, start.end())
    if close is not None and output[close.end() :].strip():
        return None, "text after the last </result> (the request holds <think>/<result> tags)"
    before = output[: start.start()]
    if re.search(r"<think>", before, re.IGNORECASE) and not re.search(r"</think>", before, re.IGNORECASE):
        return None, "the reasoning never closed (<think> without </think>)"
    return output[start.end() : close.start() if close else len(output)], None


def _scan(output: str) -> tuple[tuple[int, int, int | None] | None, bool]:
    """``(span, in_think)``. ``span``: ``(start, end, close_end)`` of the answer block's text
    (``close_end`` right after its ``</result>``, None when the output ends inside the block),
    or None when there is no answer block; ``in_think``: whether the output then ends inside
    ``<think>``. A ``<think>`` inside the reasoning and a ``</think>`` outside it change
    nothing; a ``</result>`` outside a result block is ignored. Text appended to ``output``
    never changes a span whose ``close_end`` is set (reasoning mode stops there)."""
    in_think = False
    for m in _TAG.finditer(output):
        closing, name = bool(m.group(1)), m.group(2).lower()
        if name == "think":
            in_think = not closing
        elif not in_think and not closing:
            close = _RESULT_CLOSE.search(output, m.end())
            span = (m.end(), close.start(), close.end()) if close else (m.end(), len(output), None)
            return span, False
    return None, in_think


def _answer_block(output: str) -> tuple[str | None, str | None]:
    """The text of the answer block (the whole output when it has no tag), or an error."""
    span, in_think = _scan(output)
    if span is not None:
        return output[span[0] : span[1]], None
    if in_think:
        return None, "the reasoning never closed (<think> without </think>)"
    if _STRUCTURE.search(output):
        return None, "no <result> block after the reasoning"
    return output, None


def _reasoning(output: str) -> str | None:
    m = _THINK.search(output)
    if m:
        return m.group(1).strip() or None
    head = _RESULT_OPEN.split(output, maxsplit=1)[0].strip()
    return head or None


# ============================================================================ user text
# Reading back the user text that user_parts() writes (and GuardReasonerProfile.input_text, its
# text-only form): how the training and evaluation loaders read the reference data files.
HUMAN_USER, AI_ASSISTANT = "Human user:", "AI assistant:"
IMAGE_PLACEHOLDER = "<image>"
_AI_SECTION = f"\n\n{AI_ASSISTANT}\n"
_PLACEHOLDER = re.compile(re.escape(IMAGE_PLACEHOLDER) + r"\n?")


def parse_user_text(text: str, *, within: bool = False) -> tuple[str | None, str | None]:
    """``Human user:\\n<image>...\\n{prompt}\\n\\nAI assistant:\\n{response}\\n\\n`` -> ``(prompt, response)``.

    The inverse of the rendering: ``<image>`` placeholders are removed (the profile puts images
    first, as at inference); the literal ``None`` the profiles write for a missing text means
    None (for the prompt, only without images: an image-only request has no text line, so
    ``<image>`` alone gives ``prompt=None``). ``within``: the user text is part of a longer
    prompt (after the instruction) and is read from its first ``Human user:``. Raises
    :class:`~guardrail.errors.FormatError` when the text is not in that form.

    >>> parse_user_text("Human user:\\n<image>\\nWhat is this?\\n\\nAI assistant:\\nNone\\n\\n")
    ('What is this?', None)
    >>> parse_user_text("Human user:\\nNone\\n\\nAI assistant:\\nSure.\\n\\n")
    (None, 'Sure.')
    """
    if within:
        text = text[max(text.find(HUMAN_USER), 0) :]
    if not text.startswith(HUMAN_USER):
        raise FormatError(f"the user text does not start with {HUMAN_USER!r}")
    body = text[len(HUMAN_USER) :].removeprefix("\n")
    head, sep, tail = body.partition(_AI_SECTION)
    if not sep:
        if body.rstrip().endswith(AI_ASSISTANT):  # no response section content at all
            head, tail = body.rstrip()[: -len(AI_ASSISTANT)].rstrip("\n"), "None"
        else:
            raise FormatError(f"the user text has no {AI_ASSISTANT!r} section")
    prompt: str | None = head
    if IMAGE_PLACEHOLDER in head:
        prompt = _PLACEHOLDER.sub("", head).strip("\n")
        if not prompt.strip():
            prompt = None
    elif head == "None":
        prompt = None
    response = tail[:-2] if tail.endswith("\n\n") else tail.rstrip("\n")
    return prompt, (None if response.strip() == "None" else response)
