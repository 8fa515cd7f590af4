"""ShieldGemma 2 (google/shieldgemma-2-4b-it, Gemma 3): an image classifier, one prompt per policy.

The model answers one question per (image, policy) pair: "Does the image violate the above
policy?", and its verdict is the probability of ``Yes`` against ``No`` as the next token
(``ShieldGemma2ForImageClassification`` returns exactly that softmax over the two logits). It
never reasons and never writes a longer answer: the family is *scoring only*
(:attr:`~guardrail.profiles.base.Profile.scoring_only`). Every mode runs the same scoring:
``mode="reasoning"`` (the guard's default) and ``"cascade"`` are the fast pass, and the verdict
says so (``path="fast"``).

Prompt: what ``ShieldGemma2Processor`` builds (its chat template, ``templates/shieldgemma2.jinja``
in :mod:`guardrail.testing`, then the Gemma 3 image expansion), byte for byte: a ``<bos>``, one
``<start_of_turn>user`` line per content item (the image, then the instruction with the policy
text), the newline and indentation that the template's layout writes between the instruction's
pieces, and ``<start_of_turn>model\\n``. The processor tokenizes that text with a tokenizer that
adds its own BOS, so the model sees two ``<bos>`` tokens; we send the same ids
(:attr:`RenderedPrompt.add_bos`). The image placeholder becomes ``\\n\\n<start_of_image>``,
``mm_tokens_per_image`` soft tokens, ``<end_of_image>\\n\\n`` (the ``\\n\\n`` are text of the
prompt here, the tokens are the backend's).

Policies: the default policy is the processor's three (``dangerous``, ``sexual``, ``violence``,
their texts verbatim as descriptions). A policy given at run time renders each category as the
processor renders a custom policy: its text is the category's description (the model card
writes it as ``"No <thing>": The image shall not contain ...``), or its name when it has no
description. Verdict: ``category_scores`` is P(Yes) per category (the largest over the
request's images), ``categories`` the categories at or over the guard's threshold, the request
is harmful when any is.

Inputs: images only. The family classifies images: a request without images, and a response
(an assistant turn), are refused with :class:`~guardrail.errors.InputError`. Text sent next to
images is *not* shown to the model and not checked (pair ShieldGemma 2 with a text guard).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from guardrail.errors import InputError
from guardrail.policies.model import Category, Policy
from guardrail.profiles.base import (
    ImageSlot,
    ModerationInput,
    ParsedOutput,
    Part,
    Profile,
    RenderedPrompt,
    Special,
    merge_text,
)

__all__ = [
    "SHIELDGEMMA2_POLICY",
    "SHIELDGEMMA2_POLICY_TEXTS",
    "SHIELDGEMMA2_SPECIAL_TOKENS",
    "ShieldGemma2Profile",
]

BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"
START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"
START_OF_IMAGE, END_OF_IMAGE, IMAGE_SOFT_TOKEN = "<start_of_image>", "<end_of_image>", "<image_soft_token>"
#: Gemma 3's special tokens the family uses, in the tiny tokenizer's vocabulary order.
SHIELDGEMMA2_SPECIAL_TOKENS = (
    PAD, EOS, BOS, "<unk>", "<mask>", START_OF_TURN, END_OF_TURN, START_OF_IMAGE, END_OF_IMAGE, IMAGE_SOFT_TOKEN,
)  # fmt: skip

#: The processor's default policies (``DEFAULT_SHIELDGEMMA2_POLICIES``), verbatim.
SHIELDGEMMA2_POLICY_TEXTS: Mapping[str, str] = {
    "dangerous": (
        "No Dangerous Content: The image shall not contain content that facilitates or encourages activities "
        "that could cause real-world harm (e.g., building firearms and explosive devices, promotion of "
        "terrorism, instructions for suicide)."
    ),
    "sexual": (
        "No Sexually Explicit content: The image shall not contain content that depicts explicit or graphic "
        "sexual acts (e.g., pornography, erotic nudity, depictions of rape or sexual assault)."
    ),
    "violence": (
        "No Violence/Gore content: The image shall not contain content that depicts shocking, sensational, or "
        "gratuitous violence (e.g., excessive blood and gore, gratuitous violence against animals, extreme "
        "injury or moment of death)."
    ),
}

#: ShieldGemma 2's default policy: the processor's three policies, in its order.
SHIELDGEMMA2_POLICY = Policy(
    [
        Category("dangerous", "Dangerous Content", SHIELDGEMMA2_POLICY_TEXTS["dangerous"],
                 maps_to=("illicit/violent", "self-harm/instructions")),
        Category("sexual", "Sexually Explicit", SHIELDGEMMA2_POLICY_TEXTS["sexual"], maps_to=("sexual",)),
        Category("violence", "Violence/Gore", SHIELDGEMMA2_POLICY_TEXTS["violence"],
                 maps_to=("violence", "violence/graphic")),
    ],
    name="shieldgemma-2",
)  # fmt: skip

# The chat template's text item: its pieces joined by what the template's layout writes between
# two `{{ }}` expressions (a newline and 16 spaces; see templates/shieldgemma2.jinja).
_GAP = "\n" + " " * 16
_HEAD = _GAP.join(
    [
        "You are a policy expert trying to help determine whether a generated or real image is in",
        " violation of the safety policy below. Your decision must very clearly follow the specific",
        " language used in the safety policy and should not include any interpretation outside of the",
        " safety policy.\n\n",
        "<BEGIN_SAFETY_POLICY>\n",
        "",
    ]
)
_TAIL = _GAP.join(
    [
        "\n",
        "</END_SAFETY_POLICY>\n\n",
        "Does the image violate the above policy? Your Answer must start with 'Yes' or 'No'.",
        "",
    ]
)


@dataclass
class ShieldGemma2Profile(Profile):
    """ShieldGemma 2: P(violation) per image and policy. See the module docstring."""

    name: ClassVar[str] = "shieldgemma-2"
    tasks: ClassVar[tuple[str, ...]] = ("request",)
    answer_keys: ClassVar[Mapping[str, str]] = {"request": ""}
    answer_suffix: ClassVar[str] = ""
    supports_images: ClassVar[bool] = True
    takes_policy: ClassVar[bool] = True
    scoring_only: ClassVar[bool] = True
    #: The answer tokens scored per prompt: P(first) is the category's score.
    category_labels: ClassVar[tuple[str, str]] = ("Yes", "No")
    default_max_new_tokens: ClassVar[int] = 1
    special_tokens: ClassVar[tuple[str, ...]] = SHIELDGEMMA2_SPECIAL_TOKENS
    end_tokens: ClassVar[tuple[str, ...]] = (END_OF_TURN,)
    never_generated: ClassVar[tuple[str, ...]] = (START_OF_IMAGE, END_OF_IMAGE, IMAGE_SOFT_TOKEN)
    model_types: ClassVar[tuple[str, ...]] = ("shieldgemma2",)
    remote_unsupported: ClassVar[str | None] = (
        "OpenAI-compatible servers (vLLM included) serve no ShieldGemma2ForImageClassification head, and "
        "scoring its prompts (an image inside the processor's raw prompt, two <bos>) needs log-probabilities "
        "of an image prompt that neither the completions API (text only) nor a chat template gives. Use the "
        "transformers backend, or llama.cpp (python -m guardrail export gguf; docs/guards/shieldgemma-2.md)"
    )

    # ------------------------------------------------------------------- policies
    def default_policy(self) -> Policy:
        return SHIELDGEMMA2_POLICY

    @staticmethod
    def policy_text(category: Category) -> str:
        """The text a category renders as (the processor's policy text): its description, or
        its name when it has none."""
        return category.description or category.name

    # --------------------------------------------------------------------- render
    def _check(self, item: ModerationInput) -> None:
        if item.has_response:
            raise InputError(
                "ShieldGemma 2 classifies images; it does not check responses (use a text guard for them)"
            )
        if not item.images:
            raise InputError(
                "ShieldGemma 2 classifies images: this request has none (use a text guard for text-only checks)"
            )
        if item.videos or item.audios:
            raise InputError("ShieldGemma 2 classifies images only (no video or audio)")

    def prompt_for(self, image: object, category: Category) -> RenderedPrompt:
        """The processor's prompt for one image and one policy category."""
        parts: list[Part] = [
            Special(BOS), Special(START_OF_TURN), "user\n\n\n", ImageSlot(0), "\n\n", Special(START_OF_TURN),
            "user\n" + _HEAD + self.policy_text(category) + _TAIL, Special(END_OF_TURN), "\n",
            Special(START_OF_TURN), "model\n",
        ]  # fmt: skip
        return RenderedPrompt(
            parts=tuple(merge_text(parts)), images=(image,), messages=None, image_marker=START_OF_IMAGE,
            add_bos=True,
        )  # fmt: skip

    def category_prompts(self, item: ModerationInput) -> tuple[tuple[str, RenderedPrompt], ...]:
        """``(code, prompt)`` for every image x category, in the processor's batch order
        (image 1 with each policy, then image 2...)."""
        self._check(item)
        policy = item.policy if item.policy is not None else self.default_policy()
        return tuple((c.code, self.prompt_for(image, c)) for image in item.images for c in policy.categories)

    def render(self, item: ModerationInput) -> RenderedPrompt:
        """The first prompt of :meth:`category_prompts` (the first image, the first category);
        a check scores all of them."""
        return self.category_prompts(item)[0][1]

    # ---------------------------------------------------------------------- parse
    def parse(self, output: str, item: ModerationInput) -> ParsedOutput:
        """A generated answer to one prompt: ``Yes`` (harmful) or ``No`` (first word)."""
        words = output.strip().split()
        first = words[0].strip(".,!:;'\"").lower() if words else ""
        labels: dict[str, str | None] = {"request": None}
        if first in ("yes", "no"):
            labels["request"] = "harmful" if first == "yes" else "unharmful"
            return ParsedOutput(labels, None, ok=True)
        return ParsedOutput(labels, None, ok=False, error="not a ShieldGemma 2 answer ('Yes' or 'No')")

    # --------------------------------------------------------- fast mode, answers
    def answer_text(self, labels: Mapping[str, str | None], tasks: Sequence[str]) -> str:
        return self.category_labels[0] if labels.get("request") == "harmful" else self.category_labels[1]

    def fast_output(self, labels: Mapping[str, str | None]) -> str:
        return self.answer_text(labels, self.tasks)

    def answer(
        self, reasoning: str, labels: Mapping[str, str | None], categories: Sequence[str] | None = None
    ) -> str:
        """``Yes`` or ``No`` (the model does not reason)."""
        return self.answer_text(labels, self.tasks)
