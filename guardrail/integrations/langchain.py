"""LangChain runnables: a guard at the head of a chain, or around any runnable.

Needs ``pip install "guardrail-vl[langchain]"`` (langchain-core).

::

    chain = guard.as_runnable() | prompt | llm | parser     # checks the chain's input
    chain = prompt | guard.wrap(llm) | parser               # checks the LLM's input and output
    chain = guard.wrap(prompt | llm | parser, fallback="Sorry, I can't help with that.")
    agent = create_agent(llm, tools, middleware=[GuardrailMiddleware(guard)])   # agents

A wrapped chat model is still a chat model: ``bind_tools`` and ``with_structured_output``
return the bound model wrapped the same way. ``GuardrailMiddleware`` (a LangChain v1
``AgentMiddleware``, :mod:`guardrail.integrations.langchain_agents`) is imported from here but
lives in its own module, which imports the ``langchain`` package only when it is asked for.

:class:`GuardRunnable` checks the input before the wrapped runnable runs (a blocked input never
reaches it) and its output together with the request; a batch makes one guard call per stage,
a stream is checked in windows (:mod:`guardrail.integrations.streaming`). Which parts of an
input are the request: :mod:`guardrail.integrations.langchain_inputs`; how each check is traced:
:mod:`guardrail.integrations.langchain_tracing`. The inputs and outputs understood, the methods,
``fallback`` and the tracing are described in docs/integrations.md ("LangChain").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from guardrail._deps import require

require("langchain_core", extra="langchain", feature="guardrail.integrations.langchain")

from langchain_core.runnables import Runnable, RunnableConfig  # noqa: E402

from guardrail.errors import ConfigurationError, GuardrailError, GuardViolation  # noqa: E402
from guardrail.integrations.decorator import DEFAULT_WINDOW  # noqa: E402
from guardrail.integrations.extract import Extracted, user_limits  # noqa: E402
from guardrail.integrations.history import guard_input  # noqa: E402
from guardrail.integrations.langchain_inputs import (  # noqa: E402
    IMAGE_KEYS,
    INPUT_KEYS,
    key_names,
    langchain_request,
    langchain_response,
    read_files,
)
from guardrail.integrations.langchain_tracing import TRACE_EVENT, atrace, trace  # noqa: E402
from guardrail.integrations.policy import blocks  # noqa: E402
from guardrail.integrations.streaming import agate_stream, gate_stream  # noqa: E402
from guardrail.observers import called_by  # noqa: E402
from guardrail.verdict import Verdict  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.guard import Guard
    from guardrail.inputs import InputLimits

__all__ = ["GuardRunnable", "TRACE_EVENT", "as_runnable", "wrap"]

_UNSET: Any = object()
_PENDING: Any = object()


class GuardRunnable(Runnable[Any, Any]):
    """A guard as a LangChain runnable (see the module docstring and docs/integrations.md).

    - ``runnable``: the runnable to guard; ``None`` makes a pass-through input check.
    - ``input`` / ``output``: which sides to check (``output`` needs a ``runnable``).
    - ``key`` / ``image_key``: where the request and its images are in dict inputs (a name or
      a list of names; every one present is checked).
    - ``output_key``: where the response text is in dict outputs.
    - ``fallback``: returned instead of raising ``GuardViolation`` (needs a ``runnable``).
    - ``window`` / ``optimistic``: streamed output checking.
    - ``allow_paths``: read image strings that are not URLs as local file paths (off).
    """

    def __init__(
        self,
        guard: Guard,
        runnable: Runnable[Any, Any] | None = None,
        *,
        input: bool = True,  # noqa: A002
        output: bool = True,
        key: str | Sequence[str] | None = None,
        image_key: str | Sequence[str] | None = None,
        output_key: str | None = None,
        fallback: Any = _UNSET,
        window: int | None = DEFAULT_WINDOW,
        optimistic: bool = False,
        name: str | None = None,
        allow_paths: bool = False,
    ):
        if runnable is not None and not isinstance(runnable, Runnable):
            raise ConfigurationError(f"guard.wrap takes a LangChain Runnable, not {type(runnable).__name__}")
        if runnable is None:
            if fallback is not _UNSET:
                raise ConfigurationError(
                    "a pass-through input check cannot return a fallback for the whole chain; use "
                    "guard.wrap(chain, fallback=...) or chain.with_fallbacks(..., "
                    "exceptions_to_handle=(GuardViolation,))"
                )
            output = False
        if not (input or output):
            raise ConfigurationError("a guard runnable with input=False and output=False checks nothing")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ConfigurationError(
                f"window must be a positive number of characters or None; got {window!r}"
            )
        self.guard = guard
        self.runnable = runnable
        self.check_input = bool(input)
        self.check_output = bool(output)
        if not isinstance(allow_paths, bool):
            raise ConfigurationError("allow_paths must be True or False")
        self.key = key
        self.image_key = image_key
        self.keys = key_names("key", key) or INPUT_KEYS
        self.image_keys = key_names("image_key", image_key) or IMAGE_KEYS
        self.allow_paths = allow_paths
        self.output_key = output_key
        self.fallback = fallback
        self.window = window
        self.optimistic = optimistic
        self._structured = False
        self.name = name or ("guardrail" if runnable is None else f"guardrail({runnable.get_name()})")

    # --------------------------------------------------------------------------- typing
    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.runnable.InputType if self.runnable is not None else Any

    @property
    def OutputType(self) -> Any:  # noqa: N802
        return self.runnable.OutputType if self.runnable is not None else Any

    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        if self.runnable is not None:
            return self.runnable.get_input_schema(config)
        return super().get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> Any:
        if self.runnable is not None:
            return self.runnable.get_output_schema(config)
        return super().get_output_schema(config)

    @property
    def config_specs(self) -> list[Any]:
        return list(self.runnable.config_specs) if self.runnable is not None else []

    def __repr__(self) -> str:
        return f"GuardRunnable(guard={self.guard!r}, runnable={self.runnable!r})"

    # --------------------------------------------------------------------- extraction
    def request(self, value: Any) -> Extracted:
        """The request held by one input (raises ConfigurationError/InputError)."""
        scan = self.key is None and self.image_key is None  # named keys: exactly those
        return read_files(langchain_request(value, self.keys, self.image_keys, scan=scan), self.limits)

    @property
    def limits(self) -> InputLimits:
        """The guard's limits for content users send (no local paths unless opted in)."""
        return user_limits(self.guard.limits, self.allow_paths)

    def response(self, value: Any) -> str | None:
        """The text of one output (or streamed chunk); None when there is nothing to check. A
        message's tool calls are part of it (``[tool call] name(arguments)``); a structured output
        (:meth:`with_structured_output`) is read as JSON."""
        return langchain_response(value, self.output_key, structured=self._structured)

    # ------------------------------------------------------------- a chat model still
    def bind_tools(self, tools: Any, **kwargs: Any) -> GuardRunnable:
        """The wrapped chat model's ``bind_tools``, guarded the same way (so ``create_agent``
        and tool-calling chains keep the guard). For agents, :class:`GuardrailMiddleware` also
        checks tool results before the model sees them and can end the run cleanly."""
        return self._rewrap(self._chat_model("bind_tools").bind_tools(tools, **kwargs))

    def with_structured_output(self, schema: Any, **kwargs: Any) -> GuardRunnable:
        """The wrapped chat model's ``with_structured_output``, guarded: the structured result is
        checked as JSON."""
        guarded = self._rewrap(
            self._chat_model("with_structured_output").with_structured_output(schema, **kwargs)
        )
        guarded._structured = True
        return guarded

    def _chat_model(self, method: str) -> Any:
        if self.runnable is None or not callable(getattr(self.runnable, method, None)):
            raise ConfigurationError(
                f"guard.wrap(...).{method}: the wrapped runnable "
                f"({type(self.runnable).__name__}) is not a chat model with {method}; wrap the chat "
                "model itself, or for agents use guardrail.integrations.langchain.GuardrailMiddleware"
            )
        return self.runnable

    def _rewrap(self, runnable: Runnable[Any, Any]) -> GuardRunnable:
        return GuardRunnable(
            self.guard, runnable, input=self.check_input, output=self.check_output, key=self.key,
            image_key=self.image_key, output_key=self.output_key, fallback=self.fallback,
            window=self.window, optimistic=self.optimistic, name=self.name, allow_paths=self.allow_paths,
        )  # fmt: skip

    def _chunk_text(self, chunk: Any) -> str:
        return self.response(chunk) or ""

    # ------------------------------------------------------------------------ checking
    def _validate(self, items: list[dict[str, Any]]) -> list[Any]:
        """Each item as a validated ModerationInput, or the InputError it raised."""
        out: list[Any] = []
        limits = self.limits
        for item in items:
            try:
                out.append(guard_input(self.guard, item, limits))
            except GuardrailError as exc:
                out.append(exc)
        return out

    @staticmethod
    def _merge(validated: list[Any], verdicts: list[Verdict]) -> list[Verdict | Exception]:
        it = iter(verdicts)
        return [v if isinstance(v, Exception) else next(it) for v in validated]

    def _moderate_many(self, items: list[dict[str, Any]], stage: str) -> list[Verdict | Exception]:
        validated = self._validate(items)
        valid = [v for v in validated if not isinstance(v, Exception)]
        if not valid:
            return self._merge(validated, [])
        with called_by("langchain", stage):  # what the guard's observers are told
            return self._merge(validated, self.guard.moderate_batch(valid))

    async def _amoderate_many(self, items: list[dict[str, Any]], stage: str) -> list[Verdict | Exception]:
        if any(item.get("images") or item.get("messages") for item in items):
            validated = await asyncio.to_thread(self._validate, items)  # decoding is CPU work
        else:
            validated = self._validate(items)
        valid = [v for v in validated if not isinstance(v, Exception)]
        if not valid:
            return self._merge(validated, [])
        with called_by("langchain", stage):
            return self._merge(validated, await self.guard.amoderate_batch(valid))

    def _blocked(self, verdict: Verdict, stage: str) -> Any:
        """The fallback, or the violation (returned, not raised: the caller decides)."""
        if self.fallback is _UNSET:
            return GuardViolation(verdict, stage=stage)
        return self.fallback

    def _blocked_or_raise(self, verdict: Verdict, stage: str) -> Any:
        result = self._blocked(verdict, stage)
        if isinstance(result, GuardViolation):
            raise result
        return result

    # --------------------------------------------------------- the shared (sans-I/O) core
    def _plan(self, inputs: list[Any]) -> Generator[tuple[Any, ...], Any, list[Any]]:
        """The whole check-run-check algorithm for a batch, as a generator of I/O requests.

        It yields ``("moderate", items, stage)`` (answered with verdicts or exceptions, in order),
        ``("trace", [(index, stage, verdict), ...])`` and ``("run", indices)`` (answered with the
        wrapped runnable's outputs or exceptions for those inputs), and returns one result per
        input: an output, a fallback, or an exception. The sync and async drivers only do I/O.
        """
        n = len(inputs)
        results: list[Any] = [_PENDING] * n
        requests: list[Extracted | None] = [None] * n
        for i, value in enumerate(inputs):
            try:
                requests[i] = self.request(value)
            except GuardrailError as exc:
                results[i] = exc
        if self.check_input:
            yield from self._stage(
                results, requests, "input", {i: None for i in range(n) if results[i] is _PENDING}
            )
        todo = [i for i in range(n) if results[i] is _PENDING]
        if self.runnable is None:
            for i in todo:
                results[i] = inputs[i]
            return results
        if todo:
            outputs = yield ("run", todo)
            for i, out in zip(todo, outputs, strict=True):
                results[i] = out
        if self.check_output:
            texts: dict[int, str | None] = {}
            for i in todo:
                if isinstance(results[i], Exception):
                    continue
                try:
                    text = self.response(results[i])
                except GuardrailError as exc:
                    results[i] = exc
                    continue
                if text:
                    texts[i] = text
            yield from self._stage(results, requests, "output", texts)
        return results

    def _stage(
        self, results: list[Any], requests: list[Extracted | None], stage: str, texts: dict[int, str | None]
    ) -> Generator[tuple[Any, ...], Any, None]:
        if not texts:
            return
        indices = list(texts)
        verdicts = yield ("moderate", [requests[i].item(texts[i]) for i in indices], stage)  # type: ignore[union-attr]
        traces = []
        for i, verdict in zip(indices, verdicts, strict=True):
            if isinstance(verdict, Exception):
                results[i] = verdict
                continue
            traces.append((i, stage, verdict))
            if blocks(verdict, stage):
                results[i] = self._blocked(verdict, stage)
        if traces:
            yield ("trace", traces)

    def _drive(
        self,
        inputs: list[Any],
        run_managers: list[Any],
        configs: list[RunnableConfig],
        single: bool,
        kwargs: dict[str, Any],
    ) -> list[Any]:
        plan = self._plan(inputs)
        answer: Any = None
        while True:
            try:
                op = plan.send(answer)
            except StopIteration as stop:
                return stop.value
            if op[0] == "moderate":
                answer = self._moderate_many(op[1], op[2])
            elif op[0] == "trace":
                for i, stage, verdict in op[1]:
                    trace(run_managers[i], stage, verdict)
                answer = None
            else:
                answer = self._run(op[1], inputs, configs, single, kwargs)

    async def _adrive(
        self,
        inputs: list[Any],
        run_managers: list[Any],
        configs: list[RunnableConfig],
        single: bool,
        kwargs: dict[str, Any],
    ) -> list[Any]:
        plan = self._plan(inputs)
        answer: Any = None
        while True:
            try:
                op = plan.send(answer)
            except StopIteration as stop:
                return stop.value
            if op[0] == "moderate":
                answer = await self._amoderate_many(op[1], op[2])
            elif op[0] == "trace":
                for i, stage, verdict in op[1]:
                    await atrace(run_managers[i], stage, verdict)
                answer = None
            else:
                answer = await self._arun(op[1], inputs, configs, single, kwargs)

    def _run(
        self,
        todo: list[int],
        inputs: list[Any],
        configs: list[RunnableConfig],
        single: bool,
        kwargs: dict[str, Any],
    ) -> list[Any]:
        assert self.runnable is not None
        if single:
            try:
                return [self.runnable.invoke(inputs[0], configs[0], **kwargs)]
            except Exception as exc:  # noqa: BLE001 - handed back to the plan, re-raised by invoke
                return [exc]
        return self.runnable.batch(
            [inputs[i] for i in todo], [configs[i] for i in todo], return_exceptions=True, **kwargs
        )

    async def _arun(
        self,
        todo: list[int],
        inputs: list[Any],
        configs: list[RunnableConfig],
        single: bool,
        kwargs: dict[str, Any],
    ) -> list[Any]:
        assert self.runnable is not None
        if single:
            try:
                return [await self.runnable.ainvoke(inputs[0], configs[0], **kwargs)]
            except Exception as exc:  # noqa: BLE001
                return [exc]
        return await self.runnable.abatch(
            [inputs[i] for i in todo], [configs[i] for i in todo], return_exceptions=True, **kwargs
        )

    # --------------------------------------------------------------------- invoke/batch
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:  # noqa: A002
        return self._call_with_config(self._invoke, input, config, **kwargs)

    def _invoke(self, input: Any, run_manager: Any, config: RunnableConfig, **kwargs: Any) -> Any:  # noqa: A002
        result = self._drive([input], [run_manager], [config], True, kwargs)[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:  # noqa: A002
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    async def _ainvoke(self, input: Any, run_manager: Any, config: RunnableConfig, **kwargs: Any) -> Any:  # noqa: A002
        result = (await self._adrive([input], [run_manager], [config], True, kwargs))[0]
        if isinstance(result, Exception):
            raise result
        return result

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        if not inputs:
            return []
        return self._batch_with_config(
            self._batch, list(inputs), config, return_exceptions=return_exceptions, **kwargs
        )

    def _batch(
        self, inputs: list[Any], run_manager: list[Any], config: list[RunnableConfig], **kwargs: Any
    ) -> list[Any]:
        return self._drive(inputs, run_manager, config, False, kwargs)

    async def abatch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        if not inputs:
            return []
        return await self._abatch_with_config(
            self._abatch, list(inputs), config, return_exceptions=return_exceptions, **kwargs
        )

    async def _abatch(
        self, inputs: list[Any], run_manager: list[Any], config: list[RunnableConfig], **kwargs: Any
    ) -> list[Any]:
        return await self._adrive(inputs, run_manager, config, False, kwargs)

    # ------------------------------------------------------------------------ streaming
    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:  # noqa: A002
        yield from self.transform(iter([input]), config, **kwargs)

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:  # noqa: A002
        yield from self._transform_stream_with_config(input, self._transform, config, **kwargs)

    def _transform(
        self, chunks: Iterator[Any], run_manager: Any, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        value = _merge_chunks(chunks)
        request = self.request(value)
        if self.check_input:
            verdict = _one(self._moderate_many([request.item()], "input"))
            trace(run_manager, "input", verdict)
            if blocks(verdict, "input"):
                yield self._blocked_or_raise(verdict, "input")
                return
        if self.runnable is None:
            yield value
            return
        source = self.runnable.stream(value, config, **kwargs)
        if not self.check_output:
            yield from source
            return

        def check(text: str) -> Verdict:
            verdict = _one(self._moderate_many([request.item(text)], "output"))
            trace(run_manager, "output", verdict)
            return verdict

        yield from gate_stream(
            source,
            text_of=self._chunk_text,
            check=check,
            on_block=lambda verdict: [self._blocked_or_raise(verdict, "output")],
            window=self.window,
            optimistic=self.optimistic,
        )

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:  # noqa: A002
        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self.atransform(one(), config, **kwargs):
            yield chunk

    async def atransform(
        self,
        input: AsyncIterator[Any],  # noqa: A002
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        async for chunk in self._atransform_stream_with_config(input, self._atransform, config, **kwargs):
            yield chunk

    async def _atransform(
        self, chunks: AsyncIterator[Any], run_manager: Any, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        value = _merge_chunks([c async for c in chunks])
        request = self.request(value)
        if self.check_input:
            verdict = _one(await self._amoderate_many([request.item()], "input"))
            await atrace(run_manager, "input", verdict)
            if blocks(verdict, "input"):
                yield self._blocked_or_raise(verdict, "input")
                return
        if self.runnable is None:
            yield value
            return
        source = self.runnable.astream(value, config, **kwargs)
        if not self.check_output:
            async for chunk in source:
                yield chunk
            return

        async def check(text: str) -> Verdict:
            verdict = _one(await self._amoderate_many([request.item(text)], "output"))
            await atrace(run_manager, "output", verdict)
            return verdict

        async def on_block(verdict: Verdict) -> list[Any]:
            return [self._blocked_or_raise(verdict, "output")]

        stream = agate_stream(
            source,
            text_of=self._chunk_text,
            check=check,
            on_block=on_block,
            window=self.window,
            optimistic=self.optimistic,
        )
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()


def _one(results: list[Verdict | Exception]) -> Verdict:
    result = results[0]
    if isinstance(result, Exception):
        raise result
    return result


def _merge_chunks(chunks: Iterator[Any] | Sequence[Any]) -> Any:
    """Join streamed input chunks with ``+`` as LangChain's default ``transform`` does."""
    merged: Any = _UNSET
    for chunk in chunks:
        if merged is _UNSET:
            merged = chunk
            continue
        try:
            merged = merged + chunk
        except TypeError:
            merged = chunk
    if merged is _UNSET:
        raise ConfigurationError("the guard runnable received an empty input stream")
    return merged


def __getattr__(name: str) -> Any:
    """``GuardrailMiddleware`` lives in :mod:`guardrail.integrations.langchain_agents` (it needs
    the ``langchain`` package, imported only when asked for)."""
    if name == "GuardrailMiddleware":
        from guardrail.integrations.langchain_agents import GuardrailMiddleware

        return GuardrailMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def as_runnable(guard: Guard, **options: Any) -> GuardRunnable:
    """Implementation of :meth:`guardrail.Guard.as_runnable`."""
    return GuardRunnable(guard, None, **options)


def wrap(guard: Guard, runnable: Runnable[Any, Any], **options: Any) -> GuardRunnable:
    """Implementation of :meth:`guardrail.Guard.wrap`."""
    if runnable is None:
        raise ConfigurationError("guard.wrap needs a runnable to wrap")
    return GuardRunnable(guard, runnable, **options)
