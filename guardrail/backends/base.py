"""The backend interface: turn rendered prompts into model output text.

A backend knows nothing about verdicts. It receives :class:`~guardrail.profiles.RenderedPrompt`
objects (prompt parts + decoded images) and returns one :class:`Generation` per prompt, in order.
Prompt building and parsing live in the profiles, verdicts are built in :mod:`guardrail.verdict`.

Contract for implementations:

- ``generate`` handles a whole batch in one call and preserves order. A failure that concerns one
  item only is returned in that item's ``Generation.error``; a failure of the whole call raises a
  :class:`~guardrail.errors.BackendError`.
- ``generate`` is safe to call from several threads at once (serialise internally if needed).
- ``agenerate`` is the async twin. The default runs ``generate`` in a worker thread so the event
  loop never blocks; natively async backends override it.
- Text parts of a prompt are user content and must be tokenized as plain text: a user who
  types ``<|im_end|>`` gets those characters, not the special token.

Scoring (optional, for fast mode): ``score`` receives :class:`ScoreRequest` objects (a prompt, a
forced answer prefix and candidate continuations) and returns, per request, the log-probability
of each continuation after prompt + prefix, every token teacher-forced. Backends that can do it
set ``supports_scoring = True``; the default raises :class:`~guardrail.errors.UnsupportedError`.
The same contract holds: one result per request, in order, per-item failures in ``error``.

Cache identity: :attr:`Backend.cache_identity` names what decides this backend's outputs (class,
model, endpoint, options) for the verdict cache, which one cache may serve to several guards.
A backend describes itself with :meth:`Backend.identity`; one that does not (or cannot, like a
wrapped in-memory model) gets an identity unique to the instance, so two backends never share
cache entries unless they say they are the same.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from guardrail.errors import UnsupportedError
from guardrail.profiles.base import AudioSlot, ImageSlot, RenderedPrompt, Special, VideoSlot

__all__ = [
    "Backend",
    "Generation",
    "GenerationOptions",
    "ScoreRequest",
    "ScoreResult",
    "prompt_tokens",
    "refuse_media",
]


@dataclass(frozen=True)
class GenerationOptions:
    """Decoding settings. The guard decodes greedily (``temperature=0``); training's rejection
    sampling uses temperature/top_p. ``max_new_tokens`` counts generated tokens, end-of-turn
    token included. ``timeout_s`` bounds the whole ``generate`` call: an output not finished in
    time is returned as an error (:class:`~guardrail.errors.BackendTimeoutError`) for that item,
    never as a truncated text.

    ``stop`` ends the output at the first stop string, unless ``answer_end`` is given (the
    profile's :meth:`~guardrail.profiles.Profile.answer_end`): then a stop string is only a
    cheap pre-filter, and the output ends once ``answer_end(text so far, prompt)`` returns a
    position (a ``</result>`` quoted inside the reasoning does not end it). Local backends call
    it each time a stop string appears; the remote backend, whose server would stop at the
    first stop string, sends none and cuts the returned text at that position instead."""

    max_new_tokens: int = 4096
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default=())
    timeout_s: float | None = None
    answer_end: Callable[[str, RenderedPrompt | None], int | None] | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def stop_end(self, text: str, prompt: RenderedPrompt | None = None) -> int | None:
        """Where the output ``text`` for ``prompt`` ends by the stop rules (right after the
        first stop string, or where ``answer_end`` says), or None when it goes on."""
        if not any(s and s in text for s in self.stop):
            return None
        if self.answer_end is not None:
            return self.answer_end(text, prompt)
        return min(text.index(s) + len(s) for s in self.stop if s and s in text)


@dataclass(frozen=True)
class Generation:
    """The output for one prompt.

    ``finish_reason`` is ``"stop"`` (end of turn or a stop string), ``"length"`` (hit
    ``max_new_tokens``) or ``"error"`` (then ``error`` holds the exception for this item).
    """

    text: str
    output_tokens: int | None = None
    finish_reason: str | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class ScoreRequest:
    """Score ``continuations`` after ``prompt`` followed by the forced answer start ``prefix``.

    ``prefix`` and the continuations are plain text of the assistant's answer (never special
    tokens). The prefix ends at a tokenizer boundary (the profile's ends with ``Request:``), so
    tokenizing prefix and continuation together or apart gives the same tokens.
    """

    prompt: RenderedPrompt
    prefix: str
    continuations: tuple[str, ...]


@dataclass(frozen=True)
class ScoreResult:
    """Per continuation, the sum of its tokens' log-probabilities (natural log), or ``error``."""

    logprobs: tuple[float, ...] = ()
    error: BaseException | None = None


class Backend(ABC):
    """Base class of all backends; see the module docstring for the contract."""

    #: Short backend name ("transformers", "llamacpp", "remote", "fake").
    name: str = "backend"

    #: Identifies the model in verdicts (path, hub id or served model name).
    model_name: str | None = None

    @abstractmethod
    def generate(self, prompts: Sequence[RenderedPrompt], options: GenerationOptions) -> list[Generation]:
        """Generate one output per prompt, in order."""

    async def agenerate(
        self, prompts: Sequence[RenderedPrompt], options: GenerationOptions
    ) -> list[Generation]:
        """Async twin of :meth:`generate`; by default runs it in a worker thread."""
        return await asyncio.to_thread(self.generate, prompts, options)

    #: Whether :meth:`score` is implemented (fast and cascade modes need it).
    supports_scoring: bool = False

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Log-probabilities of each request's continuations; see the module docstring."""
        raise UnsupportedError(
            f"the {self.name!r} backend cannot score label probabilities; fast and cascade modes "
            "need a backend that returns log-probabilities (transformers, llama.cpp, or a vLLM endpoint)"
        )

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Async twin of :meth:`score`; by default runs it in a worker thread."""
        if not self.supports_scoring:
            return self.score(requests)  # raises UnsupportedError without a thread
        return await asyncio.to_thread(self.score, requests)

    def default_profile(self) -> str | None:
        """The profile name the loaded model calls for, when the backend can tell."""
        return None

    def default_profile_options(self) -> dict[str, Any]:
        """Options of :meth:`default_profile`'s profile the loaded model calls for (Llama Guard 3
        8B's template variant); used only when the profile is detected, not given."""
        return {}

    def check_profile(self, profile: Any) -> None:  # noqa: B027 - optional hook
        """Raise a typed error (``UnsupportedError``) when this backend cannot serve ``profile``'s
        family; called when a :class:`~guardrail.Guard` is built. Default: any family."""

    def identity(self) -> dict[str, Any] | None:
        """What decides this backend's outputs (model file or endpoint, decoding-relevant
        options), as JSON-able values without secrets; ``None`` when the backend cannot tell,
        which makes :attr:`cache_identity` unique to this instance. Override it in a backend
        whose outputs are fully determined by such a description."""
        return None

    @property
    def cache_identity(self) -> str:
        """A stable string naming this backend for the verdict cache: its class and
        :meth:`identity`, else its class, model name and a per-instance token. Two backends
        share cache entries only when their identities are equal. Holds no credentials."""
        cls = type(self)
        described = self.identity()
        if described is None:
            described = {"model": self.model_name, "instance": _instance_token(self)}
        blob = json.dumps(described, sort_keys=True, default=repr, separators=(",", ":"))
        return f"{cls.__module__}.{cls.__qualname__}{blob}"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (models, connections). Safe to call twice."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`; closes resources bound to the running event loop too."""
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def prompt_tokens(
    prompt: RenderedPrompt,
    encode_text: Callable[[str], Sequence[int]],
    special_id: Callable[[str], int],
    bos: int | None = None,
) -> Iterator[Sequence[int] | ImageSlot | VideoSlot | AudioSlot]:
    """A prompt's token ids as a local backend builds them, in order: ``bos`` when the prompt
    asks for it (and the model has one), each text part tokenized as plain text (a ``<|im_end|>``
    typed by a user stays text), each template special token by name; image, video and audio
    slots are yielded as they are, for the backend to fill in (a backend that takes no video
    or audio refuses such prompts first: :func:`refuse_media`)."""
    if prompt.add_bos and bos is not None:
        yield (bos,)
    for part in prompt.parts:
        if isinstance(part, str):
            yield encode_text(part)
        elif isinstance(part, Special):
            yield (special_id(part.token),)
        elif isinstance(part, (ImageSlot, VideoSlot, AudioSlot)):
            yield part


def refuse_media(prompts: Sequence[RenderedPrompt], backend: str, *, video: bool = False,
                 audio: bool = False) -> None:  # fmt: skip
    """Raise :class:`~guardrail.errors.UnsupportedError` when a prompt carries a video (unless
    ``video``) or an audio clip (unless ``audio``) that ``backend`` cannot take."""
    for prompt in prompts:
        if prompt.videos and not video:
            raise UnsupportedError(f"the {backend} backend takes no video; use the transformers backend")
        if prompt.audios and not audio:
            raise UnsupportedError(f"the {backend} backend takes no audio; use the transformers backend")


_INSTANCES = itertools.count(1)


def _instance_token(backend: Backend) -> int:
    """A number given to ``backend`` on first use, never reused in this process (unlike ``id``)."""
    token = backend.__dict__.get("_guardrail_instance")
    if token is None:
        token = backend.__dict__.setdefault("_guardrail_instance", next(_INSTANCES))
    return token
