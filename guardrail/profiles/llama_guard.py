"""Llama Guard 3 and 4: the models' own chat templates, the ``safe`` / ``unsafe`` + codes answer.

Each profile renders exactly what the model's chat template renders for the same conversation,
categories and images (tests/fixtures/llama_guard/ holds the templates and where each comes
from; tests/profiles/test_llama_guard.py checks the bytes):

- ``llama-guard-4`` (Llama-Guard-4-12B, Llama 4): ``<|header_start|>`` turns, several images,
  each turn's images as ``<|image|>`` before its text; S14 is left out when the conversation
  has images (the template does so: code interpreter abuse is a text-only category). The
  template writes a literal backslash-n pair after each turn's text; so do we.
- ``llama-guard-3`` (Llama-Guard-3-1B, -8B, -11B-Vision, Llama 3): ``variant`` chooses the
  template. ``"1b"`` and ``"11b-vision"`` share one (13 categories, no S14: the 1B was not
  trained for it; one ``<|image|>`` after the header when the conversation has an image, one
  image at most); ``"8b"`` has its own (14 categories, a space before ``<|begin_of_text|>``).

Conversations (:meth:`LlamaGuardProfile.conversation_view`): every non-system turn is shown, in
order; the *last* turn is the one assessed (``User`` for a user turn: the request task;
``Agent`` for an assistant turn: the response task, ``response_only``). The templates only know
user and assistant turns that alternate, starting with the user: system turns are the app's own
instructions and are not shown (the template has no place for them); tool turns are shown as
user turns (a tool's result is outside input reaching the assistant, like a user's); consecutive
turns of one side are joined (texts with a blank line, images in order); assistant turns before
the first user turn are dropped (a greeting).

The policy in effect renders as the category block: one ``CODE: Name.`` line per category, its
description on the next line when it has one (the form Meta documents for custom categories);
the default policy (:data:`LLAMA_GUARD_POLICY`: the MLCommons codes with the names the templates
list) renders the template's own block byte for byte; a policy selected from it renders as the
template does with ``excluded_category_keys``.

Output: first line ``safe`` or ``unsafe``; after ``unsafe`` a line of comma-separated codes
(read into ``ParsedOutput.categories``; ``unsafe`` alone is harmful with no category, which
blocks). Anything else is unparsable (``on_parse_error``, fail closed). The models write ``\\n\\n``
before the answer (the templates end at the assistant header); fast mode forces it and scores
``safe`` against ``unsafe``. ``category_scores`` are not provided.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from guardrail.errors import ConfigurationError, InputError, TooManyImagesError
from guardrail.policies import MLCOMMONS, Category, Policy
from guardrail.profiles.base import (
    ConversationView,
    ImageSlot,
    ModerationInput,
    ParsedOutput,
    Part,
    Profile,
    RenderedPrompt,
    Special,
    Turn,
    merge_text,
)

__all__ = [
    "LLAMA_GUARD_3_SMALL_POLICY",
    "LLAMA_GUARD_POLICY",
    "LlamaGuard3Profile",
    "LlamaGuard4Profile",
    "LlamaGuardProfile",
]

#: The category names the templates list (S4 and S11 differ from the MLCommons titles).
_TEMPLATE_NAMES = {
    "S1": "Violent Crimes", "S2": "Non-Violent Crimes", "S3": "Sex Crimes", "S4": "Child Exploitation",
    "S5": "Defamation", "S6": "Specialized Advice", "S7": "Privacy", "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons", "S10": "Hate", "S11": "Self-Harm", "S12": "Sexual Content",
    "S13": "Elections", "S14": "Code Interpreter Abuse",
}  # fmt: skip

#: Llama Guard's default policy: the MLCommons codes (and their OpenAI mappings), named as the
#: chat templates name them, without descriptions (the templates show none).
LLAMA_GUARD_POLICY = Policy(
    [replace(c, name=_TEMPLATE_NAMES[c.code], description="") for c in MLCOMMONS.categories], name="mlcommons"
)
#: Llama Guard 3 1B / 11B-Vision's default: S1..S13 (their template lists no S14).
LLAMA_GUARD_3_SMALL_POLICY = LLAMA_GUARD_POLICY.select([f"S{i}" for i in range(1, 14)], name="mlcommons")

BEGIN_OF_TEXT, END_OF_TEXT, IMAGE = "<|begin_of_text|>", "<|end_of_text|>", "<|image|>"
# Llama 3
START_HEADER, END_HEADER, EOT_ID, EOM_ID = (
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
)
# Llama 4
HEADER_START, HEADER_END, EOT, EOM = "<|header_start|>", "<|header_end|>", "<|eot|>", "<|eom|>"
IMAGE_START, IMAGE_END, PATCH = "<|image_start|>", "<|image_end|>", "<|patch|>"
TILE_X, TILE_Y = "<|tile_x_separator|>", "<|tile_y_separator|>"

_INSTRUCTION_3 = "Task: Check if there is unsafe content in '{role}' messages in conversations according our safety policy with the below categories.\n\n"  # noqa: E501
_INSTRUCTION_4 = "Task: Check if there is unsafe content in '{role}' messages in conversations according to our safety policy with the below categories.\n\n"  # noqa: E501
_ASSESS = (
    "Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
    " - First line must read 'safe' or 'unsafe'.\n"
    " - If unsafe, a second line must include a comma-separated list of violated categories."
)
_CODES = re.compile(r"^[A-Za-z0-9_./-]{1,64}$")


@dataclass
class LlamaGuardProfile(Profile):
    """What Llama Guard 3 and 4 share: conversations, policies, the answer. See the module."""

    tasks: ClassVar[tuple[str, ...]] = ("request", "response")
    answer_keys: ClassVar[Mapping[str, str]] = {"request": "", "response": ""}
    answer_suffix: ClassVar[str] = ""
    default_max_new_tokens: ClassVar[int] = 64
    takes_policy: ClassVar[bool] = True
    native_conversation: ClassVar[bool] = True
    #: How many images the family reads (None: no limit of its own).
    max_images: ClassVar[int | None] = None

    fast_prefix: str = "\n\n"

    # ------------------------------------------------------------------- policies
    def default_policy(self) -> Policy:
        return LLAMA_GUARD_POLICY

    def category_lines(self, policy: Policy, has_images: bool) -> str:
        """The category block's lines: ``CODE: Name.`` (+ ``\\n`` + description)."""
        out = []
        for c in policy.categories:
            if has_images and self._text_only_category(c):
                continue
            line = f"{c.code}: {c.name}" + ("" if c.name.endswith(".") else ".")
            if c.description:
                line += "\n" + c.description.strip()
            out.append(line + "\n")
        return "".join(out)

    def _text_only_category(self, category: Category) -> bool:
        return False

    # -------------------------------------------------------------- conversations
    def conversation_view(self, turns: Sequence[Any]) -> ConversationView:
        """All non-system turns, as the template shows them (see the module docstring)."""
        shown: list[list[Any]] = []  # [role, texts, image sources]
        for t in turns:
            if t.role == "system":
                continue
            role = "assistant" if t.role == "assistant" else "user"
            if not shown and role == "assistant":
                continue
            text = t.text if t.text is not None else None
            if shown and shown[-1][0] == role:
                if text is not None:
                    shown[-1][1].append(text)
                shown[-1][2].extend(t.images)
            else:
                shown.append([role, [text] if text is not None else [], list(t.images)])
        if not shown:
            raise InputError("the conversation has no user or tool turn for Llama Guard to check")
        sources: list[Any] = []
        out: list[Turn] = []
        for role, texts, images in shown:
            first = len(sources)
            sources.extend(images)
            out.append(Turn(role, "\n\n".join(texts) if texts else None, tuple(range(first, len(sources)))))
        last = out[-1]
        response_only = last.role == "assistant"
        users = [t for t in out if t.role == "user"]
        prompt = users[-1].text if users else None
        if prompt is None and not sources:
            prompt = ""
        return ConversationView(
            prompt=prompt,
            response=(last.text or "") if response_only else None,
            images=tuple(sources),
            turns=tuple(out),
            response_only=response_only,
        )

    def turns(self, item: ModerationInput) -> tuple[Turn, ...]:
        """The turns rendered for ``item``: its conversation, or prompt (+ images) and response."""
        if item.conversation is not None:
            return item.conversation
        user = Turn("user", item.prompt, tuple(range(len(item.images))))
        if item.response is None:
            return (user,)
        return (user, Turn("assistant", item.response))

    def messages(self, item: ModerationInput) -> list[dict[str, Any]]:
        """The turns as chat-template messages (content parts: the turn's images, then its text)."""
        out = []
        for t in self.turns(item):
            content: list[dict[str, Any]] = [{"type": "image", "index": i} for i in t.images]
            content.append({"type": "text", "text": t.text or ""})
            out.append({"role": t.role, "content": content})
        return out

    def _check(self, item: ModerationInput) -> None:
        if self.max_images is not None and len(item.images) > self.max_images:
            raise TooManyImagesError(
                f"the {self.name} model reads at most {self.max_images} image(s) per check; this one has "
                f"{len(item.images)} (Llama Guard 4 reads several)"
            )

    @staticmethod
    def role(turns: Sequence[Turn]) -> str:
        return "Agent" if turns[-1].role == "assistant" else "User"

    # -------------------------------------------------------------------- render
    def render(self, item: ModerationInput) -> RenderedPrompt:
        self._check(item)
        turns = self.turns(item)
        policy = item.policy if item.policy is not None else self.default_policy()
        parts = self.render_parts(turns, policy, bool(item.images))
        default = policy.prompt_key() == self.default_policy().prompt_key()
        # Chat messages let a server apply the model's own template (images need them); the
        # template knows only its default categories, so a custom policy goes as a raw prompt.
        messages = None
        if default:
            messages = tuple(
                {"role": m["role"], "content": m["content"] if item.images else m["content"][-1]["text"]}
                for m in self.messages(item)
            )
        return RenderedPrompt(
            parts=tuple(merge_text(parts)), images=tuple(item.images), messages=messages, image_marker=IMAGE
        )

    def render_parts(self, turns: Sequence[Turn], policy: Policy, has_images: bool) -> list[Part]:
        raise NotImplementedError

    # --------------------------------------------------------------------- parse
    def required_tasks(self, item: ModerationInput) -> tuple[str, ...]:
        """One task, the last turn's: ``response`` when the check ends with the assistant."""
        return ("response",) if item.has_response else ("request",)

    def parse(self, output: str, item: ModerationInput) -> ParsedOutput:
        """``safe`` / ``unsafe`` (+ a line of codes); anything else is unparsable."""
        task = self.required_tasks(item)[0]
        labels: dict[str, str | None] = {t: None for t in self.tasks}
        lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
        first = lines[0].lower() if lines else ""
        if first == "safe" and len(lines) == 1:
            labels[task] = "unharmful"
            return ParsedOutput(labels, None, ok=True)
        if first == "unsafe" and len(lines) <= 2:
            codes = tuple(c.strip() for c in lines[1].split(",")) if len(lines) == 2 else ()
            if all(_CODES.match(c) for c in codes):
                labels[task] = "harmful"
                return ParsedOutput(labels, None, ok=True, categories=tuple(dict.fromkeys(codes)))
        error = "not a Llama Guard answer ('safe', or 'unsafe' and a line of category codes)"
        return ParsedOutput(labels, None, ok=False, error=error)

    # --------------------------------------------------------------- fast mode
    def fast_tasks(self, item: ModerationInput) -> tuple[str, ...]:
        return self.required_tasks(item)

    def answer_text(self, labels: Mapping[str, str | None], tasks: Sequence[str]) -> str:
        """``unsafe`` or ``safe`` for the one task (what follows :attr:`fast_prefix`)."""
        return "unsafe" if labels.get(tasks[0]) == "harmful" else "safe"

    def fast_output(self, labels: Mapping[str, str | None]) -> str:
        task = "response" if labels.get("response") is not None else "request"
        return self.fast_prefix + self.answer_text(labels, (task,))

    # ------------------------------------------------------------ write answers
    def answer(
        self, reasoning: str, labels: Mapping[str, str | None], categories: Sequence[str] | None = None
    ) -> str:
        """The model's answer for ``labels`` (the response label when given, else the request's);
        Llama Guard does not reason, so ``reasoning`` is not written."""
        task = "response" if labels.get("response") is not None else "request"
        if labels.get(task) != "harmful":
            return self.fast_prefix + "safe"
        return self.fast_prefix + "unsafe" + ("\n" + ",".join(categories) if categories else "")


@dataclass
class LlamaGuard4Profile(LlamaGuardProfile):
    """Llama Guard 4 (12B, Llama 4): conversations with several images. See the module."""

    name: ClassVar[str] = "llama-guard-4"
    supports_images: ClassVar[bool] = True
    special_tokens: ClassVar[tuple[str, ...]] = (
        BEGIN_OF_TEXT, END_OF_TEXT, HEADER_START, HEADER_END, EOM, EOT, IMAGE_START, IMAGE_END,
        PATCH, TILE_X, TILE_Y, IMAGE,
    )  # fmt: skip
    end_tokens: ClassVar[tuple[str, ...]] = (EOT, EOM)
    never_generated: ClassVar[tuple[str, ...]] = (IMAGE_START, IMAGE_END, PATCH, TILE_X, TILE_Y, IMAGE)
    model_types: ClassVar[tuple[str, ...]] = ("llama4",)
    gguf_architectures: ClassVar[tuple[str, ...]] = ("llama4",)

    def _text_only_category(self, category: Category) -> bool:
        return category.code == "S14" and category.name.rstrip(".") == "Code Interpreter Abuse"

    def render_parts(self, turns: Sequence[Turn], policy: Policy, has_images: bool) -> list[Part]:
        role = self.role(turns)
        parts: list[Part] = [
            Special(BEGIN_OF_TEXT), Special(HEADER_START), "user", Special(HEADER_END), "\n\n",
            _INSTRUCTION_4.format(role=role), "<BEGIN UNSAFE CONTENT CATEGORIES>\n",
            self.category_lines(policy, has_images), "<END UNSAFE CONTENT CATEGORIES>\n\n",
            "<BEGIN CONVERSATION>\n",
        ]  # fmt: skip
        for t in turns:
            parts.append(("Agent" if t.role == "assistant" else "User") + ": ")
            parts.extend(ImageSlot(i) for i in t.images)
            parts.append((t.text or "").strip() + "\\n\\n" + "\n\n")
        parts += ["<END CONVERSATION>\n\n", _ASSESS.format(role=role) + " ", Special(EOT), Special(HEADER_START),
                  "assistant", Special(HEADER_END)]  # fmt: skip
        return parts


@dataclass
class LlamaGuard3Profile(LlamaGuardProfile):
    """Llama Guard 3: ``variant`` ``"1b"`` (default; the 1B and 11B-Vision template, the same
    one: a text-only 1B model refuses images in its backend) or ``"8b"``. See the module."""

    name: ClassVar[str] = "llama-guard-3"
    supports_images: ClassVar[bool] = True  # the 11B-Vision variant; the others refuse images
    special_tokens: ClassVar[tuple[str, ...]] = (BEGIN_OF_TEXT, END_OF_TEXT, START_HEADER, END_HEADER, EOM_ID,
                                                 EOT_ID, IMAGE)  # fmt: skip
    end_tokens: ClassVar[tuple[str, ...]] = (EOT_ID, EOM_ID, END_OF_TEXT)
    never_generated: ClassVar[tuple[str, ...]] = (IMAGE,)
    model_types: ClassVar[tuple[str, ...]] = ("mllama",)
    max_images: ClassVar[int | None] = 1

    variant: str = "1b"

    VARIANTS: ClassVar[tuple[str, ...]] = ("1b", "8b", "11b-vision")

    def __post_init__(self) -> None:
        if self.variant not in self.VARIANTS:
            raise ConfigurationError(f"llama-guard-3 variant must be one of {', '.join(self.VARIANTS)}")

    def default_policy(self) -> Policy:
        return LLAMA_GUARD_POLICY if self.variant == "8b" else LLAMA_GUARD_3_SMALL_POLICY

    def _check(self, item: ModerationInput) -> None:
        if item.images and self.variant == "8b":
            raise InputError(
                "Llama Guard 3 8B is text-only; images need Llama-Guard-3-11B-Vision or Llama Guard 4"
            )
        super()._check(item)

    def render_parts(self, turns: Sequence[Turn], policy: Policy, has_images: bool) -> list[Part]:
        role = self.role(turns)
        small = self.variant != "8b"
        parts: list[Part] = [" "] if not small else []
        parts += [Special(BEGIN_OF_TEXT), Special(START_HEADER), "user", Special(END_HEADER), "\n\n"]
        if has_images:
            parts += [ImageSlot(0), " "]
        parts += [_INSTRUCTION_3.format(role=role), "<BEGIN UNSAFE CONTENT CATEGORIES>\n",
                  self.category_lines(policy, has_images), "<END UNSAFE CONTENT CATEGORIES>\n\n",
                  "<BEGIN CONVERSATION>\n\n"]  # fmt: skip
        for t in turns:
            parts.append(
                ("Agent" if t.role == "assistant" else "User") + ": " + (t.text or "").strip() + "\n\n"
            )
        parts += ["<END CONVERSATION>\n\n", _ASSESS.format(role=role) + (" " if small else ""), Special(EOT_ID),
                  Special(START_HEADER), "assistant", Special(END_HEADER)]  # fmt: skip
        return parts
