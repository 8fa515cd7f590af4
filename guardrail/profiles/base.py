"""What a profile is: a prompt renderer and an output parser for one family of guard models.

Everything here is pure: no I/O, no model, no third-party imports. A backend receives a
:class:`RenderedPrompt` and turns it into model output text; the profile then reads the verdict
labels from that text.

A rendered prompt is a sequence of *parts* rather than one string, so that backends can keep
user content and template markup apart:

- ``str``: plain text. Backends tokenize it as plain text, so a user who types
  ``<|im_end|>`` gets the characters, never the special token.
- :class:`Special`: one special token of the chat template (``<|im_start|>``, BOS, ...).
- :class:`ImageSlot`: where the i-th image goes. Backends expand it into the model's vision
  tokens (``<|vision_start|><|image_pad|>...<|vision_end|>`` for Qwen2.5-VL).
- :class:`VideoSlot` / :class:`AudioSlot`: where the i-th video or audio clip goes; the
  prompt's :attr:`RenderedPrompt.media` names the tokens (see :mod:`guardrail.media`).

Joining the parts gives the exact prompt string the reference code builds
(:attr:`RenderedPrompt.text`); splitting the text at the template's special tokens and
tokenizing each piece as plain text gives the same token ids as the reference tokenization.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

# The label vocabulary lives in labels.py; these names stay importable from here.
from guardrail.policies.model import Policy
from guardrail.profiles.labels import ANSWER_KEYS, TASK_LABELS, normalise_label

__all__ = [
    "ConversationView",
    "AudioSlot",
    "ImageSlot",
    "ModerationInput",
    "ParsedOutput",
    "Profile",
    "RenderedPrompt",
    "Special",
    "TASK_LABELS",
    "Turn",
    "VideoSlot",
    "label_regex",
    "merge_text",
    "normalise_label",
    "read_categories",
]


@dataclass(frozen=True)
class Special:
    """A special token of the template, e.g. ``<|im_start|>``; tokenized as that one token."""

    token: str


@dataclass(frozen=True)
class ImageSlot:
    """The position of image ``index`` (0-based, in request order) in the prompt."""

    index: int


@dataclass(frozen=True)
class VideoSlot:
    """The position of video ``index`` (0-based, in request order) in the prompt."""

    index: int


@dataclass(frozen=True)
class AudioSlot:
    """The position of audio clip ``index`` (0-based, in request order) in the prompt."""

    index: int


Part = str | Special | ImageSlot | VideoSlot | AudioSlot


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation as a profile renders it: ``role`` (``system``, ``user``,
    ``assistant``, ``tool``), its text (None when it has none), and the indices of its images in
    :attr:`ModerationInput.images`."""

    role: str
    text: str | None
    images: tuple[int, ...] = ()


@dataclass(frozen=True)
class ConversationView:
    """What of a conversation a profile shows its model (see :meth:`Profile.conversation_view`):
    the texts and the image *sources* to decode (only these are decoded and counted against the
    limits), and, for families with a native conversation format, the turns."""

    prompt: str | None
    response: str | None
    images: tuple[Any, ...] = ()
    turns: tuple[Turn, ...] | None = None
    response_only: bool = False
    videos: tuple[Any, ...] = ()  # video and audio sources of the checked turn (same rule as images)
    audios: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ModerationInput:
    """One normalised request: validated texts and decoded images (PIL images).

    Build these with :func:`guardrail.inputs.normalize_input`, which validates types and limits.

    - ``conversation``: the turns, for families that render a whole conversation (None
      otherwise: single-turn families get the checked turn in ``prompt``/``response``).
    - ``policy``: the policy in effect (rendered by families that show one; its actions decide
      ``Verdict.allowed``).
    - ``response_only``: the check is of the last assistant turn of a conversation: the verdict's
      ``harmful`` follows the response task only (the request was checked when it was sent).
    """

    prompt: str | None = None
    response: str | None = None
    images: tuple[Any, ...] = ()
    conversation: tuple[Turn, ...] | None = None
    policy: Policy | None = None
    response_only: bool = False
    # decoded clips (guardrail.media.Video / Audio)
    videos: tuple[Any, ...] = ()
    audios: tuple[Any, ...] = ()

    @property
    def has_request(self) -> bool:
        return self.prompt is not None or bool(self.images) or bool(self.videos) or bool(self.audios)

    @property
    def has_response(self) -> bool:
        return self.response is not None


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt ready for a backend. See the module docstring for the parts."""

    parts: tuple[Part, ...]
    images: tuple[Any, ...]
    # Chat messages for chat-completions style backends (the remote backend). Image content
    # parts are {"type": "image", "index": i}; the backend turns them into data URLs. None for
    # profiles that use no chat template (the backend then sends ``text`` as a raw completion).
    messages: tuple[Mapping[str, Any], ...] | None
    image_marker: str = "<image>"
    # Whether the backend should put the tokenizer's BOS token first (Llama-based profiles).
    add_bos: bool = False
    # Video and audio clips (guardrail.media.Video / Audio), their markers in ``text``, and the
    # profile's media tokens and settings (a guardrail.media.MediaLayout; None: images only).
    videos: tuple[Any, ...] = ()
    audios: tuple[Any, ...] = ()
    video_marker: str = "<video>"
    audio_marker: str = "<audio>"
    media: Any = None
    # The leading parts every prompt of this profile starts with (the instruction and the
    # template up to the user's text; see :meth:`Profile.fixed_prefix`), the last one possibly
    # the start of a text part. A hint for prefix caching: backends that reuse the prefix's
    # computed state still compare token ids, so a wrong hint costs speed, never correctness.
    prefix: tuple[Part, ...] = ()

    @property
    def text(self) -> str:
        """The prompt as one string, images as ``image_marker`` (videos, audio likewise)."""
        return "".join(self._marker(p) for p in self.parts)

    def _marker(self, p: Part) -> str:
        if isinstance(p, str):
            return p
        if isinstance(p, Special):
            return p.token
        if isinstance(p, VideoSlot):
            return self.video_marker
        if isinstance(p, AudioSlot):
            return self.audio_marker
        return self.image_marker


@dataclass(frozen=True)
class ParsedOutput:
    """Labels read from a model output.

    ``labels`` maps each task to its normalised label (see :data:`TASK_LABELS`) or None when the
    output does not give one. ``ok`` is False when a label the request needs is missing; then
    ``error`` says which.
    """

    labels: Mapping[str, str | None]
    reasoning: str | None
    ok: bool
    error: str | None = None
    #: Codes of the categories the output names (as written, in its order).
    categories: tuple[str, ...] = ()
    #: Tasks the output answered with the family's graded middle label (Qwen3Guard's
    #: "Controversial"); their ``labels`` entry is "harmful" and the guard's ``controversial``
    #: option decides whether they count as such.
    controversial: tuple[str, ...] = ()


@dataclass
class Profile(ABC):
    """Prompt template + output parser for one family of guard models.

    Subclasses set :attr:`name`, :attr:`tasks` and implement :meth:`render` and :meth:`parse`.
    Instances are immutable in practice and safe to share between threads.
    """

    name: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]
    supports_images: ClassVar[bool] = False
    supports_video: ClassVar[bool] = False
    supports_audio: ClassVar[bool] = False
    #: How video is sampled for this family (a guardrail.media.VideoSampling; None: defaults).
    video_sampling: ClassVar[Any] = None
    # Reference generation length of the released models.
    default_max_new_tokens: ClassVar[int] = 4096
    #: The key of each task's label line in the output (``Request: harmful``).
    answer_keys: ClassVar[Mapping[str, str]] = ANSWER_KEYS
    #: What follows the last label line of a complete answer (used to write fast-mode outputs).
    answer_suffix: ClassVar[str] = "\n"
    #: The model family's tokens by name, as in its vocabulary (the one table that backends,
    #: training and the test models read): the template's special tokens, the end-of-turn
    #: tokens (an output ends at one) and the tokens a guard never generates.
    special_tokens: ClassVar[tuple[str, ...]] = ()
    end_tokens: ClassVar[tuple[str, ...]] = ()
    never_generated: ClassVar[tuple[str, ...]] = ()
    #: The models this profile serves: Hugging Face ``model_type`` values and GGUF
    #: ``general.architecture`` values (see :func:`guardrail.profiles.profile_for_model_type`).
    model_types: ClassVar[tuple[str, ...]] = ()
    gguf_architectures: ClassVar[tuple[str, ...]] = ()
    #: The family renders a policy given at run time (Llama Guard, gpt-oss-safeguard); families
    #: with a fixed prompt take only the policy they were trained on (:attr:`trained_policy`).
    takes_policy: ClassVar[bool] = False
    #: The family has a conversation format of its own (it renders :attr:`ModerationInput.conversation`).
    native_conversation: ClassVar[bool] = False
    #: The family answers with a graded middle label (Qwen3Guard's "Controversial").
    graded: ClassVar[bool] = False
    #: A classifier family scored per (image, category) prompt (ShieldGemma 2): it writes no
    #: answer, every mode runs its scoring (:meth:`category_prompts`, :attr:`category_labels`).
    scoring_only: ClassVar[bool] = False
    #: For a scoring-only family: the positive and the negative answer scored per prompt.
    category_labels: ClassVar[tuple[str, ...]] = ()
    #: Why an OpenAI-compatible endpoint cannot serve the family (the remote backend refuses it
    #: with this reason when the guard is built); None when it can.
    remote_unsupported: ClassVar[str | None] = None

    # The string to use for a missing response (the reference passes the literal "None").
    none_text: str = field(default="None")
    # Fast mode: the start of the answer forced after the prompt, up to the first task's key
    # (e.g. ``...Request:``); the label continuations are scored after it. Subclasses set it.
    fast_prefix: str = field(default="")
    # Stop strings for reasoning mode: generation ends once one is produced (e.g. ``</result>``).
    stop: tuple[str, ...] = field(default=())
    # A guard trained on a policy (guardrail.training): the policy its prompt shows and whose
    # codes its answer names. Loaded from the model (guardrail_policy.yaml), never guessed.
    trained_policy: Policy | None = field(default=None)
    # Conversations, for single-turn families: how many turns before the checked one are shown
    # as context, and at most how many characters of them (the end is kept).
    context_turns: int = field(default=1)
    context_chars: int = field(default=4000)

    @abstractmethod
    def render(self, item: ModerationInput) -> RenderedPrompt:
        """Build the prompt for one request."""

    @abstractmethod
    def parse(self, output: str, item: ModerationInput) -> ParsedOutput:
        """Read the labels from one model output."""

    def answer_end(self, text: str, prompt: RenderedPrompt | None = None) -> int | None:
        """Where the model's complete answer ends in ``text`` (its output so far for
        ``prompt``), or None while the answer is not complete (or must not be cut early).

        Reasoning mode stops generating there: backends use :attr:`stop` as a cheap pre-filter
        and call this once a stop string appears, so a stop string that does not end the
        model's own answer (one quoted inside the reasoning) does not end the output. The result
        must be stable as text is appended: once an end is found, every longer text gives the
        same one. The default: right after the first stop string.
        """
        ends = [text.index(s) + len(s) for s in self.stop if s and s in text]
        return min(ends) if ends else None

    def answer_complete(self, text: str, prompt: RenderedPrompt | None = None) -> bool:
        """Whether ``text`` (an output so far for ``prompt``) holds the model's complete answer."""
        return self.answer_end(text, prompt) is not None

    # ------------------------------------------------------------------- policies
    def default_policy(self) -> Policy | None:
        """The policy when none is given: the family's taxonomy, or the trained policy."""
        return self.trained_policy

    def policy_section(self, policy: Policy) -> str:
        """The policy as a guard trained on it reads it (appended to the instruction):
        one ``CODE: Name. Description`` line per category, then how to answer with codes."""
        lines = []
        for c in policy.categories:
            line = f"{c.code}: {c.name.rstrip('.')}."
            if c.description:
                line += " " + " ".join(c.description.split())
            lines.append(line)
        return (
            "Harm categories of the policy:\n" + "\n".join(lines) + "\n"
            "If the request or the response is harmful, name the categories it violates by code "
            'on a line "Categories: " in the result, comma-separated; write "Categories: None" '
            "when nothing is harmful.\n\n"
        )

    def categories_text(self, categories: Sequence[str] | None) -> str:
        """The ``Categories:`` line that a guard trained on a policy writes after its labels
        (empty for guards without a trained policy)."""
        if self.trained_policy is None:
            return ""
        return "\nCategories: " + (", ".join(categories) if categories else "None")

    # ------------------------------------------------------------- conversations
    def conversation_view(self, turns: Sequence[Any]) -> ConversationView:
        """What of a conversation (``turns``: :class:`guardrail.conversation.Message` objects,
        validated, images not yet decoded) this family shows its model.

        Single-turn families (the default, GuardReasoner and GuardReasoner-VL) check the *last*
        turn that is not a system turn, in their single-turn format:

        - ends with a user (or tool) turn: that turn is the request; its images are the
          request's images;
        - ends with an assistant turn: it is the response, the user turn before it the request
          (with its images); the verdict's ``harmful`` follows the response task only.

        The :attr:`context_turns` turns before the checked request (default 1: usually the
        assistant turn the user answers) are shown as quoted context above the request text, at
        most :attr:`context_chars` characters of them (the end kept); their images are not sent
        (each was checked when it was sent). Earlier turns are not shown: they were checked
        when they were sent, and a verdict must not be re-litigated on every later turn (a
        refused request would otherwise block the rest of the chat). System turns are the
        app's own instructions and are not shown. See docs/conversations.md.
        """
        body = [t for t in turns if t.role != "system"]
        if not body:
            from guardrail.errors import InputError

            raise InputError("the conversation has no user, assistant or tool turn to check")
        last = len(body) - 1
        response_only = body[last].role == "assistant"
        response = None
        if response_only:
            response = body[last].text or ""
            req = last - 1
            while req >= 0 and body[req].role == "assistant":
                req -= 1
        else:
            req = last
        request = body[req] if req >= 0 else None
        images = tuple(request.images) if request is not None else ()
        prompt = request.text if request is not None else None
        context = body[max(0, req - self.context_turns) : max(req, 0)] if self.context_turns > 0 else []
        if context:
            prompt = self._with_context(context, prompt)
        return ConversationView(
            prompt=prompt, response=response, images=images, response_only=response_only,
            videos=tuple(getattr(request, "videos", ())), audios=tuple(getattr(request, "audios", ())),
        )  # fmt: skip

    def _with_context(self, context: Sequence[Any], prompt: str | None) -> str:
        speaker = {"user": "Human user", "assistant": "AI assistant", "tool": "Tool result"}
        lines = [f"{speaker.get(t.role, t.role)}: {t.text if t.text is not None else '(no text)'}" for t in context]
        text = "\n".join(lines)
        if len(text) > self.context_chars:
            text = "..." + text[len(text) - self.context_chars :]
        return f"[Earlier in the conversation]\n{text}\n[Current message]\n{prompt or ''}"
    # ------------------------------------------------------------------- prefix caching
    def fixed_prefix(self) -> tuple[Part, ...]:
        """The leading parts shared by every prompt this profile renders: what local backends
        evaluate once and reuse (prefix caching), and what stays byte-identical across requests
        for an engine's prefix cache.

        Derived, not declared: the prompts of a few probe requests (text, text + response,
        response only, an image where the profile takes images) are rendered, and their common
        leading parts kept; where they first differ, the common start of two text parts is
        kept. So it follows any option that changes the template (``system_prompt``...),
        and a new profile gets it without code.

        >>> from guardrail.profiles import GuardReasonerVLProfile
        >>> GuardReasonerVLProfile().fixed_prefix()[-1]
        'user\\nHuman user:\\n'
        """
        key = (type(self), repr(self))
        cached = _FIXED_PREFIXES.get(key)
        if cached is None:
            cached = _common_parts(self._probe_renders())
            if len(_FIXED_PREFIXES) > 64:
                _FIXED_PREFIXES.clear()
            _FIXED_PREFIXES[key] = cached
        return cached

    def _probe_renders(self) -> list[tuple[Part, ...]]:
        probes = [
            ModerationInput(prompt="a"),
            ModerationInput(prompt="b", response="c"),
            ModerationInput(response="d"),
        ]
        if self.supports_images:
            probes.append(ModerationInput(images=(_PROBE_IMAGE,)))
        out = []
        for probe in probes:
            try:
                out.append(tuple(self.render(probe).parts))
            except Exception:  # noqa: BLE001 - a probe the profile refuses tells nothing
                continue
        return out

    def category_prompts(self, item: ModerationInput) -> tuple[tuple[str, RenderedPrompt], ...]:
        """A scoring-only family's prompts for ``item``: ``(category code, prompt)`` pairs, each
        scored with :attr:`category_labels` (see :func:`guardrail.fast.plan`)."""
        raise NotImplementedError(f"the {self.name} profile is not a per-category classifier")

    # ------------------------------------------------------------ cascade by reasoning
    def cascade_first(self) -> Profile | None:
        """For a family that reasons before its label (no label probabilities to score): the
        cheaper variant of this profile that ``mode="cascade"`` generates with first; this
        profile re-runs only the checks :meth:`cascade_escalates` picks (see
        :mod:`guardrail.moderation`). None (the default): cascade is the fast pass (label
        scores) with reasoning in the uncertainty band."""
        return None

    def cascade_escalates(self, verdict: Any, item: ModerationInput) -> bool:
        """Whether the :meth:`cascade_first` pass's ``verdict`` (a model verdict, or a policy
        verdict for an unparsable output; never a backend error) is re-checked with this
        profile. Default: when the output was unparsable."""
        return verdict.decided_by != "model"

    # ----------------------------------------------------------------------------- helpers
    def required_tasks(self, item: ModerationInput) -> tuple[str, ...]:
        """The tasks whose label must be present for the output to count as parsed."""
        need = []
        if item.has_request:
            need.append("request")
        if item.has_response:
            need.append("response")
        return tuple(need)

    # ------------------------------------------------------------------------- fast mode
    def fast_tasks(self, item: ModerationInput) -> tuple[str, ...]:
        """The tasks whose labels the fast pass enumerates, in output order: the tasks the
        request needs (request; response and refusal when a response is given) and every task
        written before them (a response-only check still passes the ``Request:`` line)."""
        needed = set(self.required_tasks(item))
        if item.has_response and "refusal" in self.tasks:
            needed.add("refusal")
        last = max((i for i, t in enumerate(self.tasks) if t in needed), default=0)
        return self.tasks[: last + 1]

    def fast_labels(self, task: str) -> tuple[str, ...]:
        """The labels the fast pass enumerates for ``task`` (default: the task's two labels;
        a graded family adds ``"controversial"``, counted as harmful unless the guard allows
        controversial answers)."""
        return TASK_LABELS[task]

    def answer_text(self, labels: Mapping[str, str | None], tasks: Sequence[str]) -> str:
        """The label lines that follow :attr:`fast_prefix` for ``labels`` over ``tasks``.

        >>> from guardrail.profiles import GuardReasonerVLProfile
        >>> GuardReasonerVLProfile().answer_text({"request": "harmful", "response": "unharmful"},
        ...                                      ("request", "response"))
        ' harmful\\nResponse: unharmful'
        """
        parts = []
        for i, task in enumerate(tasks):
            label = labels.get(task) or self.none_text
            parts.append(" " + label if i == 0 else f"\n{self.answer_keys[task]}: {label}")
        return "".join(parts)

    def fast_output(self, labels: Mapping[str, str | None]) -> str:
        """A complete answer with ``labels`` (``None`` where a task does not apply), as the model
        writes it after :attr:`fast_prefix`; what a fast-mode verdict reports as ``raw_output``."""
        return self.fast_prefix + self.answer_text(labels, self.tasks) + self.answer_suffix

    # ------------------------------------------------------------- writing answers
    # The inverse of parse(): the training targets, scripted outputs (guardrail.testing) and,
    # through answer_text(), the fast-mode answers are all written here.
    def answer_head(self, reasoning: str) -> str:
        """What comes before the first label line of a complete answer that reasons ``reasoning``."""
        raise NotImplementedError(f"the {self.name} profile does not write answers")

    def answer(
        self, reasoning: str, labels: Mapping[str, str | None], categories: Sequence[str] | None = None
    ) -> str:
        """A complete answer in the family's format: ``reasoning``, then a line per task of
        :attr:`tasks` with its label (``None`` where ``labels`` has none), then, for a guard
        trained on a policy, the ``Categories:`` line with ``categories``.

        >>> from guardrail.profiles import GuardReasonerVLProfile
        >>> GuardReasonerVLProfile().answer("It asks for a cake.", {"request": "unharmful"})
        '<think>\\nIt asks for a cake.\\n</think>\\n<result>\\nRequest: unharmful\\nResponse: None\\n</result>'
        """
        first_key = self.answer_keys[self.tasks[0]] + ":"
        return (
            self.answer_head(reasoning)
            + first_key
            + self.answer_text(labels, self.tasks)
            + self.categories_text(categories)
            + self.answer_suffix
        )

    def contradiction(self, reasoning: str | None, labels: Mapping[str, str | None]) -> str | None:
        """What the reasoning concludes against the result's labels, or ``None`` (see
        :mod:`guardrail.profiles.consistency`; a family with another wording overrides this)."""
        from guardrail.profiles.consistency import contradiction

        return contradiction(reasoning, labels)

    # ------------------------------------------------------------------- internals
    def _finish(
        self,
        labels: dict[str, str | None],
        reasoning: str | None,
        item: ModerationInput,
        categories: tuple[str, ...] = (),
    ) -> ParsedOutput:
        missing = [t for t in self.required_tasks(item) if labels.get(t) is None]
        if missing:
            return ParsedOutput(labels, reasoning, ok=False, error="no label for " + ", ".join(missing))
        return ParsedOutput(labels, reasoning, ok=True, categories=categories)


_CATEGORIES_LINE = re.compile(r"(?im)^[ \t*#>-]*Categories[ \t]*:[ \t]*([^\n]*)")


def read_categories(block: str) -> tuple[str, ...]:
    """The codes of the first ``Categories:`` line of an answer block (``None`` means none).

    >>> read_categories("Request: harmful\\nCategories: S1, s9\\n")
    ('S1', 's9')
    """
    m = _CATEGORIES_LINE.search(block)
    if not m:
        return ()
    codes = [c.strip().strip(".*`'\"") for c in m.group(1).split(",")]
    return tuple(dict.fromkeys(c for c in codes if c and c.lower() not in ("none", "n/a", "-")))


# Label regexes follow the reference evaluation code: case-insensitive, first match wins;
# "harmless" means unharmful and "none" is no label (see labels.normalise_label: the reference
# maps it to unharmful, a moderation verdict must not).
_LABEL_PATTERNS: dict[str, tuple[str, str]] = {
    "request": ("Request", r"harmful|unharmful|none|harmless"),
    "response": ("Response", r"harmful|unharmful|none|harmless"),
    "refusal": ("Completion", r"refusal|compliance|none"),
}


def label_regex(task: str, *, line_start: bool = False) -> re.Pattern[str]:
    key, alternatives = _LABEL_PATTERNS[task]
    prefix = r"(?m)^[ \t*#>-]*" if line_start else ""
    return re.compile(prefix + key + r"\s*:\s*(" + alternatives + r")", re.IGNORECASE)


_FIXED_PREFIXES: dict[tuple[type, str], tuple[Part, ...]] = {}
_PROBE_IMAGE = object()  # renders never look inside an image


def _common_parts(renders: Sequence[Sequence[Part]]) -> tuple[Part, ...]:
    """The leading parts common to every rendering (the common start of the first text parts
    that differ included); () for fewer than two renderings."""
    if len(renders) < 2:
        return ()
    out: list[Part] = []
    for column in zip(*renders, strict=False):
        first = column[0]
        if all(p == first for p in column[1:]):
            out.append(first)
            continue
        if all(isinstance(p, str) for p in column):
            head = os.path.commonprefix(list(column))
            if head:
                out.append(head)
        break
    return tuple(out)


def merge_text(parts: list[Part]) -> list[Part]:
    """Join adjacent text parts and drop empty ones.

    Backends tokenize each run of text between special tokens as one string, exactly as the
    reference tokenizer does with the joined prompt, so runs must not be split.
    """
    out: list[Part] = []
    for p in parts:
        if isinstance(p, str):
            if not p:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + p
                continue
        out.append(p)
    return out
