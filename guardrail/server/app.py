"""The FastAPI application: ``create_app(guard, settings)``.

Endpoints:

- ``POST /v1/moderations``: OpenAI-compatible moderation (strings, lists, content parts).
- ``POST /v1/guard``: prompt / response / images, or ``messages`` (a conversation), and
  optionally ``policy`` -> the ``Verdict`` JSON.
- ``POST /beta/litellm_basic_guardrail_api``: LiteLLM's Generic Guardrail API
  (:mod:`guardrail.server.litellm_api`; content it cannot check is answered ``BLOCKED``).
- ``GET /healthz`` (process alive), ``GET /readyz`` (accepting work), ``GET /metrics``
  (Prometheus text format).

Errors use OpenAI's error body ``{"error": {"message", "type", "code"}}``: 400 invalid input,
401 bad or missing API key (checked before the body is read), 408 body not received in time,
413 body too large, 422 malformed JSON body, 502 guard failure (a fixed message; the detail
goes to the log, secrets redacted), 503 overloaded (with ``Retry-After``), 504 timeout when the
guard's ``on_error`` policy is ``"raise"``. Images reach the guard only through
:mod:`guardrail.server.media` (inline data, or URLs when allowed; never a server path).
Nothing heavy runs on the event loop: JSON parsing and validation, image fetching and decoding
and model calls run in worker threads.
"""

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from guardrail import __version__
from guardrail._deps import require
from guardrail._redact import redact
from guardrail.errors import BackendTimeoutError, GuardrailError, InputError, ParseError
from guardrail.observers import RequestInfo, called_by
from guardrail.policies import Policy, PolicyError, resolve_policy, to_openai_categories
from guardrail.profiles import effective_policy
from guardrail.server.litellm_api import (
    LITELLM_PATH,
    LiteLLMGuardrailRequest,
    add_litellm_route,
    blocked_answer,
)
from guardrail.server.media import (
    NoRoom,
    PixelBudget,
    client_images,
    client_media,
    conversation_images,
    decode_media,
    request_pixels,
)
from guardrail.server.schemas import (
    OPENAI_CATEGORIES,
    REQUEST_HARMFUL,
    GuardExtension,
    GuardRequest,
    ModerationRequest,
    ModerationResponse,
    ModerationResult,
    TextPart,
)
from guardrail.server.settings import ServerSettings
from guardrail.verdict import Verdict, policy_verdict

# This module is imported only by `create_app`, so importing fastapi here keeps `import guardrail`
# light; FastAPI needs the names at module level to resolve the endpoints' annotations.
require("fastapi", extra="server")
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402

__all__ = ["create_app", "public_model_name"]

_EXTRA = "server"
log = logging.getLogger("guardrail.server")


class Overloaded(Exception):
    """The admission queue is full."""


class Admission:
    """At most ``limit`` guard calls at once and ``queue`` callers waiting; more get Overloaded."""

    def __init__(self, limit: int, queue: int):
        self.limit = limit
        self.queue = queue
        self.running = 0
        self.waiting = 0
        self._cond: asyncio.Condition | None = None

    async def __aenter__(self) -> None:
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            if self.running >= self.limit:
                if self.waiting >= self.queue:
                    raise Overloaded()
                self.waiting += 1
                try:
                    await self._cond.wait_for(lambda: self.running < self.limit)
                finally:
                    self.waiting -= 1
            self.running += 1

    async def __aexit__(self, *exc: Any) -> None:
        assert self._cond is not None
        async with self._cond:
            self.running -= 1
            self._cond.notify(1)


class _GuardStatsCollector:
    """Exports the guard's own counters (``guard.stats``: cache hits and misses, fast and
    reasoning verdicts, backend and micro-batch calls) as ``guardrail_guard_<name>_total``."""

    def __init__(self, stats: Any):
        self.stats = stats

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        from guardrail.stats import COUNTERS

        for name, value in self.stats.snapshot().items():
            yield CounterMetricFamily(f"guardrail_guard_{name}", COUNTERS.get(name, name), value=value)


class Metrics:
    """Prometheus metrics in a registry of the app's own (several apps per process are fine)."""

    def __init__(self, admission: Admission, guard_stats: Any = None):
        prom = require("prometheus_client", extra=_EXTRA)
        self.prom = prom
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter(
            "guardrail_requests", "HTTP requests", ["endpoint", "status"], registry=r
        )
        self.verdicts = prom.Counter(
            "guardrail_verdicts", "Verdicts returned", ["decision", "decided_by"], registry=r
        )
        self.errors = prom.Counter("guardrail_errors", "Requests that failed", ["kind"], registry=r)
        self.latency = prom.Histogram(
            "guardrail_request_latency_seconds",
            "Request latency",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.queue_depth = prom.Gauge(
            "guardrail_queue_depth", "Requests waiting for a guard slot", registry=r
        )
        self.queue_depth.set_function(lambda: admission.waiting)
        self.in_flight = prom.Gauge("guardrail_in_flight", "Guard calls running", registry=r)
        self.in_flight.set_function(lambda: admission.running)
        if guard_stats is not None:
            r.register(_GuardStatsCollector(guard_stats))

    def count(self, verdicts: list[Verdict]) -> None:
        for v in verdicts:
            self.verdicts.labels("allowed" if v.allowed else "blocked", v.decided_by).inc()

    def render(self) -> tuple[bytes, str]:
        return self.prom.generate_latest(self.registry), self.prom.CONTENT_TYPE_LATEST


def _error(
    status: int, message: str, kind: str, code: str | None = None, headers: dict[str, str] | None = None
):
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": code}}, status_code=status, headers=headers
    )


class _Edge:
    """Pure ASGI middleware, the first thing a request meets: the API key (before any of the
    body is read), the body size (413) and time (408) limits, and request counting/latency.

    The body is read (up to the limit) before the app runs, so a body without Content-Length is
    refused as soon as it passes the limit, and never buffered beyond it.
    """

    def __init__(self, app: Any, settings: ServerSettings, metrics: Metrics):
        self.app = app
        self.settings = settings
        self.limit = settings.max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        start = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            if path not in _PUBLIC_PATHS and not self._authorized(scope):
                self.metrics.errors.labels("unauthorized").inc()
                response = _error(
                    401, "missing or invalid API key", "invalid_request_error", "invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
                await response(scope, receive, send_wrapper)
                return
            try:
                messages = await asyncio.wait_for(
                    self._read_body(scope, receive), self.settings.body_timeout_s
                )
            except TimeoutError:
                self.metrics.errors.labels("body_timeout").inc()
                response = _error(
                    408, f"request body not received within {self.settings.body_timeout_s}s",
                    "invalid_request_error", "body_timeout", headers={"Connection": "close"},
                )  # fmt: skip
                if path == LITELLM_PATH:
                    response = _litellm_refusal(
                        f"the request body was not received within {self.settings.body_timeout_s}s"
                    )
                await response(scope, receive, send_wrapper)
                return
            if messages is None:
                response = _error(
                    413, f"request body over {self.limit} bytes", "invalid_request_error", "body_too_large"
                )
                if path == LITELLM_PATH:
                    response = _litellm_refusal(f"the request body is over {self.limit} bytes")
                self.metrics.errors.labels("body_too_large").inc()
                await response(scope, receive, send_wrapper)
                return
            replay = iter(messages)

            async def replay_receive() -> dict:
                try:
                    return next(replay)
                except StopIteration:
                    return await receive()  # http.disconnect and later messages

            await self.app(scope, replay_receive, send_wrapper)
        finally:
            endpoint = path if path in _KNOWN_PATHS else "other"
            self.metrics.requests.labels(endpoint, str(status_holder["status"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    def _authorized(self, scope: dict) -> bool:
        key = self.settings.api_key
        if key is None:
            return True
        headers = dict(scope.get("headers") or [])
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key.encode()):
            return True
        # LiteLLM's generic guardrail sends its api_key as x-api-key (accepted on its route only)
        other = headers.get(b"x-api-key") if scope.get("path") == LITELLM_PATH else None
        return other is not None and hmac.compare_digest(other.strip(), key.encode())

    async def _read_body(self, scope: dict, receive: Callable[[], Awaitable[dict]]) -> list[dict] | None:
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return None
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return []
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.limit:
                return None
            if not message.get("more_body", False):
                return messages


_KNOWN_PATHS = frozenset({"/v1/moderations", "/v1/guard", "/healthz", "/readyz", "/metrics", LITELLM_PATH})
# Answer without the API key (probes); they report nothing about the deployment.
_PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})

# What a client is told when the guard fails; the exception itself goes to the log.
_PUBLIC_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (BackendTimeoutError, "the guard backend timed out"),
    (ParseError, "the guard's output could not be read"),
    (GuardrailError, "the guard backend failed"),
)


def _litellm_refusal(why: str) -> Any:
    """The edge's refusal on LiteLLM's route: a ``BLOCKED`` answer, not an HTTP error, since
    LiteLLM's fail-open settings would let content through on an error."""
    return JSONResponse(blocked_answer(f"the content cannot be checked: {why}"))


def public_model_name(name: Any) -> str:
    """The model name a server may show: a local path is reduced to its last part.

    >>> public_model_name("/srv/models/tiny-guard/"), public_model_name("org/GuardReasoner-VL-3B")
    ('tiny-guard', 'org/GuardReasoner-VL-3B')
    """
    text = str(name or "guardrail")
    if os.path.isabs(text) or text.startswith(("./", "../", "~")) or os.path.exists(text):
        return os.path.basename(os.path.normpath(text)) or "guardrail"
    return text


def _public_error(error: str | None) -> str | None:
    """A verdict's error as a client may see it: backend failures carry upstream texts (URLs,
    bodies, addresses), so they become a fixed message; our own policy reasons stay."""
    if error is None:
        return None
    if error.startswith("backend error"):
        return "backend error: the guard backend failed"
    return error


def create_app(guard: Any, settings: ServerSettings | None = None) -> Any:
    """Build the moderation server app for ``guard``."""
    settings = settings or ServerSettings()
    admission = Admission(settings.max_concurrency, settings.max_queue)
    metrics = Metrics(admission, getattr(guard, "stats", None))
    model_name = settings.model_name or public_model_name(guard.backend.model_name)
    pixels = PixelBudget(settings.max_pixels_in_flight, settings.request_timeout_s)
    state = {"ready": True}

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        state["ready"] = True  # (again, when the same app is served after a shutdown)
        yield
        state["ready"] = False  # graceful shutdown: /readyz says so while requests finish

    app = FastAPI(
        title="guardrail moderation server",
        version=__version__,
        description="OpenAI-compatible moderation with a reasoning guard model (GuardReasoner-VL).",
        lifespan=lifespan,
    )
    app.state.guard = guard
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.admission = admission

    @app.exception_handler(InputError)
    async def _bad_input(request: Request, exc: InputError) -> Response:
        metrics.errors.labels("invalid_input").inc()
        return _error(400, str(exc), "invalid_request_error", type(exc).__name__)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        metrics.errors.labels("invalid_request").inc()
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()[:5]
        )
        return _error(422, f"invalid request body: {reasons}", "invalid_request_error", "invalid_body")

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, exc: Overloaded) -> Response:
        metrics.errors.labels("overloaded").inc()
        return _error(
            503, "server overloaded, retry later", "server_error", "overloaded",
            headers={"Retry-After": str(settings.retry_after_s)},
        )  # fmt: skip

    @app.exception_handler(asyncio.TimeoutError)
    async def _timeout(request: Request, exc: asyncio.TimeoutError) -> Response:
        metrics.errors.labels("timeout").inc()
        return _error(
            504, f"guard did not answer within {settings.request_timeout_s}s", "server_error", "timeout"
        )

    @app.exception_handler(PolicyError)
    async def _bad_policy(request: Request, exc: PolicyError) -> Response:
        metrics.errors.labels("invalid_input").inc()
        return _error(400, str(exc), "invalid_request_error", "PolicyError")

    @app.exception_handler(GuardrailError)
    async def _guard_error(request: Request, exc: GuardrailError) -> Response:
        metrics.errors.labels("guard_error").inc()
        log.warning("guard call failed: %s", redact(f"{type(exc).__name__}: {exc}"))
        message = next(text for kind, text in _PUBLIC_ERRORS if isinstance(exc, kind))
        return _error(502, message, "server_error", type(exc).__name__)

    async def parse(request: Request, model: type[BaseModel], precheck: Callable[[Any], None]) -> Any:
        """The request body as ``model``: parsed and validated in a worker thread (the event
        loop stays free), with ``precheck`` counting what the body holds before any object of
        the model is built."""
        raw = await request.body()

        def load() -> Any:
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                raise RequestValidationError([{"loc": ("body",), "msg": f"invalid JSON ({exc})"}]) from None
            precheck(data)
            try:
                return model.model_validate(data)
            except ValidationError as exc:
                raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None

        return await asyncio.to_thread(load)

    def count_inputs(data: Any) -> None:
        value = data.get("input") if isinstance(data, dict) else None
        if isinstance(value, list) and not 1 <= len(value) <= settings.max_inputs:
            raise InputError(f"input must hold 1 to {settings.max_inputs} items")
        parts = value if isinstance(value, list) else []
        images = sum(1 for p in parts if isinstance(p, dict) and p.get("type") == "image_url")
        if images > guard.limits.max_images:
            raise InputError(f"{images} images given; the limit is {guard.limits.max_images}")

    def count_images(data: Any) -> None:
        images = data.get("images") if isinstance(data, dict) else None
        if isinstance(images, list) and len(images) > guard.limits.max_images:
            raise InputError(f"{len(images)} images given; the limit is {guard.limits.max_images}")
        messages = data.get("messages") if isinstance(data, dict) else None
        if isinstance(messages, list) and len(messages) > guard.limits.max_messages:
            raise InputError(f"{len(messages)} messages given; the limit is {guard.limits.max_messages}")

    fetch_limits = dataclasses.replace(
        guard.limits,
        remote_allowed_networks=guard.limits.remote_allowed_networks + settings.remote_allowed_networks,
    )

    def load_images(sources: list[Any]) -> tuple[list[bytes], int]:
        data = client_images(sources, fetch_limits, allow_remote=settings.allow_remote_images)
        return data, request_pixels(data, guard.limits)

    def load_conversation(item: dict[str, Any]) -> int:
        """Replace the conversation's images by their bytes (only those the guard will see)
        and resolve the policy; both raise 400s. Returns the pixels held."""
        if item.get("policy") is not None:
            item["policy"] = resolve_policy(item["policy"])
        if item.get("messages") is None:
            return 0
        item["messages"], data = conversation_images(
            item["messages"], guard.profile, fetch_limits, allow_remote=settings.allow_remote_images
        )
        return request_pixels(data, guard.limits)

    async def run_guard(items: list[dict[str, Any]]) -> list[Verdict]:
        if not state["ready"]:
            raise Overloaded()
        held = 0
        for item in items:
            if item.get("images"):
                item["images"], n = await asyncio.to_thread(load_images, item["images"])
                held += n
            if item.get("messages") is not None or item.get("policy") is not None:
                held += await asyncio.to_thread(load_conversation, item)
            if item.get("videos") or item.get("audios"):  # decode off the event loop, before the guard
                item.update(await asyncio.to_thread(decode_media, guard, item))
        try:
            async with pixels.hold(held):
                verdicts = await _checked(items)
        except NoRoom:  # no room for the images' pixels in time
            raise Overloaded() from None
        metrics.count(verdicts)
        return [v.model_copy(update={"model": model_name, "error": _public_error(v.error)}) for v in verdicts]

    async def _checked(items: list[dict[str, Any]]) -> list[Verdict]:
        async with admission:
            try:
                with called_by("server"):  # what the guard's observers are told
                    return await asyncio.wait_for(guard.amoderate_batch(items), settings.request_timeout_s)
            except TimeoutError:
                if guard.on_error == "raise":
                    raise
                verdicts = [
                    policy_verdict(
                        guard.on_error,
                        f"guard timed out after {settings.request_timeout_s}s",
                        profile=guard.profile.name,
                        latency_ms=settings.request_timeout_s * 1000.0,
                    )
                    for _ in items
                ]
                notify = getattr(guard, "_notify", None)
                if notify is not None:  # the server's own verdicts are observed too
                    infos = [RequestInfo(None, "server", i, guard.mode, "server") for i in range(len(items))]
                    notify(verdicts, infos)
                return verdicts

    @app.post(
        "/v1/moderations",
        response_model=ModerationResponse,
        summary="Classify inputs (OpenAI-compatible)",
        openapi_extra=_body_schema(ModerationRequest),
    )
    async def moderations(request: Request) -> ModerationResponse:
        body = await parse(request, ModerationRequest, count_inputs)
        if not body.input and not isinstance(body.input, str):
            raise InputError(f"input must hold 1 to {settings.max_inputs} items")
        if isinstance(body.input, str):
            items, kinds = [{"prompt": body.input}], [["text"]]
        elif body.input and all(isinstance(x, str) for x in body.input):
            items, kinds = [{"prompt": x} for x in body.input], [["text"] for _ in body.input]
        else:
            items, kinds = [_parts_to_item(body.input)], [_input_types(body.input)]
        if not items or len(items) > settings.max_inputs:
            raise InputError(f"input must hold 1 to {settings.max_inputs} items")
        verdicts = await run_guard(items)
        policy = effective_policy(guard.profile, guard.policy)
        return ModerationResponse(
            id=f"modr-{uuid.uuid4().hex}",
            model=model_name,
            results=[_result(v, k, policy) for v, k in zip(verdicts, kinds, strict=True)],
        )

    @app.post(
        "/v1/guard",
        response_model=Verdict,
        summary="Check a request/response",
        openapi_extra=_body_schema(GuardRequest),
    )
    async def check(request: Request) -> Verdict:
        body = await parse(request, GuardRequest, count_images)
        item = {"prompt": body.prompt, "response": body.response, "images": body.images}
        if body.messages is not None:
            item["messages"] = body.messages
        if body.policy is not None:
            item["policy"] = body.policy
        if body.videos or body.audios:  # inline data only: server/media.py refuses anything else
            item.update(client_media(body.videos, body.audios))
        return (await run_guard([item]))[0]

    add_litellm_route(app, run_guard=run_guard, max_images=guard.limits.max_images)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness")
    async def readyz() -> Response:
        if not state["ready"]:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics_endpoint() -> Response:
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    _documented(app, (ModerationRequest, GuardRequest, LiteLLMGuardrailRequest))
    app.add_middleware(_Edge, settings=settings, metrics=metrics)
    return app


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint that parses its body itself (see _documented)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _documented(app: Any, models: tuple[type[BaseModel], ...]) -> None:
    """Add the request models that the endpoints parse themselves to the OpenAPI components."""
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = default()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in body.pop("$defs", {}).items():
                components.setdefault(name, sub)
            components[model.__name__] = body
        return schema

    app.openapi = openapi


def _parts_to_item(parts: list[Any]) -> dict[str, Any]:
    texts = [p.text for p in parts if isinstance(p, TextPart)]
    images = [p.image_url.url for p in parts if not isinstance(p, TextPart)]
    return {"prompt": "\n".join(texts) if texts else None, "images": images or None}


def _input_types(parts: list[Any]) -> list[str]:
    kinds = []
    if any(isinstance(p, TextPart) for p in parts):
        kinds.append("text")
    if any(not isinstance(p, TextPart) for p in parts):
        kinds.append("image")
    return kinds


def _result(verdict: Verdict, kinds: list[str], policy: Policy | None = None) -> ModerationResult:
    """One OpenAI moderation result: ``flagged`` when the input is harmful (a category whose
    action is "flag" included) or blocked by the failure policy; each OpenAI key the verdict's
    categories map to is true, with the category's probability where the guard gives one."""
    harmful = bool(verdict.request_harmful) if verdict.decided_by == "model" else not verdict.allowed
    score = verdict.score if verdict.score is not None else (1.0 if harmful else 0.0)
    categories = {c: False for c in OPENAI_CATEGORIES}
    scores = {c: 0.0 for c in OPENAI_CATEGORIES}
    applied: dict[str, list[str]] = {c: [] for c in OPENAI_CATEGORIES}
    for code in verdict.categories:
        for key in to_openai_categories(policy, [code]):
            categories[key] = True
            given = (verdict.category_scores or {}).get(code)
            scores[key] = max(scores[key], given if given is not None else score)
            applied[key] = kinds
    categories[REQUEST_HARMFUL] = harmful
    scores[REQUEST_HARMFUL] = score
    applied[REQUEST_HARMFUL] = kinds
    return ModerationResult(
        flagged=harmful or not verdict.allowed,
        categories=categories,
        category_scores=scores,
        category_applied_input_types=applied,
        guardrail=GuardExtension(
            request_harmful=verdict.request_harmful,
            allowed=verdict.allowed,
            categories=list(verdict.categories),
            policy=verdict.policy,
            controversial=verdict.controversial,
            decided_by=verdict.decided_by,
            parsed=verdict.parsed,
            reasoning=verdict.reasoning,
            error=verdict.error,
            score=verdict.score,
            latency_ms=verdict.latency_ms,
            output_tokens=verdict.output_tokens,
        ),
    )
