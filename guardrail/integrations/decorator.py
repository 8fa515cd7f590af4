"""``@guard.check``: guard an app's handler, plain, async or streaming.

::

    @guard.check
    def answer(prompt: str) -> str: ...

    @guard.check(on_violation="replace", message="Sorry, I can't help with that.")
    async def chat(messages: list[dict]) -> dict: ...

    @guard.check(window=200)
    async def stream(messages): ...   # an async generator: output checked as it streams

The request is found in the handler's arguments (:class:`_Checker`, with
:mod:`guardrail.integrations.extract`) and checked before the handler runs; the response is
checked together with the request after it (streams in windows:
:mod:`guardrail.integrations.streaming`). Async handlers call ``guard.amoderate``, sync ones
``guard.moderate``; a wrapped function keeps its name, signature and kind. The options, where
the request is looked for, what a violation gives and the errors: docs/integrations.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from guardrail.errors import ConfigurationError, GuardViolation
from guardrail.integrations.content import amaterialize, scan
from guardrail.integrations.extract import (
    IMAGE_KEYS,
    OUTPUT_HINT,
    REQUEST_KEYS,
    Extracted,
    combine,
    is_history,
    load_images,
    request_from_fields,
    request_from_value,
    response_text,
    user_limits,
)
from guardrail.integrations.fields import RESPONSE_FIELDS, names_an_image
from guardrail.integrations.history import guard_input
from guardrail.integrations.policy import blocks
from guardrail.integrations.streaming import agate_stream, gate_stream
from guardrail.observers import called_by

if TYPE_CHECKING:  # pragma: no cover
    from guardrail.guard import Guard
    from guardrail.inputs import InputLimits
    from guardrail.verdict import Verdict

__all__ = ["DEFAULT_MESSAGE", "DEFAULT_WINDOW", "CheckOptions", "check"]

DEFAULT_MESSAGE = "Sorry, I can't help with that."
#: Characters of streamed output per check (see :mod:`guardrail.integrations.streaming`).
DEFAULT_WINDOW = 500

OnViolation = Literal["raise", "replace"] | Callable[[GuardViolation], Any]
_HINT = "pass extract= to say where it is (a parameter name or a function; see guard.check)"


@dataclass(frozen=True)
class CheckOptions:
    """Options of ``@guard.check``; validated when the decorator is built.

    - ``input``: check the request before the handler runs.
    - ``output``: check the response (with the request) after it, or as it streams.
    - ``on_violation``: ``"raise"``, ``"replace"`` or a callable (see the module docstring).
    - ``extract``: where the request/response are (parameter name, function, or
      ``{"input": ..., "output": ...}``).
    - ``message``: the replacement for ``"replace"`` (default :data:`DEFAULT_MESSAGE`).
    - ``window``: characters of streamed output per check; ``None`` checks once at the end.
    - ``optimistic``: release streamed chunks before their check (faster, but a harmful
      window may be partly seen before the stream is cut).
    - ``allow_paths``: read image strings that are not URLs as local file paths (off: the
      arguments may come from users).
    """

    input: bool = True
    output: bool = True
    on_violation: OnViolation | None = None
    extract: str | Callable[..., Any] | Mapping[str, Any] | None = None
    message: Any = None
    window: int | None = DEFAULT_WINDOW
    optimistic: bool = False
    allow_paths: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.input, bool) or not isinstance(self.output, bool):
            raise ConfigurationError("input and output must be True or False")
        if not isinstance(self.allow_paths, bool):
            raise ConfigurationError("allow_paths must be True or False")
        if not (self.input or self.output):
            raise ConfigurationError("guard.check with input=False and output=False checks nothing")
        if self.on_violation is None:
            object.__setattr__(self, "on_violation", "raise" if self.message is None else "replace")
        elif not callable(self.on_violation) and self.on_violation not in ("raise", "replace"):
            raise ConfigurationError(
                f"on_violation must be 'raise', 'replace' or a function; got {self.on_violation!r}"
            )
        if self.message is None:
            object.__setattr__(self, "message", DEFAULT_MESSAGE)
        if self.window is not None and (
            isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1
        ):
            raise ConfigurationError(
                f"window must be a positive number of characters or None; got {self.window!r}"
            )
        _split_extract(self.extract)


def _split_extract(extract: Any) -> tuple[str | Callable[..., Any] | None, Callable[[Any], Any] | None]:
    if extract is None:
        return None, None
    if isinstance(extract, str) or callable(extract):
        return extract, None
    if isinstance(extract, Mapping):
        unknown = set(extract) - {"input", "output"}
        if unknown:
            raise ConfigurationError(f"extract= takes the keys 'input' and 'output'; got {sorted(unknown)}")
        inp, out = extract.get("input"), extract.get("output")
        if inp is not None and not (isinstance(inp, str) or callable(inp)):
            raise ConfigurationError("extract['input'] must be a parameter name or a function")
        if out is not None and not callable(out):
            raise ConfigurationError("extract['output'] must be a function of the return value")
        return inp, out
    raise ConfigurationError(
        f"extract= must be a parameter name, a function or a dict; got {type(extract).__name__}"
    )


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class _Plan:
    """Where a handler's request is, decided once from its signature."""

    function: Callable[..., Any] | None = None
    params: tuple[str, ...] = ()  # named parameters (or **kwargs entries), all checked
    var_args: str | None = None  # *args: use args[0]
    var_kwargs: str | None = None  # **kwargs: look up REQUEST_KEYS
    image_params: tuple[str, ...] = ()
    scan_others: bool = True  # search every other argument for images (off with extract=)

    @property
    def empty(self) -> bool:
        return not (self.function or self.params or self.var_args or self.var_kwargs)


_SCALAR_TYPES = (int, float, bool, complex)


def _make_plan(fn: Callable[..., Any], sig: inspect.Signature, spec: Any, need: bool) -> _Plan:
    params = list(sig.parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    if callable(spec):
        return _Plan(function=spec, scan_others=False)
    var_kw = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
    if isinstance(spec, str):
        if spec not in sig.parameters and var_kw is None:
            raise ConfigurationError(f"extract={spec!r}: {_name(fn)} has no parameter of that name")
        if spec in sig.parameters:
            return _Plan(params=(spec,), scan_others=False)
        return _Plan(var_kwargs=var_kw, params=(spec,), scan_others=False)
    named = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    images = tuple(n for n in IMAGE_KEYS if n in named)
    requests = tuple(key for key in REQUEST_KEYS if key in named)
    if requests:
        return _Plan(params=requests, image_params=images)
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.name not in images
        and p.annotation not in _SCALAR_TYPES  # a number never holds the request
    ]
    if positional:
        _check_body_annotation(fn, positional[0], images)
        return _Plan(params=(positional[0].name,), image_params=images)
    var_pos = next((p.name for p in params if p.kind is p.VAR_POSITIONAL), None)
    if var_pos or var_kw:
        return _Plan(var_args=var_pos, var_kwargs=var_kw, image_params=images)
    if need and not images:
        raise ConfigurationError(
            f"guard.check cannot find the request in the signature of {_name(fn)} (no parameter named "
            f"{'/'.join(REQUEST_KEYS)}, nor one that is not a number); {_HINT}"
        )
    return _Plan(image_params=images)


def _check_body_annotation(fn: Callable[..., Any], param: inspect.Parameter, images: tuple[str, ...]) -> None:
    """A request body whose declared fields (a pydantic model, a dataclass, a TypedDict) include
    no request field and nothing that can hold an image is refused now, not on the first request."""
    fields = declared_fields(param.annotation)
    if fields is None or images:
        return
    for name, annotation in fields.items():
        if name in REQUEST_KEYS or name in IMAGE_KEYS or names_an_image(name):
            return
        if annotation is Any or declared_fields(annotation) is not None or _may_hold_content(annotation):
            return
    raise ConfigurationError(
        f"guard.check cannot find the request in parameter {param.name!r} of {_name(fn)}: "
        f"{getattr(param.annotation, '__name__', param.annotation)} has the fields {sorted(fields)}, "
        f"none of them {'/'.join(REQUEST_KEYS)}; pass extract=lambda {param.name}: {param.name}.<field> "
        "(a parameter name or a function; see guard.check)"
    )


def _may_hold_content(annotation: Any) -> bool:
    """Whether a field's type could carry an image or a chat (bytes, files, lists, dicts...)."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return any(word in text for word in ("bytes", "Upload", "Image", "IO", "list", "dict", "List", "Dict"))


def declared_fields(annotation: Any) -> dict[str, Any] | None:
    """The declared fields of a class (pydantic model, dataclass, TypedDict) as name -> type;
    None for anything else (a plain type, a string annotation, no annotation)."""
    if not isinstance(annotation, type) or annotation in (str, bytes, dict, list, tuple):
        return None
    model_fields = getattr(annotation, "model_fields", None)
    if isinstance(model_fields, Mapping) and hasattr(annotation, "model_dump"):
        return {name: getattr(info, "annotation", Any) for name, info in model_fields.items()}
    if dataclasses.is_dataclass(annotation):
        return {f.name: f.type for f in dataclasses.fields(annotation)}
    if issubclass(annotation, dict) and hasattr(annotation, "__required_keys__"):  # TypedDict
        return dict(getattr(annotation, "__annotations__", {}))
    return None


def _resolved_signature(fn: Callable[..., Any], sig: inspect.Signature) -> inspect.Signature:
    """``sig`` with string annotations (``from __future__ import annotations``) evaluated where
    they can be; only used to find mistakes early, never required."""
    try:
        return inspect.signature(fn, eval_str=True)
    except Exception:  # noqa: BLE001 - forward references etc.: the plain signature will do
        return sig


def _check_return_annotation(fn: Callable[..., Any], annotation: Any) -> None:
    """A declared return type (pydantic model, dataclass, TypedDict) without any response field
    is refused when the decorator is applied, before the app's model ever runs."""
    fields = declared_fields(annotation)
    if fields is None or "choices" in fields or any(name in fields for name in RESPONSE_FIELDS):
        return
    text_field = next((name for name, a in fields.items() if a is str), None) or "<field>"
    raise ConfigurationError(
        f"guard.check cannot find the response text in {annotation.__name__}, the return type of "
        f"{_name(fn)} (fields {sorted(fields)}, none of them {'/'.join(RESPONSE_FIELDS)}); pass "
        f'extract={{"output": lambda result: result.{text_field}}} (or check the input only: output=False)'
    )


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


# -------------------------------------------------------------------------- the checker
class _Checker:
    """Everything a wrapper needs, with no I/O: the sync and async wrappers share it."""

    def __init__(self, guard: Guard, fn: Callable[..., Any], options: CheckOptions):
        self.guard = guard
        self.fn = fn
        self.options = options
        try:
            self.signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"guard.check cannot read the signature of {_name(fn)}: {exc}") from exc
        spec, self.output_fn = _split_extract(options.extract)
        resolved = _resolved_signature(fn, self.signature)
        self.plan = _make_plan(fn, resolved, spec, need=options.input)
        if options.output and self.output_fn is None:
            _check_return_annotation(fn, resolved.return_annotation)

    @property
    def limits(self) -> InputLimits:
        """The guard's limits for content users send (no local paths unless opted in)."""
        return user_limits(self.guard.limits, self.options.allow_paths)

    def load(self, request: Extracted | None) -> Extracted | None:
        """The request with its images read and decoded once, under :attr:`limits` (InputError if
        bad)."""
        return request if request is None else load_images(request, self.limits)

    async def aload(self, request: Extracted | None) -> Extracted | None:
        if request is None or not request.images:
            return request
        images = await amaterialize(request.images, self.limits)  # uploads: their async read
        return await asyncio.to_thread(self.load, dataclasses.replace(request, images=images))  # CPU work

    # ------------------------------------------------------------------------- request
    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Extracted | None:
        plan = self.plan
        if plan.function is not None:
            value = plan.function(*args, **kwargs)
            return None if value is None else request_from_value(value, hint=_HINT, scan=False)
        if plan.empty and not plan.image_params and not plan.scan_others:
            return None
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:  # the call itself is wrong: say so without running the handler
            raise TypeError(f"{_name(self.fn)}(): {exc}") from None
        bound.apply_defaults()
        arguments = bound.arguments
        extra = arguments.get(plan.var_kwargs, {}) if plan.var_kwargs else {}
        fields: dict[str, Any] = {}
        consumed: set[str] = set()  # arguments (and **kwargs entries) read as request or images
        if plan.params:
            fields = {p: arguments[p] if p in arguments else extra.get(p) for p in plan.params}
        elif plan.var_args and arguments.get(plan.var_args):
            fields = {f"{plan.var_args}[0]": arguments[plan.var_args][0]}
        elif extra:
            fields = {k: extra.get(k) for k in REQUEST_KEYS}
        if plan.scan_others:  # a chat history in another argument is a conversation, not images
            for name, value in {**arguments, **extra}.items():
                if name not in fields and name not in (plan.var_args, plan.var_kwargs) and is_history(value):
                    fields[name] = value
        consumed.update(fields)
        images: tuple[Any, ...] = ()
        for name in plan.image_params or tuple(k for k in IMAGE_KEYS if k in extra):
            consumed.add(name)
            found = arguments.get(name, extra.get(name))
            if found is not None:
                images += tuple(found) if isinstance(found, (list, tuple)) else (found,)
        if plan.scan_others:
            images += tuple(self._other_images(arguments, extra, consumed))
        # Every argument that carries user content is checked (see request_from_fields).
        request = request_from_fields(
            fields,
            tuple(fields),
            (),
            lambda v, strict, name: request_from_value(
                v, hint=_HINT, require_user=strict, where=name, scan=True
            ),
        )
        if request is None:
            return Extracted(images=images)  # the guard raises InputError when this is empty
        return combine([request, Extracted(images=images)])

    def _other_images(
        self, arguments: Mapping[str, Any], extra: Mapping[str, Any], consumed: set[str]
    ) -> list[Any]:
        """Images in the arguments the request was not read from (content.scan)."""
        found: list[Any] = []
        first = next(iter(self.signature.parameters), None)
        for name, value in arguments.items():
            if name in consumed or (name == first and name in ("self", "cls")):
                continue
            if name == self.plan.var_kwargs:
                for key, item in extra.items():
                    if key not in consumed:
                        found += scan(item, key)
            elif name == self.plan.var_args:
                skip = 1 if f"{name}[0]" in consumed else 0
                for i, item in enumerate(value[skip:], start=skip):
                    found += scan(item, f"{name}[{i}]")
            else:
                found += scan(value, name)
        return found

    @staticmethod
    def item(request: Extracted | None, response: str | None = None) -> dict[str, Any]:
        if request is None:
            return {"response": response}
        return request.item(response)

    def moderate(self, stage: str, request: Extracted | None, response: str | None = None) -> Verdict:
        if request is not None and request.messages is not None:  # a chat history: a conversation
            item = guard_input(self.guard, self.item(request, response), self.limits)
            with called_by("decorator", stage):
                return self.guard.moderate_batch([item])[0]
        with called_by("decorator", stage):  # what the guard's observers are told
            return self.guard.moderate(**self.item(request, response))

    async def amoderate(self, stage: str, request: Extracted | None, response: str | None = None) -> Verdict:
        if request is not None and request.messages is not None:
            item = await asyncio.to_thread(guard_input, self.guard, self.item(request, response), self.limits)
            with called_by("decorator", stage):
                return (await self.guard.amoderate_batch([item]))[0]
        with called_by("decorator", stage):
            return await self.guard.amoderate(**self.item(request, response))

    # ------------------------------------------------------------------------ response
    def response(self, value: Any) -> str | None:
        if self.output_fn is not None:
            value = self.output_fn(value)
        return response_text(value, hint=OUTPUT_HINT)

    def chunk_text(self, chunk: Any) -> str:
        return self.response(chunk) or ""

    # ----------------------------------------------------------------------- violation
    def violation(self, verdict: Verdict, stage: str) -> Any:
        exc = GuardViolation(verdict, stage=stage)
        handler = self.options.on_violation
        if handler == "raise":
            raise exc
        if handler == "replace":
            return self.options.message
        return handler(exc)  # type: ignore[operator]

    async def aviolation(self, verdict: Verdict, stage: str) -> Any:
        result = self.violation(verdict, stage)
        if inspect.isawaitable(result):
            result = await result
        return result


def _items(value: Any) -> list[Any]:
    return [] if value is None else [value]


# ---------------------------------------------------------------------------- wrappers
def _sync_function(c: _Checker) -> Callable[..., Any]:
    fn, opts = c.fn, c.options

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = c.load(c.request(args, kwargs))
        if opts.input and request is not None:
            verdict = c.moderate("input", request)
            if blocks(verdict, "input"):
                return c.violation(verdict, "input")
        result = fn(*args, **kwargs)
        if opts.output:
            text = c.response(result)
            if text:
                verdict = c.moderate("output", request, text)
                if blocks(verdict, "output"):
                    return c.violation(verdict, "output")
        return result

    return wrapper


def _async_function(c: _Checker) -> Callable[..., Any]:
    fn, opts = c.fn, c.options

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = await c.aload(c.request(args, kwargs))
        if opts.input and request is not None:
            verdict = await c.amoderate("input", request)
            if blocks(verdict, "input"):
                return await c.aviolation(verdict, "input")
        result = await fn(*args, **kwargs)
        if opts.output:
            text = c.response(result)
            if text:
                verdict = await c.amoderate("output", request, text)
                if blocks(verdict, "output"):
                    return await c.aviolation(verdict, "output")
        return result

    return wrapper


def _sync_generator(c: _Checker) -> Callable[..., Any]:
    fn, opts = c.fn, c.options

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = c.load(c.request(args, kwargs))
        if opts.input and request is not None:
            verdict = c.moderate("input", request)
            if blocks(verdict, "input"):
                yield from _items(c.violation(verdict, "input"))
                return
        source = fn(*args, **kwargs)
        if not opts.output:
            try:
                yield from source
            finally:
                source.close()
            return
        yield from gate_stream(
            source,
            text_of=c.chunk_text,
            check=lambda text: c.moderate("output", request, text),
            on_block=lambda verdict: _items(c.violation(verdict, "output")),
            window=opts.window,
            optimistic=opts.optimistic,
        )

    return wrapper


def _async_generator(c: _Checker) -> Callable[..., Any]:
    fn, opts = c.fn, c.options

    async def check(request: Extracted | None, text: str) -> Verdict:
        return await c.amoderate("output", request, text)

    async def on_block(verdict: Verdict) -> list[Any]:
        return _items(await c.aviolation(verdict, "output"))

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = await c.aload(c.request(args, kwargs))
        if opts.input and request is not None:
            verdict = await c.amoderate("input", request)
            if blocks(verdict, "input"):
                for item in _items(await c.aviolation(verdict, "input")):
                    yield item
                return
        source = fn(*args, **kwargs)
        if not opts.output:
            try:
                async for item in source:
                    yield item
            finally:
                await source.aclose()
            return
        stream = agate_stream(
            source,
            text_of=c.chunk_text,
            check=functools.partial(check, request),
            on_block=on_block,
            window=opts.window,
            optimistic=opts.optimistic,
        )
        try:
            async for item in stream:
                yield item
        finally:
            await stream.aclose()

    return wrapper


def _decorate(guard: Guard, fn: Any, options: CheckOptions) -> Any:
    if isinstance(fn, (classmethod, staticmethod)):
        return type(fn)(_decorate(guard, fn.__func__, options))
    if not callable(fn):
        raise ConfigurationError(f"guard.check decorates functions, not {type(fn).__name__}")
    checker = _Checker(guard, fn, options)
    if inspect.isasyncgenfunction(fn):
        wrapper = _async_generator(checker)
    elif inspect.iscoroutinefunction(fn):
        wrapper = _async_function(checker)
    elif inspect.isgeneratorfunction(fn):
        wrapper = _sync_generator(checker)
    else:
        wrapper = _sync_function(checker)
    functools.update_wrapper(wrapper, fn)
    wrapper.__signature__ = checker.signature  # type: ignore[attr-defined]
    wrapper.__guardrail_check__ = options  # type: ignore[attr-defined]
    return wrapper


def check(guard: Guard, fn: Any = None, /, **options: Any) -> Any:
    """Implementation of :meth:`guardrail.Guard.check` (see the module docstring)."""
    try:
        opts = CheckOptions(**options)
    except TypeError as exc:
        valid = ", ".join(CheckOptions.__dataclass_fields__)
        raise ConfigurationError(f"guard.check: {exc}; the options are {valid}") from None
    if fn is None:
        return functools.partial(_decorate, guard, options=opts)
    return _decorate(guard, fn, opts)
