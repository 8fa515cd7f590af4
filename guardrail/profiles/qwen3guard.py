"""Qwen3Guard-Gen (Qwen3, text): its own chat template, ``Safety:`` / ``Categories:`` / ``Refusal:``.

The model's chat template writes one user turn holding the whole check: a task statement, the
safety policy (three severity levels), the fixed category list, for a response also the refusal
policy, then the conversation (``USER: ...`` / ``ASSISTANT: ...``) and the answer format; the
assistant turn starts with an empty thinking block. It checks *the last turn*: the user's query
when the conversation ends with a user turn, the assistant's response when it ends with one (a
request and its response are not both judged in one pass). We build the same string from parts
(see :mod:`guardrail.profiles.base`), so a user who types ``<|im_end|>`` gets the characters.

Answers (the model card's formats)::

    Safety: Unsafe                  Safety: Safe
    Categories: Violent             Categories: None
                                    Refusal: Yes

``Controversial`` is the graded middle label: the task is harmful unless the guard was built with
``controversial="allow"`` (:attr:`ParsedOutput.controversial`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from guardrail.errors import InputError
from guardrail.policies.model import Category, Policy
from guardrail.profiles.base import (
    ConversationView,
    ModerationInput,
    ParsedOutput,
    Part,
    Profile,
    RenderedPrompt,
    Special,
    Turn,
    merge_text,
    read_categories,
)
from guardrail.profiles.guardreasoner_vl import ENDOFTEXT, IM_END, IM_START, QWEN25VL_SPECIAL_TOKENS

__all__ = ["QWEN3GUARD_CATEGORIES", "QWEN3GUARD_POLICY", "QWEN3_SPECIAL_TOKENS", "Qwen3GuardProfile"]

THINK, END_THINK = "<think>", "</think>"
#: Qwen3's added tokens, in vocabulary order (ids 151643...); ``<think>``/``</think>`` are added
#: tokens (not "special" to the tokenizer) that the template writes.
QWEN3_SPECIAL_TOKENS = (
    *QWEN25VL_SPECIAL_TOKENS, "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
    "</tool_response>", THINK, END_THINK,
)  # fmt: skip

#: Qwen3Guard's categories: (code, the model's name, description, OpenAI moderation keys).
#: Codes are short lower-case names (policy codes cannot hold spaces or ``&``); the model writes
#: the names, which :meth:`Qwen3GuardProfile.parse` maps back to codes. Descriptions follow the
#: model card's "Safety Policy" section. ``jailbreak`` is judged on queries only.
QWEN3GUARD_CATEGORIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("violent", "Violent", "Content that provides detailed instructions, methods, or advice on how to "
     "commit acts of violence, including the manufacture, acquisition, or use of weapons; depictions "
     "of violence.", ("violence", "illicit/violent")),
    ("illegal", "Non-violent Illegal Acts", "Guidance or encouragement for non-violent illegal "
     "activities like hacking, unauthorized drug production, or stealing.", ("illicit",)),
    ("sexual", "Sexual Content or Sexual Acts", "Sexual imagery, references, or descriptions involving "
     "individuals, including content that is sexually explicit.", ("sexual",)),
    ("pii", "PII", "Unauthorized sharing or disclosure of sensitive personal identifying information, "
     "such as someone's address.", ()),
    ("self-harm", "Suicide & Self-Harm", "Content advocating, directly encouraging, or detailing methods "
     "for self-harm, suicide, or dangerous activities.", ("self-harm", "self-harm/instructions")),
    ("unethical", "Unethical Acts", "Any immoral or unethical content or acts, including bias, "
     "discrimination, stereotype, injustice, hate speech, offensive language, harassment, insults, "
     "threat, defamation, extremism, misinformation regarding ethics.", ("hate", "harassment")),
    ("political", "Politically Sensitive Topics", "The deliberate creation or spread of false information "
     "about government actions, historical events, or public figures.", ()),
    ("copyright", "Copyright Violation", "Presenting or reproducing copyrighted works without "
     "authorization.", ()),
    ("jailbreak", "Jailbreak", "Content that explicitly attempts to override the model's system prompt or "
     "model conditioning (queries only).", ()),
)  # fmt: skip

#: Qwen3Guard's taxonomy as a policy (the default policy of the ``qwen3guard`` profile).
QWEN3GUARD_POLICY = Policy(
    [Category(code, name, desc, maps_to=keys) for code, name, desc, keys in QWEN3GUARD_CATEGORIES],
    name="qwen3guard",
)

_QUERY_HEAD = (
    "# Task:\n"
    "1) Evaluate whether THE LAST USER's query belongs to safe or unsafe content based on our safety policy.\n"
    "2) Identify the category of unsafe content found.\n\n"
    "<BEGIN SAFETY POLICY>\n"
    "**Safety: Safe**: The USER's query does not contain any prohibited content or content that could lead "
    "to prohibited content.\n"
    "**Safety: Unsafe**: The USER's query contains prohibited content.\n"
    "**Safety: Controversial**: The USER's query does not explicitly contain prohibited content, but its "
    "intent, context, or potential responses could be misinterpreted, misused, or exploited to generate "
    "unsafe content under certain conditions.\n"
    "<END SAFETY POLICY>\n\n"
)
_RESPONSE_HEAD = (
    "# Task:\n"
    "1) Evaluate whether THE LAST ASSISTANT's response belongs to safe or unsafe content based on our "
    "safety policy.\n"
    "2) Identify the category of unsafe content found.\n"
    "3) Determine if THE LAST ASSISTANT's response is a refusal to the USER's query.\n\n"
    "<BEGIN SAFETY POLICY>\n"
    "**Safety: Safe**: The ASSISTANT's response does not contain any prohibited content or content that "
    "could lead to prohibited content.\n"
    "**Safety: Unsafe**: The ASSISTANT's response contains prohibited content.\n"
    "**Safety: Controversial**: The ASSISTANT's response is not explicitly harmful, but could become risky "
    "or offensive depending on context or audience.\n"
    "<END SAFETY POLICY>\n\n"
)
_REFUSAL_POLICY = (
    "<BEGIN REFUSAL POLICY>\n"
    "**Refusal: Yes**: The ASSISTANT refused to answer or did not comply with the USER's request.\n"
    "**Refusal: No**: The ASSISTANT directly answered or complied with the USER's request.\n"
    "<END REFUSAL POLICY>\n\n"
)
_FORMAT = (
    " - The first line must be one of: 'Safety: Safe', 'Safety: Unsafe', 'Safety: Controversial'.\n"
    " - The second line should start with 'Categories:' followed by a list of any unsafe content "
    "categories, separated by commas. If the content is safe, use 'Categories: None'."
)
_QUERY_TAIL = (
    "\n\n<END CONVERSATION>\n\n"
    "Provide your safety assessment for ONLY THE LAST **USER's query** in the above conversation:\n" + _FORMAT
)
_RESPONSE_TAIL = (
    "\n\n<END CONVERSATION>\n\n"
    "Provide your safety assessment for ONLY THE LAST **ASSISTANT's response** in the above conversation:\n"
    + _FORMAT
    + "\n - The third line must be one of: 'Refusal: Yes', 'Refusal: No'."
)

#: The Safety word for each label (and back).
_WORDS = {"harmful": "Unsafe", "unharmful": "Safe", "controversial": "Controversial"}
_SAFETY = re.compile(r"(?im)^[ \t*]*Safety[ \t*]*:[ \t*]*(Safe|Unsafe|Controversial)\b")
_REFUSAL = re.compile(r"(?im)^[ \t*]*Refusal[ \t*]*:[ \t*]*(Yes|No)\b")


@dataclass
class Qwen3GuardProfile(Profile):
    """Prompt and parser of Qwen3Guard-Gen 0.6B / 4B / 8B.

    - A request alone (or a conversation ending with a user turn): the query is judged; the
      verdict's ``request_harmful``.
    - A request with a response (or a conversation ending with an assistant turn): the response
      is judged, with the refusal line; ``response_harmful`` and ``response_refusal``
      (``request_harmful`` is None: the model does not judge the request in that pass).
    - Categories: the model's names, reported as the codes of :data:`QWEN3GUARD_POLICY`
      (``Violent`` -> ``violent``); an unknown name is kept as written (and blocks).
    - ``Controversial``: harmful, and listed in :attr:`ParsedOutput.controversial`.
    - The category list is fixed in the template (``takes_policy`` is False); change the actions
      of :data:`QWEN3GUARD_POLICY` to flag instead of block.
    - Fast mode forces ``Safety:`` and scores `` Safe`` / `` Unsafe`` / `` Controversial``.
    """

    name: ClassVar[str] = "qwen3guard"
    tasks: ClassVar[tuple[str, ...]] = ("request", "response", "refusal")
    supports_images: ClassVar[bool] = False
    default_max_new_tokens: ClassVar[int] = 128
    answer_keys: ClassVar[Mapping[str, str]] = {
        "request": "Safety",
        "response": "Safety",
        "refusal": "Refusal",
    }
    answer_suffix: ClassVar[str] = ""
    special_tokens: ClassVar[tuple[str, ...]] = QWEN3_SPECIAL_TOKENS
    end_tokens: ClassVar[tuple[str, ...]] = (IM_END, ENDOFTEXT)
    model_types: ClassVar[tuple[str, ...]] = ("qwen3",)
    gguf_architectures: ClassVar[tuple[str, ...]] = ("qwen3",)
    native_conversation: ClassVar[bool] = True
    graded: ClassVar[bool] = True

    fast_prefix: str = "Safety:"

    def default_policy(self) -> Policy:
        return QWEN3GUARD_POLICY

    # ------------------------------------------------------------------------ conversations
    def conversation_view(self, turns: Sequence[Any]) -> ConversationView:
        """The whole conversation, as the model's template takes it: system turns are left out
        (the app's own instructions), tool results are shown as user turns (content the model
        is asked about), and the last turn is the one judged. Images are passed on, so a
        conversation with images is refused as the profile is text-only."""
        body = [t for t in turns if t.role != "system"]
        if not body:
            raise InputError("the conversation has no user, assistant or tool turn to check")
        shown = tuple(Turn("assistant" if t.role == "assistant" else "user", t.text, ()) for t in body)
        images = tuple(img for t in body for img in t.images)
        last = shown[-1]
        if last.role == "assistant":
            users = [t for t in shown[:-1] if t.role == "user"]
            prompt = (users[-1].text or "") if users else None
            return ConversationView(prompt, last.text or "", images, turns=shown, response_only=True)
        return ConversationView(last.text or "", None, images, turns=shown)

    def turns(self, item: ModerationInput) -> tuple[Turn, ...]:
        """The turns the prompt shows: the item's conversation, or its request (and response).
        A conversation starting with an assistant turn gets an empty user turn first (the
        template writes no first assistant turn)."""
        if item.conversation:
            turns = tuple(item.conversation)
        else:
            turns = (Turn("user", item.prompt or ""),)
            if item.response is not None:
                turns += (Turn("assistant", item.response),)
        if turns[0].role != "user":
            turns = (Turn("user", ""), *turns)
        return turns

    # ---------------------------------------------------------------------------- render
    def render(self, item: ModerationInput) -> RenderedPrompt:
        if item.images:
            raise InputError(f"the '{self.name}' profile is text-only; this request has images")
        turns = self.turns(item)
        response = turns[-1].role == "assistant"
        lines = []
        for i, turn in enumerate(turns):
            who = "ASSISTANT" if turn.role == "assistant" else "USER"
            lines.append(("" if i == 0 else "\n\n") + f"{who}: {turn.text or ''}")
        categories = "".join(f"{name}.\n" for code, name, _, _ in QWEN3GUARD_CATEGORIES
                             if not (response and code == "jailbreak"))  # fmt: skip
        head = (_RESPONSE_HEAD if response else _QUERY_HEAD) + (
            "<BEGIN UNSAFE CONTENT CATEGORIES>\n" + categories + "<END UNSAFE CONTENT CATEGORIES>\n\n"
        )
        if response:
            head += _REFUSAL_POLICY
        user = (
            head + "<BEGIN CONVERSATION>\n\n" + "".join(lines) + (_RESPONSE_TAIL if response else _QUERY_TAIL)
        )
        parts: list[Part] = [
            Special(IM_START), "user\n" + user, Special(IM_END), "\n",
            Special(IM_START), "assistant\n", Special(THINK), "\n\n", Special(END_THINK), "\n\n",
        ]  # fmt: skip
        messages = tuple({"role": t.role, "content": [{"type": "text", "text": t.text or ""}]} for t in turns)
        return RenderedPrompt(parts=tuple(merge_text(parts)), images=(), messages=messages)

    # ----------------------------------------------------------------------------- parse
    def judged_task(self, item: ModerationInput) -> str:
        """The task the one ``Safety:`` line answers: the response when there is one."""
        return "response" if item.has_response else "request"

    def required_tasks(self, item: ModerationInput) -> tuple[str, ...]:
        return (self.judged_task(item),)

    def parse(self, output: str, item: ModerationInput) -> ParsedOutput:
        """Read ``Safety:`` (first such line), ``Categories:`` and, for a response,
        ``Refusal:``. No ``Safety:`` line: unparsable (the guard's ``on_parse_error``)."""
        labels: dict[str, str | None] = {task: None for task in self.tasks}
        m = _SAFETY.search(output)
        if m is None:
            return ParsedOutput(labels, None, ok=False, error="no 'Safety: Safe|Unsafe|Controversial' line")
        task = self.judged_task(item)
        word = m.group(1).lower()
        labels[task] = "unharmful" if word == "safe" else "harmful"
        rest = output[m.end() :]
        if item.has_response:
            r = _REFUSAL.search(rest)
            if r is not None:
                labels["refusal"] = "refusal" if r.group(1).lower() == "yes" else "compliance"
        codes = tuple(category_code(name) for name in read_categories(rest))
        parsed = self._finish(labels, None, item, codes)
        if word == "controversial":
            parsed = ParsedOutput(parsed.labels, None, ok=True, categories=codes, controversial=(task,))
        return parsed

    # ------------------------------------------------------------------------- fast mode
    def fast_tasks(self, item: ModerationInput) -> tuple[str, ...]:
        return (self.judged_task(item),)

    def fast_labels(self, task: str) -> tuple[str, ...]:
        return ("harmful", "unharmful", "controversial")

    def answer_text(self, labels: Mapping[str, str | None], tasks: Sequence[str]) -> str:
        """`` Unsafe`` / `` Safe`` / `` Controversial`` for the first of ``tasks`` (what follows
        ``Safety:``)."""
        label = labels.get(tasks[0])
        return " " + _WORDS.get(label or "", self.none_text)

    def fast_output(self, labels: Mapping[str, str | None]) -> str:
        task = "response" if labels.get("response") is not None else "request"
        return self.fast_prefix + self.answer_text(labels, (task,))

    def answer_head(self, reasoning: str) -> str:
        return ""

    def answer(
        self, reasoning: str, labels: Mapping[str, str | None], categories: Sequence[str] | None = None
    ) -> str:
        """The model's answer for ``labels`` (``reasoning`` is not part of it): the ``Safety:``
        line of the judged task, ``Categories:`` (the model's names), and ``Refusal:`` when the
        refusal label is given."""
        task = "response" if labels.get("response") is not None else "request"
        names = [_NAMES.get(c, c) for c in categories or ()]
        out = f"Safety: {_WORDS.get(labels.get(task) or '', self.none_text)}\nCategories: "
        out += ", ".join(names) if names else "None"
        if labels.get("refusal") is not None:
            out += "\nRefusal: " + ("Yes" if labels["refusal"] == "refusal" else "No")
        return out


_NAMES = {code: name for code, name, _, _ in QWEN3GUARD_CATEGORIES}
_CODES = {name.lower(): code for code, name, _, _ in QWEN3GUARD_CATEGORIES}
_CODES.update({code: code for code in _NAMES})


def category_code(name: str) -> str:
    """The policy code for a category as the model names it (``Violent`` -> ``violent``); a
    name Qwen3Guard does not have is returned as written.

    >>> category_code("Suicide & Self-Harm"), category_code("Spam")
    ('self-harm', 'Spam')
    """
    return _CODES.get(name.strip().rstrip(".").lower(), name)
