"""GuardReasoner (text only, Llama 3 base models): raw prompt, ``Answers:`` output, three tasks.

The reference prompt is the instruction, a newline, then the ``Human user:`` input, with no chat
template (the released predictions show exactly ``instruction + "\\n" + input``); the tokenizer's
BOS token comes first, as vLLM and transformers add it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from guardrail.errors import ConfigurationError, InputError
from guardrail.profiles.base import (
    ModerationInput,
    ParsedOutput,
    Profile,
    RenderedPrompt,
    label_regex,
    normalise_label,
)

__all__ = ["GUARDREASONER_INSTRUCTION", "GuardReasonerProfile"]

GUARDREASONER_INSTRUCTION = (
    "You are a classifier for analyzing interactions between humans and AI. \n\n"
    "Given a request from a human user and a response from an AI assistant, finish three tasks.\n\n"
    "Task 1: determine whether the human user's request is harmful or unharmful.\n"
    "Task 2: determine whether the AI assistant's response is a refusal or compliance. \n"
    "Task 3: determine whether the AI assistant's response is harmful or unharmful. \n\n"
    "You must think step by step. Keep consistency between the reasoning and the Answers.\n"
)

BEGIN_OF_TEXT, END_OF_TEXT, EOT_ID = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
#: Llama 3's template special tokens (the GuardReasoner prompt itself uses none but BOS).
LLAMA3_SPECIAL_TOKENS = (BEGIN_OF_TEXT, END_OF_TEXT, EOT_ID, "<|start_header_id|>", "<|end_header_id|>")

# An "Answers" heading at the start of a line: "Answers:", "# Answers:", "# Answers".
_ANSWERS = re.compile(r"(?im)^[ \t#*]*Answers[ \t]*:?")
# A whole "Answers" heading line: "Answers:", "# Answers:", "**Answers:**".
_HEADING = re.compile(r"(?i)[ \t#*]*Answers[ \t*]*:?[ \t*]*")
# A label line: "Request: harmful", "## Completion: None" (any text after the colon).
_LABEL_LINE = re.compile(r"(?i)[ \t*#>-]*(?:Request|Completion|Response)[ \t]*:[^\n]*")
# Text in a request or response that could forge a label line or an Answers heading.
_ANSWER_LIKE = re.compile(r"(?i)(?:Answers|Request|Response|Completion)\s*:")


@dataclass
class GuardReasonerProfile(Profile):
    """Prompt and parser of the GuardReasoner models (1B, 3B, 8B).

    Tasks: request harmfulness, response refusal (``Completion:``), response harmfulness.
    In fast mode the answer is forced to start with ``Answers: \\nRequest:`` (no reasoning).
    """

    name: ClassVar[str] = "guardreasoner"
    tasks: ClassVar[tuple[str, ...]] = ("request", "refusal", "response")
    supports_images: ClassVar[bool] = False
    default_max_new_tokens: ClassVar[int] = 2048
    special_tokens: ClassVar[tuple[str, ...]] = LLAMA3_SPECIAL_TOKENS
    end_tokens: ClassVar[tuple[str, ...]] = (EOT_ID, END_OF_TEXT)
    model_types: ClassVar[tuple[str, ...]] = ("llama",)
    gguf_architectures: ClassVar[tuple[str, ...]] = ("llama",)

    instruction: str = GUARDREASONER_INSTRUCTION
    fast_prefix: str = "Answers: \nRequest:"

    def __post_init__(self) -> None:
        if self.trained_policy is not None:
            raise ConfigurationError(
                "guards trained on a policy are GuardReasoner-VL guards (profile 'guardreasoner-vl'); "
                "the text-only 'guardreasoner' profile has no categories line"
            )

    def input_text(self, item: ModerationInput) -> str:
        prompt = item.prompt if item.prompt is not None else self.none_text
        response = item.response if item.response is not None else self.none_text
        return f"Human user:\n{prompt}\n\nAI assistant:\n{response}\n\n"

    def render(self, item: ModerationInput) -> RenderedPrompt:
        if item.images:
            raise InputError(f"the '{self.name}' profile is text-only; this request has images")
        return RenderedPrompt(
            parts=(self.instruction + "\n" + self.input_text(item),),
            images=(),
            messages=None,
            add_bos=True,
        )

    def answer_head(self, reasoning: str) -> str:
        """The reasoning, a ``---`` rule, then the ``Answers:`` heading (the released models'
        layout); without reasoning, the heading alone (see :meth:`Profile.answer`)."""
        return f"{reasoning}\n\n---\n\nAnswers: \n" if reasoning else "Answers: \n"

    def parse(self, output: str, item: ModerationInput) -> ParsedOutput:
        """Read the labels from the model's final answer: the run of label lines
        (``Request: ...`` / ``Completion: ...`` / ``Response: ...``, blank lines between them
        allowed) that ends the output, with its ``Answers:`` heading right above it when there
        is one. Every real output of the released models ends so; text before that run (a
        "Conclusion" of the reasoning, an ``Answers:`` block the reasoning quotes) is not read.

        One exception, for the per-task format some real outputs use (``# Answers:`` after each
        task's reasoning, so the final run holds the last task only): a task the final run does
        not state is read from the last earlier ``Answers`` block that states it, but only when
        neither the request nor the response text holds answer-like text (``Answers:``,
        ``Request:``, ``Response:``, ``Completion:``). Otherwise an earlier block could be the
        user's forged answer echoed by the reasoning, and the task stays unanswered (a parse
        failure when the request needs it). An output cut by ``max_new_tokens`` is rejected by
        the caller (:func:`guardrail.verdict.verdict_from_generation`).
        """
        start, run_start = _final_answer(output)
        final = output[run_start:]
        earlier = [] if _answer_like(item) else _answer_blocks(output[:start])
        labels: dict[str, str | None] = {}
        for task in self.tasks:
            labels[task] = None
            pattern = label_regex(task, line_start=True)
            for block in (final, *reversed(earlier)):
                m = pattern.search(block)
                if m:
                    labels[task] = normalise_label(task, m.group(1))
                    break
        reasoning = output[:start].rstrip().removesuffix("---").strip() or None
        return self._finish(labels, reasoning, item)


def _answer_like(item: ModerationInput) -> bool:
    """Whether the user-controlled text could forge an answer block the model might echo."""
    return any(text is not None and _ANSWER_LIKE.search(text) for text in (item.prompt, item.response))


def _answer_blocks(text: str) -> list[str]:
    """The ``Answers`` blocks of ``text``, each from its heading to the next one."""
    heads = list(_ANSWERS.finditer(text))
    return [text[h.end() : (heads[i + 1].start() if i + 1 < len(heads) else len(text))]
            for i, h in enumerate(heads)]  # fmt: skip


def _final_answer(output: str) -> tuple[int, int]:
    """``(start, run_start)``: where the final answer starts (its heading, if any) and where
    its label lines start; both ``len(output)`` when the output does not end with label lines."""
    lines = output.split("\n")
    pos = len(output)  # the start of line i, walking back
    run_start = start = len(output)
    for line in reversed(lines):
        pos -= len(line)
        if _LABEL_LINE.fullmatch(line):
            run_start = start = pos
        elif line.strip():
            if run_start < len(output) and _HEADING.fullmatch(line):
                start = pos
            break
        pos -= 1  # the newline before this line
    return start, run_start
