"""The :class:`Guard`: moderate requests and responses with a reasoning guard model."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from guardrail import fast, moderation
from guardrail.backends.base import Backend, GenerationOptions
from guardrail.batching import BatchingOptions, MicroBatcher
from guardrail.cache import VerdictCache, guard_fingerprint, request_key
from guardrail.errors import ConfigurationError, UnsupportedError
from guardrail.fast import Mode
from guardrail.inputs import InputLimits, Prepared, check_batch, prepare
from guardrail.moderation import Work
from guardrail.observers import Observer, RequestInfo, caller, notify
from guardrail.policies import Policy, resolve_policy
from guardrail.profiles import Profile, effective_policy, get_profile
from guardrail.stats import GuardStats
from guardrail.verdict import FailurePolicy, Verdict, validate_policy

__all__ = ["Guard"]

_O = TypeVar("_O", bound=Observer)


class Guard:
    """Decide whether a request (text, images or both) and an AI response are harmful.

    Build one with a factory (:meth:`from_pretrained`, :meth:`from_gguf`, :meth:`from_endpoint`;
    each takes the options below next to its backend's) or from a backend object
    (``Guard(backend, ...)``)::

        guard = Guard.from_pretrained("yueliu1999/GuardReasoner-VL-Eco-3B")
        verdict = guard.moderate(prompt="How do I pick a lock?", images=["photo.png"])
        if not verdict.allowed: ...

    Options:

    - ``profile``: prompt/parse profile name or instance (default: from the model's config,
      else ``"guardreasoner-vl"``).
    - ``max_new_tokens``: generation budget (default: the profile's reference, 4096 for
      GuardReasoner-VL).
    - ``on_parse_error``: what an unparsable model output gives: ``"block"`` (default,
      fail closed), ``"allow"`` or ``"raise"`` (:class:`~guardrail.errors.ParseError`).
    - ``on_error``: the same for backend failures (the exception is raised with ``"raise"``),
      timeouts included.
    - ``timeout_s``: bound on the model's generation per call (default: none). An output not
      finished in time is a backend failure for ``on_error`` (blocked by default), never a
      truncated verdict. Enforced by every backend (transformers ``max_time``, llama.cpp between
      tokens and inside prompt evaluation, remote as its request deadline).
    - ``limits``: :class:`~guardrail.inputs.InputLimits` for texts and images.

    Speed (see docs/performance.md):

    - ``mode``: ``"reasoning"`` (default: the model reasons, then answers), ``"fast"`` (no
      reasoning: P(harmful) from the label probabilities after a forced answer prefix, one
      forward pass) or ``"cascade"`` (fast first, reasoning only when a score falls in
      ``cascade_band``; a family that reasons before its label, gpt-oss-safeguard, cascades by
      reasoning effort instead: see ``Profile.cascade_first``). Every check method also takes
      ``mode=`` per call.
    - ``threshold``: a task is harmful when its score is at least this (default 0.5).
    - ``cascade_band``: ``(low, high)``, default ``(0.2, 0.8)``: cascade reasons when
      ``low <= score <= high``.
    - ``batching``: micro-batch concurrent async calls (default True; a
      :class:`~guardrail.batching.BatchingOptions` to tune, False to turn off).
    - ``cache``: a :class:`~guardrail.cache.VerdictCache` (or True for one with default bounds);
      off by default.

    Policies and conversations (docs/policies.md, docs/conversations.md):

    - ``policy``: a :class:`~guardrail.policies.Policy`, a built-in policy name (``"mlcommons"``,
      ``"openai-moderation"``) or a dict: the harm categories checked and each one's action.
      Families that render categories use its text; a fixed-prompt family (GuardReasoner,
      GuardReasoner-VL) takes only the policy it was trained on and raises
      :class:`~guardrail.policies.PolicyError` otherwise. Every check method takes ``policy=``
      per call too. Default: the family's own taxonomy, or the policy the guard was trained on.
    - ``controversial``: for families with a graded answer (Qwen3Guard's "Controversial"):
      ``"block"`` (default: counts as harmful) or ``"allow"``.
    - ``messages=`` on every check method: a whole conversation instead of
      ``prompt``/``response``/``images``.

    ``on_verdict``: a function ``fn(verdict, info)`` (or a list of them) called with every
    verdict the guard returns; see :meth:`add_observer`.

    ``guard.stats`` counts what the guard did (:class:`~guardrail.stats.GuardStats`).

    Invalid input always raises :class:`~guardrail.errors.InputError`; it never reaches the model
    and is never turned into a verdict. One ``Guard`` is safe to share between threads and tasks.
    """

    def __init__(
        self,
        backend: Backend,
        profile: str | Profile | None = None,
        *,
        max_new_tokens: int | None = None,
        on_parse_error: FailurePolicy = "block",
        on_error: FailurePolicy = "block",
        limits: InputLimits | None = None,
        profile_options: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        mode: Mode = "reasoning",
        threshold: float = 0.5,
        cascade_band: tuple[float, float] = (0.2, 0.8),
        batching: bool | BatchingOptions | None = True,
        cache: bool | VerdictCache | None = None,
        on_verdict: Observer | Sequence[Observer] | None = None,
        policy: Policy | str | Mapping[str, Any] | None = None,
        controversial: Literal["block", "allow"] = "block",
    ):
        if not isinstance(backend, Backend):
            raise ConfigurationError(f"backend must be a guardrail Backend, not {type(backend).__name__}")
        self.backend = backend
        profile_options = dict(profile_options or {})
        trained = getattr(backend, "trained_policy", None)
        if trained is not None and not isinstance(profile, Profile):
            profile_options.setdefault("trained_policy", trained)
        if profile is None:  # detected from the model: with the options the model calls for
            profile = backend.default_profile()
            for key, value in backend.default_profile_options().items():
                profile_options.setdefault(key, value)
        self.profile = get_profile(profile, **profile_options)
        backend.check_profile(self.profile)
        self.policy: Policy | None = resolve_policy(policy)
        effective_policy(self.profile, self.policy)  # a policy the family cannot take fails here
        if controversial not in ("block", "allow"):
            raise ConfigurationError(f"controversial must be 'block' or 'allow'; got {controversial!r}")
        self.controversial = controversial
        self.on_parse_error = validate_policy("on_parse_error", on_parse_error)
        self.on_error = validate_policy("on_error", on_error)
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ConfigurationError("max_new_tokens must be at least 1")
        self.max_new_tokens = max_new_tokens or self.profile.default_max_new_tokens
        self.limits = limits or InputLimits()
        if timeout_s is not None and not timeout_s > 0:
            raise ConfigurationError("timeout_s must be > 0 (or None for no bound)")
        self.timeout_s = timeout_s
        self.mode: Mode = fast.validate_mode(mode)
        self.threshold = fast.validate_threshold(threshold)
        self.cascade_band = fast.validate_band(cascade_band)
        self._check_mode(self.mode)
        self.stats = GuardStats()
        if cache is True:
            cache = VerdictCache()
        if cache not in (None, False) and not isinstance(cache, VerdictCache):
            raise ConfigurationError(
                f"cache must be a VerdictCache, True or None; got {type(cache).__name__}"
            )
        self.cache: VerdictCache | None = cache if isinstance(cache, VerdictCache) else None
        if batching is True:
            batching = BatchingOptions()
        if batching not in (None, False) and not isinstance(batching, BatchingOptions):
            raise ConfigurationError(f"batching must be a BatchingOptions, True or False; got {batching!r}")
        self.batching: BatchingOptions | None = batching or None
        self._batcher: MicroBatcher[Work] | None = None
        self._observers: tuple[Observer, ...] = ()
        for observer in [on_verdict] if callable(on_verdict) else list(on_verdict or ()):
            self.add_observer(observer)
        if self.batching is not None:
            self._batcher = MicroBatcher(
                self._run_batch, self.batching, concurrency=getattr(backend, "batch_concurrency", 1),
                on_batch=self._count_microbatch,
            )  # fmt: skip

    # ------------------------------------------------------------------------ factories
    # Each takes the guard's own keyword arguments (those of Guard: profile, max_new_tokens,
    # on_parse_error, mode...) and passes every other option to the backend it builds.
    @classmethod
    def from_pretrained(
        cls, path_or_hub_id: str | os.PathLike[str], backend: str = "transformers", **options: Any
    ) -> Guard:
        """Load a guard model with the backend named ``backend`` (see
        :data:`guardrail.backends.BACKENDS`: ``"transformers"``, ``"llamacpp"``, ``"remote"``).

        ``options``: the guard's own (see :class:`Guard`), and the backend's loader options;
        for transformers ``device``, ``dtype``, ``device_map``, ``trust_remote_code``,
        ``revision``, ``prefix_cache`` (default on: reuse the instruction's KV cache) and the
        model's ``from_pretrained`` keywords (docs/backends/transformers.md).
        """
        from guardrail.backends import _load

        return cls._build(lambda opts: _load(backend, path_or_hub_id, **opts), options)

    @classmethod
    def from_endpoint(cls, base_url: str, model: str, api_key: str | None = None, **options: Any) -> Guard:
        """Use a guard served by an OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp server).

        ``base_url`` includes ``/v1``; ``model`` is the served model name. ``options``: the
        guard's own (see :class:`Guard`), the others go to
        :class:`~guardrail.backends.remote.RemoteBackend` (``timeout``, ``max_retries``,
        ``max_concurrency``, ``extra_body``...; docs/backends/remote.md). The profile defaults
        to ``guardreasoner-vl``.
        """
        from guardrail.backends.remote import RemoteBackend

        return cls._build(lambda opts: RemoteBackend(base_url, model, api_key, **opts), options)

    @classmethod
    def from_gguf(
        cls,
        model_path: str | os.PathLike[str],
        mmproj: str | os.PathLike[str] | bool | None = None,
        *,
        filename: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> Guard:
        """Load a GGUF guard for on-device CPU moderation with llama.cpp (``llamacpp`` extra).

        ``model_path`` is the model ``.gguf`` (or a directory with one, and its ``mmproj*.gguf``);
        ``mmproj`` the vision projector, needed for images. Or ``model_path`` is a Hugging Face
        repo ``"org/name"``: ``filename`` and ``mmproj`` are then paths or globs in it
        (``filename="*Q4_K_M.gguf"``, ``mmproj="*mmproj*"``; each must match exactly one file),
        ``mmproj=False`` for none; ``revision`` a branch, tag or commit, ``cache_dir`` the Hugging Face cache; offline
        (``HF_HUB_OFFLINE=1``) the cached snapshot is used (docs/hub.md). ``options``: the guard's own (see
        :class:`Guard`), the others go to the llama.cpp backend: ``n_threads`` (default:
        llama-cpp-python's), ``n_ctx`` (context tokens, default 8192), ``n_batch``,
        ``image_min_pixels``/``image_max_pixels``, ``prefix_cache`` (default on), ``verbose`` and
        llama-cpp-python's ``Llama``
        keywords (docs/backends/llamacpp.md).
        """
        from guardrail.backends.llamacpp import LlamaCppBackend

        hub = {"filename": filename, "revision": revision, "cache_dir": cache_dir}
        options.update({k: v for k, v in hub.items() if v is not None})
        return cls._build(lambda opts: LlamaCppBackend._load(model_path, mmproj, **opts), options)

    @classmethod
    def _build(cls, make_backend: Callable[[dict[str, Any]], Backend], options: dict[str, Any]) -> Guard:
        """The factories' shared end: the guard's own options (:data:`_GUARD_OPTIONS`) are taken
        out of ``options``, the rest build the backend; a guard that cannot be built closes it."""
        own = {k: options.pop(k) for k in _GUARD_OPTIONS if k in options}
        backend = make_backend(options)
        try:
            return cls(backend, **own)
        except BaseException:
            backend.close()
            raise

    # ------------------------------------------------------------------------- checking
    @property
    def generation_options(self) -> GenerationOptions:
        stop = tuple(self.profile.stop)
        return GenerationOptions(
            max_new_tokens=self.max_new_tokens, stop=stop, timeout_s=self.timeout_s,
            answer_end=self.profile.answer_end if stop else None,
        )  # fmt: skip

    def moderate(self, prompt: Any = None, response: Any = None, images: Any = None, *,
                 messages: Any = None, policy: Any = None, mode: Mode | None = None,
                 videos: Any = None, audios: Any = None) -> Verdict:  # fmt: skip
        """Check one request (``prompt`` and/or ``images``) and optionally the AI ``response``,
        or a conversation (``messages``: the last turn is checked, see docs/conversations.md).

        ``policy`` overrides the guard's policy and ``mode`` its mode for this call
        (``"reasoning"``, ``"fast"``, ``"cascade"``). ``videos`` / ``audios``: clips for profiles
        that take them (see :mod:`guardrail.media` for the accepted sources)."""
        item = _with_media(_item(prompt, response, images, messages, policy), videos, audios)
        return self._moderate([item], mode, "moderate")[0]

    async def amoderate(self, prompt: Any = None, response: Any = None, images: Any = None, *,
                        messages: Any = None, policy: Any = None, mode: Mode | None = None,
                        videos: Any = None, audios: Any = None) -> Verdict:  # fmt: skip
        """Async twin of :meth:`moderate`; never blocks the event loop. Concurrent calls share
        backend batches (see ``batching``)."""
        item = _with_media(_item(prompt, response, images, messages, policy), videos, audios)
        verdicts = await self._amoderate([item], mode, "amoderate")
        return verdicts[0]

    def moderate_batch(
        self, items: Sequence[Mapping[str, Any]], *, mode: Mode | None = None
    ) -> list[Verdict]:
        """Check several requests with batched model calls; verdicts come back in order.

        Each item is a dict with any of ``prompt``, ``response``, ``images``, ``videos``,
        ``audios``, or with ``messages``; and optionally ``policy``. All items are validated
        first: one invalid item raises ``InputError`` and nothing is checked.
        """
        return self._moderate(items, mode, "moderate_batch")

    async def amoderate_batch(
        self, items: Sequence[Mapping[str, Any]], *, mode: Mode | None = None
    ) -> list[Verdict]:
        """Async twin of :meth:`moderate_batch`."""
        return await self._amoderate(items, mode, "amoderate_batch")

    def _moderate(self, items: Sequence[Mapping[str, Any]], mode: Mode | None, method: str) -> list[Verdict]:
        start = time.perf_counter()
        mode = self._resolve_mode(mode)
        prepared = self._prepare(items)
        if not prepared:
            return []
        works = [Work(p, mode, start) for p in prepared]
        keys, outcomes = self._lookup(works, start)
        misses = [i for i, o in enumerate(outcomes) if o is None]
        if misses:
            computed = moderation.run_sync(self.backend, self._pass([works[i] for i in misses]))
            self._fill(outcomes, misses, computed, keys)
        return self._observed(_raise_first(outcomes), works, method)

    async def _amoderate(
        self, items: Sequence[Mapping[str, Any]], mode: Mode | None, method: str
    ) -> list[Verdict]:
        start = time.perf_counter()
        mode = self._resolve_mode(mode)
        check_batch(items)
        if any(isinstance(item, Mapping) and _has_media(item) for item in items):
            # decoding (and hashing) images is CPU work: keep it off the event loop
            prepared = await asyncio.to_thread(self._prepare, items)
            works = [Work(p, mode, start) for p in prepared]
            keys, outcomes = await asyncio.to_thread(self._lookup, works, start)
        else:
            prepared = self._prepare(items)
            works = [Work(p, mode, start) for p in prepared]
            keys, outcomes = self._lookup(works, start)
        if not prepared:
            return []
        misses = [i for i, o in enumerate(outcomes) if o is None]
        if misses:
            todo = [works[i] for i in misses]
            if self._batcher is not None:
                computed = await self._batcher.submit(todo)
            else:
                computed = await moderation.run_async(self.backend, self._pass(todo))
            self._fill(outcomes, misses, computed, keys)
        return self._observed(_raise_first(outcomes), works, method)

    # ------------------------------------------------------------------------ observers
    def add_observer(self, observer: _O) -> _O:
        """Call ``observer(verdict, info)`` with every verdict this guard returns, from any entry
        point (cache hits and policy verdicts included); ``info`` is a
        :class:`~guardrail.observers.RequestInfo`. Returns ``observer`` (usable as a decorator).
        An observer that raises is logged and never changes the verdict."""
        if not callable(observer):
            raise ConfigurationError(f"an observer must be callable, not {type(observer).__name__}")
        self._observers = (*self._observers, observer)
        return observer

    def remove_observer(self, observer: Observer) -> None:
        """Stop calling ``observer`` (a ``ValueError`` if it was not added)."""
        observers = list(self._observers)
        observers.remove(observer)
        self._observers = tuple(observers)

    def _observed(self, verdicts: list[Verdict], works: Sequence[Work], method: str) -> list[Verdict]:
        if self._observers:
            source, stage = caller()
            infos = [
                RequestInfo(w.prepared.item, method, i, w.mode, source, stage) for i, w in enumerate(works)
            ]
            self._notify(verdicts, infos)
        return verdicts

    def _notify(self, verdicts: Sequence[Verdict], infos: Sequence[RequestInfo]) -> None:
        """Tell the observers about ``verdicts`` (also used by the server for its own verdicts)."""
        notify(self._observers, verdicts, infos)

    # --------------------------------------------------------------------- integrations
    def check(self, fn: Any = None, /, **options: Any) -> Any:
        """Decorator that guards a handler: ``@guard.check`` or ``@guard.check(...)``.

        Options: ``input=True``, ``output=True``, ``on_violation`` (``"raise"``, ``"replace"`` or
        a function of the :class:`~guardrail.errors.GuardViolation`), ``extract`` (where the
        request/response are), ``message`` (the replacement), ``window`` (characters of streamed
        output per check, ``None`` for one check at the end), ``optimistic`` (release streamed
        text before its check), ``allow_paths`` (read image strings as local files; off, the
        arguments may come from users). Works on sync/async functions and generators and on methods.
        See :mod:`guardrail.integrations.decorator`.
        """
        from guardrail.integrations.decorator import check

        return check(self, fn, **options)

    def as_runnable(self, **options: Any) -> Any:
        """A LangChain runnable that checks its input and passes it on unchanged.

        Options: ``key``/``image_key`` (dict inputs), ``name``, ``allow_paths``. Needs the ``langchain`` extra.
        See :mod:`guardrail.integrations.langchain`.
        """
        from guardrail.integrations.langchain import as_runnable

        return as_runnable(self, **options)

    def wrap(self, runnable: Any, **options: Any) -> Any:
        """A LangChain runnable that checks ``runnable``'s input and its output (with the request).

        Options: ``input``, ``output``, ``key``/``image_key``/``output_key``, ``fallback`` (returned
        instead of raising ``GuardViolation``), ``window``, ``optimistic``, ``name``,
        ``allow_paths`` (read image strings as local files; off). Needs the
        ``langchain`` extra. See :mod:`guardrail.integrations.langchain`.
        """
        from guardrail.integrations.langchain import wrap

        return wrap(self, runnable, **options)

    # -------------------------------------------------------------------------- helpers
    def _prepare(self, items: Sequence[Mapping[str, Any]]) -> list[Prepared]:
        check_batch(items)
        return [prepare(self.profile, item, self.limits, self.policy) for item in items]

    def _check_mode(self, mode: Mode) -> None:
        if self.profile.scoring_only and not getattr(self.backend, "supports_scoring", False):
            raise UnsupportedError(
                f"the {self.profile.name!r} guard is a classifier scored from label probabilities in every "
                f"mode, which the {self.backend.name!r} backend cannot give; use the transformers or "
                "llama.cpp backend"
            )
        reasons_first = mode == "cascade" and self.profile.cascade_first() is not None  # no scores needed
        if mode != "reasoning" and not reasons_first and not getattr(self.backend, "supports_scoring", False):
            raise UnsupportedError(
                f"mode={mode!r} needs label probabilities, which the {self.backend.name!r} backend cannot "
                "give; use mode='reasoning', or a backend with log-probabilities (transformers, "
                "llama.cpp, a vLLM endpoint)"
            )

    def _resolve_mode(self, mode: Mode | None) -> Mode:
        if mode is None:
            return self.mode
        mode = fast.validate_mode(mode)
        self._check_mode(mode)
        return mode

    def _settings(self) -> moderation.Settings:
        return moderation.Settings(
            profile=self.profile, options=self.generation_options, threshold=self.threshold,
            band=self.cascade_band, on_parse_error=self.on_parse_error, on_error=self.on_error,
            model=self.backend.model_name, backend=self.backend.name, controversial=self.controversial,
        )  # fmt: skip

    def _pass(self, works: Sequence[Work]) -> Any:
        return moderation.moderation_pass(self._settings(), works, self.stats, time.perf_counter)

    async def _run_batch(self, works: list[Work]) -> list[Any]:
        """The micro-batcher's runner: one pass over requests from several callers."""
        return await moderation.run_async(self.backend, self._pass(works))

    def _count_microbatch(self, size: int) -> None:
        self.stats.incr("microbatches")
        self.stats.incr("microbatched_items", size)

    def _fingerprint(self) -> str:
        settings = {
            "backend": self.backend.name, "model": self.backend.model_name,
            # which backend instance or endpoint answers (Backend.cache_identity), not only names
            "identity": self.backend.cache_identity,
            "max_new_tokens": self.max_new_tokens, "threshold": self.threshold,
            "cascade_band": list(self.cascade_band), "controversial": self.controversial,
        }  # fmt: skip
        return guard_fingerprint(settings, self.profile)

    def _lookup(self, works: Sequence[Work], start: float) -> tuple[list[str] | None, list[Any]]:
        """Cache keys and the verdicts found (None where the request must be checked)."""
        self.stats.incr("checks", len(works))
        if self.cache is None:
            return None, [None] * len(works)
        fingerprint = self._fingerprint()
        keys = [request_key(fingerprint, w.prepared.item, w.mode) for w in works]
        outcomes: list[Any] = []
        for key in keys:
            hit = self.cache.get(key)
            if hit is None:
                outcomes.append(None)
            else:
                latency = (time.perf_counter() - start) * 1000.0
                outcomes.append(hit.model_copy(update={"cached": True, "latency_ms": latency}))
        hits = sum(o is not None for o in outcomes)
        self.stats.incr("cache_hits", hits)
        self.stats.incr("cache_misses", len(keys) - hits)
        return keys, outcomes

    def _fill(
        self, outcomes: list[Any], indices: list[int], computed: Sequence[Any], keys: list[str] | None
    ) -> None:
        for i, outcome in zip(indices, computed, strict=True):
            outcomes[i] = outcome
            if keys is not None and self.cache is not None and isinstance(outcome, Verdict) \
                    and outcome.decided_by == "model":  # fmt: skip
                self.cache.put(keys[i], outcome)

    def close(self) -> None:
        """Release the backend's resources."""
        self.backend.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close` (closes connections bound to the running event loop)."""
        await self.backend.aclose()

    async def __aenter__(self) -> Guard:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Guard(backend={self.backend.name!r}, model={self.backend.model_name!r}, "
            f"profile={self.profile.name!r}, mode={self.mode!r})"
        )


# The guard's own options, which the factories take next to the backend's: Guard's keywords.
_GUARD_OPTIONS = tuple(
    p for p in inspect.signature(Guard.__init__).parameters if p not in ("self", "backend")
)


def _item(prompt: Any, response: Any, images: Any, messages: Any, policy: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"prompt": prompt, "response": response, "images": images}
    if messages is not None:
        item["messages"] = messages
    if policy is not None:
        item["policy"] = policy
    return item


def _with_media(item: dict[str, Any], videos: Any, audios: Any) -> dict[str, Any]:
    """``item`` with ``videos``/``audios`` keys only when given (other request shapes stay as they were)."""
    if videos is not None:
        item["videos"] = videos
    if audios is not None:
        item["audios"] = audios
    return item


def _has_media(item: Mapping[str, Any]) -> bool:
    return bool(item.get("images") or item.get("videos") or item.get("audios"))


def _raise_first(outcomes: Sequence[Any]) -> list[Verdict]:
    """The verdicts, or the first per-request exception (a batch call raises as a whole)."""
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return list(outcomes)
