"""gpt-oss-safeguard (gpt-oss, harmony format): a policy given at run time, reasoning, a JSON answer.

The prompt is what gpt-oss's own chat template renders (harmony): the system message (model
identity, knowledge cutoff, the current date, ``Reasoning: low|medium|high``, the valid channels),
the developer message ``# Instructions`` holding the policy (the chat's system message becomes
it), the content as the user message, then ``<|start|>assistant``. The model reasons on the
``analysis`` channel and answers on the ``final`` channel; as the gpt-oss-safeguard guide
recommends, the policy ends with the output format, here a JSON object::

    {"violation": 1, "policy_category": "S1"}     {"violation": 0, "policy_category": null}

Local backends decode without special tokens, so an output reads
``analysis<reasoning>assistantfinal<answer>``; an OpenAI-compatible server that parses harmony
(vLLM) returns the final answer alone. :meth:`GptOssSafeguardProfile.parse` reads both.

Cascade (``mode="cascade"``): the family has no label to score, so its cascade is by reasoning
effort: every check runs at ``low`` effort first, and is re-run at the guard's configured effort
(``medium``/``high``) only when the low-effort answer is uncertain (:meth:`cascade_escalates`):

- unparsable (no final answer in the output format, or cut by ``max_new_tokens``);
- a violation that names no category of the policy in effect (no code, or only unknown codes);
- a verdict the analysis contradicts (:meth:`~guardrail.profiles.Profile.contradiction`);
- any violation, when ``cascade_confirm_violations`` is set (fewer false blocks, at the price of
  re-running all flagged traffic).

A backend error at low effort is not re-run (it follows ``on_error``). With
``reasoning_effort="low"`` a cascade is the single low-effort pass.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from guardrail.errors import ConfigurationError, InputError
from guardrail.policies.builtin import OPENAI_MODERATION
from guardrail.policies.model import Policy
from guardrail.profiles.base import (
    ModerationInput,
    ParsedOutput,
    Part,
    Profile,
    RenderedPrompt,
    Special,
    merge_text,
)

__all__ = ["HARMONY_SPECIAL_TOKENS", "REASONING_EFFORTS", "GptOssSafeguardProfile"]

START, END, MESSAGE, CHANNEL = "<|start|>", "<|end|>", "<|message|>", "<|channel|>"
RETURN, CALL, CONSTRAIN = "<|return|>", "<|call|>", "<|constrain|>"
STARTOFTEXT, ENDOFTEXT = "<|startoftext|>", "<|endoftext|>"
#: The harmony special tokens of the o200k_harmony vocabulary.
HARMONY_SPECIAL_TOKENS = (STARTOFTEXT, ENDOFTEXT, START, END, MESSAGE, CHANNEL, RETURN, CALL, CONSTRAIN)
REASONING_EFFORTS = ("low", "medium", "high")
#: gpt-oss's chat template defaults (``model_identity`` and the knowledge cutoff it writes).
MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
KNOWLEDGE_CUTOFF = "2024-06"

_FINAL = "assistantfinal"  # "<|start|>assistant<|channel|>final<|message|>" without its special tokens
_FINAL_TAGGED = re.compile(r"<\|channel\|>\s*final\s*(?:<\|constrain\|>[^<]*)?<\|message\|>")
_ANALYSIS = re.compile(r"^\s*(?:<\|channel\|>)?\s*analysis\s*(?:<\|message\|>)?", re.IGNORECASE)
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


@dataclass
class GptOssSafeguardProfile(Profile):
    """Prompt and parser of gpt-oss-safeguard-20b / -120b.

    Options:

    - ``reasoning_effort``: ``"low"``, ``"medium"`` (the template's default) or ``"high"``.
    - ``current_date``: the ``Current date:`` line (``YYYY-MM-DD``); default today (local time),
      as the template's ``strftime_now`` writes it.
    - ``model_identity``: the system message's first line (the template's default).
    - ``cascade_confirm_violations``: in ``mode="cascade"``, re-check every low-effort violation
      at the configured effort (default False: only uncertain answers; see the module docstring).

    The policy in effect (the guard's ``policy=``, default OpenAI's moderation categories) is the
    developer message (:meth:`policy_text`). One check judges one piece of content: the request,
    or the response when one is given (the request is then context; ``request_harmful`` is
    None). Fast mode is not available (the answer starts with reasoning).
    """

    name: ClassVar[str] = "gpt-oss-safeguard"
    tasks: ClassVar[tuple[str, ...]] = ("request", "response")
    supports_images: ClassVar[bool] = False
    special_tokens: ClassVar[tuple[str, ...]] = HARMONY_SPECIAL_TOKENS
    # <|end|> closes the analysis message, not the answer: an output ends at <|return|>.
    end_tokens: ClassVar[tuple[str, ...]] = (RETURN, CALL)
    model_types: ClassVar[tuple[str, ...]] = ("gpt_oss",)
    gguf_architectures: ClassVar[tuple[str, ...]] = ("gpt-oss",)
    takes_policy: ClassVar[bool] = True

    reasoning_effort: str = "medium"
    current_date: str | None = None
    model_identity: str = MODEL_IDENTITY
    cascade_confirm_violations: bool = False

    def __post_init__(self) -> None:
        if self.reasoning_effort not in REASONING_EFFORTS:
            raise ConfigurationError(
                f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}; got {self.reasoning_effort!r}"
            )
        if self.current_date is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", self.current_date):
            raise ConfigurationError(f"current_date must be YYYY-MM-DD; got {self.current_date!r}")

    def default_policy(self) -> Policy:
        return self.trained_policy or OPENAI_MODERATION

    # ------------------------------------------------------------------------------ render
    def system_text(self) -> str:
        date = self.current_date or time.strftime("%Y-%m-%d")
        return (
            f"{self.model_identity}\nKnowledge cutoff: {KNOWLEDGE_CUTOFF}\nCurrent date: {date}\n\n"
            f"Reasoning: {self.reasoning_effort}\n\n"
            "# Valid channels: analysis, commentary, final. Channel must be included for every message."
        )

    def policy_text(self, policy: Policy) -> str:
        """The policy as the developer's instructions: what to judge, the categories that
        violate it, and the output format."""
        lines = []
        for c in policy.categories:
            line = f"- {c.code}: {c.name.rstrip('.')}."
            if c.description:
                line += " " + " ".join(c.description.split())
            lines.append(line)
        return (
            f"# Policy: {policy.name or 'content safety'}\n\n"
            "## INSTRUCTIONS\n"
            "Decide whether the content violates this policy. The content is a user's request to an AI "
            "assistant, or a request followed by the assistant's response; when a response is given, "
            "judge the response (the request is its context).\n\n"
            "## VIOLATES (1)\nContent in any of these categories:\n" + "\n".join(lines) + "\n\n"
            "## SAFE (0)\nContent in none of the categories above.\n\n"
            "## OUTPUT FORMAT\n"
            'Answer with a JSON object and nothing else: {"violation": 1, "policy_category": "<code>"} '
            "with the code of the category violated (several codes separated by commas), or "
            '{"violation": 0, "policy_category": null} when the content violates none.'
        )

    def content_text(self, item: ModerationInput) -> str:
        """The user message: the request alone, or the request and the response, labelled."""
        if item.response is None:
            return item.prompt if item.prompt is not None else self.none_text
        prompt = item.prompt if item.prompt is not None else self.none_text
        return f"[User request]\n{prompt}\n\n[Assistant response]\n{item.response}"

    def render(self, item: ModerationInput) -> RenderedPrompt:
        if item.images:
            raise InputError(f"the '{self.name}' profile is text-only; this request has images")
        policy = self.policy_text(item.policy or self.default_policy())
        content = self.content_text(item)
        parts: list[Part] = [
            Special(START), "system", Special(MESSAGE), self.system_text(), Special(END),
            Special(START), "developer", Special(MESSAGE), "# Instructions\n\n" + policy + "\n\n", Special(END),
            Special(START), "user", Special(MESSAGE), content, Special(END),
            Special(START), "assistant",
        ]  # fmt: skip
        messages = (
            {"role": "system", "content": policy},
            {"role": "user", "content": [{"type": "text", "text": content}]},
        )
        return RenderedPrompt(parts=tuple(merge_text(parts)), images=(), messages=messages)

    # ----------------------------------------------------------------------------- cascade
    def cascade_first(self) -> GptOssSafeguardProfile:
        """This profile at ``low`` reasoning effort (itself when it is already low)."""
        return self if self.reasoning_effort == "low" else dataclasses.replace(self, reasoning_effort="low")

    def cascade_escalates(self, verdict: Any, item: ModerationInput) -> bool:
        """Whether a low-effort verdict is re-checked at the configured effort (module docstring)."""
        if verdict.decided_by != "model" or verdict.contradiction:
            return True
        if not verdict.harmful:
            return False
        if self.cascade_confirm_violations:
            return True
        policy = item.policy or self.default_policy()
        return not any(policy.get(code) is not None for code in verdict.categories)

    # ------------------------------------------------------------------------------- parse
    def judged_task(self, item: ModerationInput) -> str:
        return "response" if item.has_response else "request"

    def required_tasks(self, item: ModerationInput) -> tuple[str, ...]:
        return (self.judged_task(item),)

    def parse(self, output: str, item: ModerationInput) -> ParsedOutput:
        """The final channel's answer: after the last ``assistantfinal`` (special tokens
        stripped) or ``<|channel|>final<|message|>`` (kept), else the whole output (a server
        that returns the final message alone). The answer must be the JSON object of the
        output format (``violation`` 0/1 or true/false; ``policy_category`` a code, codes
        separated by commas, a list, or null), or a bare ``0``/``1``; anything else is
        unparsable (the guard's ``on_parse_error``). The analysis text is the reasoning."""
        labels: dict[str, str | None] = {task: None for task in self.tasks}
        reasoning, answer = _split(output)
        violation, codes = _read_answer(answer)
        if violation is None:
            return ParsedOutput(labels, reasoning, ok=False, error="no final answer in the output format")
        labels[self.judged_task(item)] = "harmful" if violation else "unharmful"
        return self._finish(labels, reasoning, item, codes if violation else ())

    def answer(
        self, reasoning: str, labels: Mapping[str, str | None], categories: Sequence[str] | None = None
    ) -> str:
        """An output as a local backend decodes it: ``analysis{reasoning}assistantfinal{json}``."""
        task = "response" if labels.get("response") is not None else "request"
        harmful = labels.get(task) == "harmful"
        answer = {"violation": int(harmful), "policy_category": ", ".join(categories or ()) or None}
        return f"analysis{reasoning}{_FINAL}{json.dumps(answer)}"


def _split(output: str) -> tuple[str | None, str]:
    """``(reasoning, answer)`` of a harmony output (see :meth:`GptOssSafeguardProfile.parse`)."""
    tagged = list(_FINAL_TAGGED.finditer(output))
    if tagged:
        head, answer = output[: tagged[-1].start()], output[tagged[-1].end() :]
        answer = answer.split("<|return|>")[0].split("<|end|>")[0]
    else:
        cut = output.rfind(_FINAL)
        if cut < 0:
            return None, output
        head, answer = output[:cut], output[cut + len(_FINAL) :]
    head = _ANALYSIS.sub("", head, count=1)
    head = re.sub(r"<\|end\|>\s*(<\|start\|>\s*assistant\s*)?$", "", head.strip()).strip()
    return head or None, answer


def _read_answer(answer: str) -> tuple[bool | None, tuple[str, ...]]:
    text = _FENCE.sub("", answer.strip()).strip()
    if text in ("0", "1"):
        return text == "1", ()
    try:
        data: Any = json.loads(text)
    except ValueError:
        return None, ()
    if not isinstance(data, Mapping):
        return None, ()
    violation = data.get("violation")
    if isinstance(violation, str) and violation.strip() in ("0", "1"):
        violation = int(violation)
    if isinstance(violation, bool) or violation in (0, 1):
        flag = bool(violation)
    else:
        return None, ()
    raw = data.get("policy_category", data.get("categories"))
    items = raw if isinstance(raw, list) else str(raw).split(",") if raw else []
    codes = tuple(
        dict.fromkeys(c for c in (str(x).strip() for x in items) if c and c.lower() not in ("none", "null"))
    )
    return flag, codes
