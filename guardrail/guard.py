"""The :class:`Guard`: moderate requests and responses with a reasoning guard model."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from guardrail import core
from guardrail.backends.base import Backend, Generation, GenerationOptions
from guardrail.core import FailurePolicy, Prepared
from guardrail.errors import ConfigurationError
from guardrail.inputs import InputLimits
from guardrail.profiles import Profile, get_profile
from guardrail.verdict import Verdict

__all__ = ["Guard"]

log = logging.getLogger("guardrail")


class Guard:
    """Decide whether a request (text, images or both) and an AI response are harmful.

    Build one with a factory (:meth:`from_pretrained`) or from a backend object::

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
    - ``on_error``: the same for backend failures (the exception is raised with ``"raise"``).
    - ``limits``: :class:`~guardrail.inputs.InputLimits` for texts and images.

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
    ):
        if not isinstance(backend, Backend):
            raise ConfigurationError(f"backend must be a guardrail Backend, not {type(backend).__name__}")
        self.backend = backend
        self.profile = get_profile(profile or backend.default_profile(), **dict(profile_options or {}))
        self.on_parse_error = core.validate_policy("on_parse_error", on_parse_error)
        self.on_error = core.validate_policy("on_error", on_error)
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ConfigurationError("max_new_tokens must be at least 1")
        self.max_new_tokens = max_new_tokens or self.profile.default_max_new_tokens
        self.limits = limits or InputLimits()

    # ------------------------------------------------------------------------ factories
    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike[str],
        backend: str = "transformers",
        *,
        profile: str | Profile | None = None,
        max_new_tokens: int | None = None,
        on_parse_error: FailurePolicy = "block",
        on_error: FailurePolicy = "block",
        limits: InputLimits | None = None,
        **options: Any,
    ) -> Guard:
        """Load a guard model. ``backend`` names the backend; ``options`` go to its loader
        (for transformers: ``device``, ``dtype``, ``device_map``, ``trust_remote_code``...)."""
        from guardrail.backends import load_backend

        return cls(
            load_backend(backend, path_or_hub_id, **options),
            profile,
            max_new_tokens=max_new_tokens,
            on_parse_error=on_parse_error,
            on_error=on_error,
            limits=limits,
        )

    @classmethod
    def from_endpoint(
        cls,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        profile: str | Profile | None = None,
        max_new_tokens: int | None = None,
        on_parse_error: FailurePolicy = "block",
        on_error: FailurePolicy = "block",
        limits: InputLimits | None = None,
        **options: Any,
    ) -> Guard:
        """Use a guard served by an OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp server).

        ``base_url`` includes ``/v1``; ``model`` is the served model name. ``options`` go to
        :class:`~guardrail.backends.remote.RemoteBackend` (``timeout``, ``max_retries``,
        ``max_concurrency``, ``extra_body``...). The profile defaults to ``guardreasoner-vl``.
        """
        from guardrail.backends.remote import RemoteBackend

        return cls(
            RemoteBackend(base_url, model, api_key, **options),
            profile,
            max_new_tokens=max_new_tokens,
            on_parse_error=on_parse_error,
            on_error=on_error,
            limits=limits,
        )

    @classmethod
    def from_gguf(
        cls,
        model_path: str | os.PathLike[str],
        mmproj: str | os.PathLike[str] | None = None,
        *,
        n_threads: int | None = None,
        n_ctx: int = 8192,
        profile: str | Profile | None = None,
        max_new_tokens: int | None = None,
        on_parse_error: FailurePolicy = "block",
        on_error: FailurePolicy = "block",
        limits: InputLimits | None = None,
        **options: Any,
    ) -> Guard:
        """Load a GGUF guard for on-device CPU moderation with llama.cpp (``llamacpp`` extra).

        ``model_path`` is the model ``.gguf`` (or a directory with one, and its ``mmproj*.gguf``);
        ``mmproj`` the vision projector, needed for images. ``options`` go to
        :meth:`~guardrail.backends.llamacpp.LlamaCppBackend.from_gguf` (``n_batch``,
        ``image_max_pixels``, ``verbose``, llama-cpp-python's ``Llama`` keywords...).
        """
        from guardrail.backends.llamacpp import LlamaCppBackend

        backend = LlamaCppBackend.from_gguf(model_path, mmproj, n_threads=n_threads, n_ctx=n_ctx, **options)
        try:
            return cls(
                backend,
                profile,
                max_new_tokens=max_new_tokens,
                on_parse_error=on_parse_error,
                on_error=on_error,
                limits=limits,
            )
        except BaseException:
            backend.close()
            raise

    # ------------------------------------------------------------------------- checking
    @property
    def generation_options(self) -> GenerationOptions:
        return GenerationOptions(max_new_tokens=self.max_new_tokens)

    def moderate(self, prompt: Any = None, response: Any = None, images: Any = None) -> Verdict:
        """Check one request (``prompt`` and/or ``images``) and optionally the AI ``response``."""
        return self.moderate_batch([{"prompt": prompt, "response": response, "images": images}])[0]

    async def amoderate(self, prompt: Any = None, response: Any = None, images: Any = None) -> Verdict:
        """Async twin of :meth:`moderate`; never blocks the event loop."""
        verdicts = await self.amoderate_batch([{"prompt": prompt, "response": response, "images": images}])
        return verdicts[0]

    def moderate_batch(self, items: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        """Check several requests with one batched model call; verdicts come back in order.

        Each item is a dict with any of ``prompt``, ``response``, ``images``. All items are
        validated first: one invalid item raises ``InputError`` and nothing is generated.
        """
        start = time.perf_counter()
        prepared = self._prepare(items)
        if not prepared:
            return []
        try:
            generations = self.backend.generate([p.prompt for p in prepared], self.generation_options)
        except Exception as exc:  # noqa: BLE001 - every backend failure goes through the policy
            generations = self._failed(exc, len(prepared))
        return self._assemble(prepared, generations, start)

    async def amoderate_batch(self, items: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        """Async twin of :meth:`moderate_batch`."""
        start = time.perf_counter()
        core.check_batch(items)
        if any(isinstance(item, Mapping) and item.get("images") for item in items):
            # decoding images is CPU work: keep it off the event loop
            prepared = await asyncio.to_thread(self._prepare, items)
        else:
            prepared = self._prepare(items)
        if not prepared:
            return []
        try:
            generations = await self.backend.agenerate([p.prompt for p in prepared], self.generation_options)
        except Exception as exc:  # noqa: BLE001
            generations = self._failed(exc, len(prepared))
        return self._assemble(prepared, generations, start)

    # --------------------------------------------------------------------- integrations
    def check(self, fn: Any = None, /, **options: Any) -> Any:
        """Decorator that guards a handler: ``@guard.check`` or ``@guard.check(...)``.

        Options: ``input=True``, ``output=True``, ``on_violation`` (``"raise"``, ``"replace"`` or
        a function of the :class:`~guardrail.errors.GuardViolation`), ``extract`` (where the
        request/response are), ``message`` (the replacement), ``window`` (characters of streamed
        output per check, ``None`` for one check at the end), ``optimistic`` (release streamed
        text before its check). Works on sync/async functions and generators and on methods.
        See :mod:`guardrail.integrations.decorator`.
        """
        from guardrail.integrations.decorator import check

        return check(self, fn, **options)

    def as_runnable(self, **options: Any) -> Any:
        """A LangChain runnable that checks its input and passes it on unchanged.

        Options: ``key``/``image_key`` (dict inputs), ``name``. Needs the ``langchain`` extra.
        See :mod:`guardrail.integrations.langchain`.
        """
        from guardrail.integrations.langchain import as_runnable

        return as_runnable(self, **options)

    def wrap(self, runnable: Any, **options: Any) -> Any:
        """A LangChain runnable that checks ``runnable``'s input and its output (with the request).

        Options: ``input``, ``output``, ``key``/``image_key``/``output_key``, ``fallback`` (returned
        instead of raising ``GuardViolation``), ``window``, ``optimistic``, ``name``. Needs the
        ``langchain`` extra. See :mod:`guardrail.integrations.langchain`.
        """
        from guardrail.integrations.langchain import wrap

        return wrap(self, runnable, **options)

    # -------------------------------------------------------------------------- helpers
    def _prepare(self, items: Sequence[Mapping[str, Any]]) -> list[Prepared]:
        core.check_batch(items)
        return [core.prepare(self.profile, item, self.limits) for item in items]

    def _failed(self, exc: BaseException, n: int) -> list[Generation]:
        if self.on_error == "raise":
            raise exc
        log.warning("guard backend %s failed: %r", self.backend.name, exc, exc_info=exc)
        return [Generation(text="", finish_reason="error", error=exc)] * n

    def _assemble(
        self, prepared: list[Prepared], generations: list[Generation], start: float
    ) -> list[Verdict]:
        if len(generations) != len(prepared):
            exc = RuntimeError(f"backend returned {len(generations)} outputs for {len(prepared)} prompts")
            generations = self._failed(exc, len(prepared))
        latency = (time.perf_counter() - start) * 1000.0
        verdicts = [
            core.assemble(
                self.profile,
                p,
                g,
                on_parse_error=self.on_parse_error,
                on_error=self.on_error,
                latency_ms=latency,
                model=self.backend.model_name,
            )
            for p, g in zip(prepared, generations, strict=True)
        ]
        for v in verdicts:
            if v.decided_by == "policy":
                log.warning("verdict decided by policy: %s", v.error)
        return verdicts

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
        return f"Guard(backend={self.backend.name!r}, model={self.backend.model_name!r}, profile={self.profile.name!r})"
