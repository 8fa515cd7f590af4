"""Remote backend: a client of an OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp server).

Install with ``pip install "guardrail-vl[remote]"``. Two thin HTTP shells, one sync
(``httpx.Client``, a batch's prompts sent concurrently from a thread pool) and one natively
async (``httpx.AsyncClient`` + ``asyncio.gather``), over the same pure parts: the wire protocol
(:mod:`guardrail.backends.remote_protocol`: request bodies, answers, prompt log-probabilities,
the answer cut) and the retries (:mod:`guardrail.backends.retry`). What is sent, fast mode,
special-token escaping and failure handling: ``docs/backends/remote.md``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from guardrail import _deprecated
from guardrail._deps import require
from guardrail._redact import redact, redact_url
from guardrail.backends.base import Backend, Generation, GenerationOptions, ScoreRequest, ScoreResult
from guardrail.backends.remote_protocol import (
    RemoteCore,
    RemoteRequest,
    _prompt_logprobs,  # noqa: F401 - re-exported for the tests of the log-probability formats
    _tail_logprob,  # noqa: F401
    escape_special,
    group_scores,
    image_data_url,
)
from guardrail.backends.retry import Answer, RetryPolicy, retry_flow, run_async, run_sync
from guardrail.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    UnsupportedError,
)
from guardrail.profiles.base import RenderedPrompt

__all__ = ["RemoteBackend", "RemoteCore", "escape_special", "from_endpoint", "image_data_url"]

_EXTRA = "remote"
_SECRET_HEADER = re.compile(r"(?i)auth|key|token|secret|cookie|session|pass")
# Keys the cache identity's digest of credentials and options (stable for this process only, so
# the digest reveals nothing about an API key outside it).
_IDENTITY_SALT = secrets.token_bytes(16)


class RemoteBackend(Backend):
    """Send prompts to an OpenAI-compatible endpoint; see ``docs/backends/remote.md``.

    ``base_url`` is the API root including ``/v1`` (``http://127.0.0.1:8000/v1``); ``model`` is
    the served model name. ``extra_body`` is merged into every request body (engine-specific
    options, e.g. vLLM's ``{"repetition_penalty": 1.0}``). ``profile`` names the guard profile
    the served model needs (default ``guardreasoner-vl``). ``timeout`` bounds a whole call,
    retries included; ``max_retries`` / ``backoff_s`` retry connection errors, 429 and 5xx.

    ``transport`` replaces httpx's network transport (``httpx.MockTransport`` in tests, or
    custom networking): an ``httpx.BaseTransport`` serves the sync calls, an
    ``httpx.AsyncBaseTransport`` the async ones (``httpx.MockTransport`` is both); a call the
    transport cannot serve raises :class:`~guardrail.errors.ConfigurationError`. The backend
    closes it when it closes.
    """

    name = "remote"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        max_concurrency: int = 16,
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        escape_special_tokens: bool = True,
        mode: str = "auto",
        profile: str | None = None,
        transport: Any = None,
    ):
        httpx = self._httpx = require("httpx", extra=_EXTRA)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"base_url must start with http:// or https://; got {redact(base_url)!r}"
            )
        if timeout <= 0 or connect_timeout <= 0 or max_concurrency < 1:
            raise ConfigurationError("timeout, connect_timeout must be > 0 and max_concurrency >= 1")
        if transport is not None and not isinstance(
            transport, (httpx.BaseTransport, httpx.AsyncBaseTransport)
        ):
            raise ConfigurationError(
                "transport must be an httpx transport (httpx.BaseTransport, httpx.AsyncBaseTransport "
                f"or httpx.MockTransport); got {type(transport).__name__}"
            )
        self.base_url = base_url.rstrip("/")
        self._where = redact_url(self.base_url)  # what error messages show: no credentials
        self.model_name = model
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_concurrency = max_concurrency
        self._profile = profile
        self.core = RemoteCore(
            model=model,
            extra_body=dict(extra_body or {}),
            escape_special_tokens=escape_special_tokens,
            mode=mode,
        )
        self.retry = RetryPolicy(max_retries=max_retries, backoff_s=backoff_s)
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # Never shown: masked in any error text that might echo them.
        secret_headers = [v for k, v in self._headers.items() if _SECRET_HEADER.search(k)]
        self._secrets = (*secret_headers, api_key or "")
        self._transport = transport
        sync_transport = transport if isinstance(transport, httpx.BaseTransport) else None
        self._client = httpx.Client(headers=self._headers, limits=self._limits(), transport=sync_transport)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="guardrail-remote")
        self._async_clients: dict[int, Any] = {}
        self._async_lock = threading.Lock()
        self._closed = False

    def _limits(self) -> Any:
        return self._httpx.Limits(
            max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
        )

    def _transport_for(self, kind: Any, calls: str) -> Any:
        """The given transport for clients of ``kind`` (None: httpx's own network transport)."""
        if self._transport is None or isinstance(self._transport, kind):
            return self._transport
        raise ConfigurationError(
            f"the transport given ({type(self._transport).__name__}) cannot serve {calls} calls: "
            f"pass an httpx.{kind.__name__} (httpx.MockTransport serves both)"
        )

    def default_profile(self) -> str | None:
        return self._profile

    def identity(self) -> dict[str, Any]:
        """The endpoint (without credentials or query), the served model, the request mode and
        a digest of everything else sent with each request (the full URL, headers and API key,
        ``extra_body``): two guards share verdicts only when they send the same requests to the
        same server. The digest is keyed per process, so it tells nothing about the key."""
        core = self.core
        sent = json.dumps([self.base_url, sorted(self._headers.items()), dict(core.extra_body)],
                          sort_keys=True, default=repr)  # fmt: skip
        digest = hashlib.blake2b(sent.encode(), key=_IDENTITY_SALT, digest_size=12).hexdigest()
        return {"endpoint": self._where, "model": core.model, "mode": core.mode,
                "escape_special_tokens": core.escape_special_tokens, "sent": digest}  # fmt: skip

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailableError("the remote backend is closed", retryable=False)

    def _deadline(self, request: RemoteRequest) -> float:
        bound = self.timeout if request.timeout_s is None else min(self.timeout, request.timeout_s)
        return time.monotonic() + bound

    def check_profile(self, profile: Any) -> None:
        """Refuse a family no OpenAI-compatible server can serve (its ``remote_unsupported``)."""
        reason = getattr(profile, "remote_unsupported", None)
        if reason:
            raise UnsupportedError(f"the {profile.name!r} guard cannot run on the remote backend: {reason}")

    def _flow(self, request: RemoteRequest, deadline: float) -> Any:
        """The request's attempts (:func:`~guardrail.backends.retry.retry_flow`): the answer
        read by the protocol, or the failure once retries are spent or time is up."""
        core = self.core
        return retry_flow(
            self.retry, deadline, lambda status, content: core.read(request, status, content),
            lambda error: core.failure(request, error),
        )  # fmt: skip

    # ------------------------------------------------------------------------------ sync
    def generate(self, prompts: Sequence[RenderedPrompt], options: GenerationOptions) -> list[Generation]:
        self._check_open()
        return self._map_sync([self.core.build(p, options) for p in prompts])

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        self._check_open()
        built = [self.core.build_score(r) for r in requests]
        return group_scores(built, self._map_sync([req for group in built for req in group]))

    #: Fast mode: micro-batches in flight at once (the engine batches their requests itself).
    supports_scoring = True
    batch_concurrency = 4

    def _map_sync(self, requests: list[RemoteRequest]) -> list[Any]:
        """Each request's answer (or failure), in order; several are sent concurrently."""
        self._transport_for(self._httpx.BaseTransport, "sync")
        if len(requests) <= 1:
            return [self._call_sync(r) for r in requests]
        return list(self._pool.map(self._call_sync, requests))

    def _call_sync(self, request: RemoteRequest) -> Any:
        deadline = self._deadline(request)
        return run_sync(self._flow(request, deadline), lambda: self._send_sync(request, deadline))

    def _send_sync(self, request: RemoteRequest, deadline: float) -> Answer:
        httpx = self._httpx
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BackendTimeoutError(f"no answer from {self._where} in time", retryable=False)
        timeout = httpx.Timeout(remaining, connect=min(self.connect_timeout, remaining))
        try:
            with self._client.stream(
                "POST", self.base_url + request.path, json=request.body, timeout=timeout
            ) as resp:
                chunks = []
                for chunk in resp.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:  # a server trickling its answer
                        raise BackendTimeoutError(
                            f"answer from {self._where} not complete in time", retryable=False
                        )
                return resp.status_code, b"".join(chunks), resp.headers.get("retry-after")
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated in one place
            raise self._translate(exc) from exc

    # ----------------------------------------------------------------------------- async
    async def agenerate(
        self, prompts: Sequence[RenderedPrompt], options: GenerationOptions
    ) -> list[Generation]:
        self._check_open()
        return await self._map_async([self.core.build(p, options) for p in prompts])

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        self._check_open()
        built = [self.core.build_score(r) for r in requests]
        return group_scores(built, await self._map_async([req for group in built for req in group]))

    async def _map_async(self, requests: list[RemoteRequest]) -> list[Any]:
        client, sem = await self._async_client()
        return list(await asyncio.gather(*(self._call_async(client, sem, r) for r in requests)))

    async def _call_async(self, client: Any, sem: asyncio.Semaphore, request: RemoteRequest) -> Any:
        deadline = self._deadline(request)

        async def send() -> Answer:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    async with sem:
                        return await self._send_async(client, request, deadline)
            except TimeoutError:
                raise BackendTimeoutError(
                    f"no answer from {self._where} within {self.timeout}s", retryable=False
                ) from None

        return await run_async(self._flow(request, deadline), send)

    async def _send_async(self, client: Any, request: RemoteRequest, deadline: float) -> Answer:
        httpx = self._httpx
        remaining = max(deadline - time.monotonic(), 0.001)
        timeout = httpx.Timeout(remaining, connect=min(self.connect_timeout, remaining))
        try:
            resp = await client.post(self.base_url + request.path, json=request.body, timeout=timeout)
            return resp.status_code, resp.content, resp.headers.get("retry-after")
        except Exception as exc:  # noqa: BLE001 - translated in one place
            raise self._translate(exc) from exc

    async def _async_client(self) -> tuple[Any, asyncio.Semaphore]:
        """One AsyncClient + semaphore per event loop (clients cannot cross loops).

        Each client is closed when its loop ends: a small async generator, started in that
        loop, holds it, and ``asyncio.run`` (like any runner) closes the async generators of a
        loop before closing the loop. Without that, a script calling ``asyncio.run(guard.
        amoderate(...))`` again and again would leave one client's sockets per run to the
        garbage collector.
        """
        transport = self._transport_for(self._httpx.AsyncBaseTransport, "async")
        loop = asyncio.get_running_loop()
        key = id(loop)
        with self._async_lock:
            entry = self._async_clients.get(key)
            if entry is not None and entry[2] is loop:
                return entry[0], entry[1]
            client = self._httpx.AsyncClient(
                headers=self._headers, limits=self._limits(), transport=transport
            )
            keeper = self._keep_until_loop_ends(key, client)
            entry = (client, asyncio.Semaphore(self.max_concurrency), loop, keeper)
            self._async_clients[key] = entry
        await keeper.__anext__()  # started here: the loop now knows it and closes it at the end
        return entry[0], entry[1]

    async def _keep_until_loop_ends(self, key: int, client: Any) -> Any:
        try:
            yield
        finally:
            with self._async_lock:
                if key in self._async_clients and self._async_clients[key][0] is client:
                    del self._async_clients[key]
            await client.aclose()

    # --------------------------------------------------------------------------- helpers
    def _translate(self, exc: BaseException) -> BaseException:
        """An httpx exception as the typed error it means (retryable for connection failures)."""
        httpx = self._httpx
        where = self._where
        if isinstance(exc, httpx.ConnectTimeout):
            return BackendUnavailableError(f"cannot connect to {where}: connect timeout", retryable=True)
        if isinstance(exc, httpx.TimeoutException):
            return BackendTimeoutError(f"no answer from {where} within {self.timeout}s", retryable=False)
        if isinstance(
            exc, (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
        ):
            return BackendUnavailableError(
                f"connection to {where} failed: {self._redact(exc)}", retryable=True
            )
        if isinstance(exc, httpx.HTTPError):
            return BackendError(f"HTTP error talking to {where}: {self._redact(exc)}", retryable=False)
        return exc

    def _redact(self, exc: BaseException) -> str:
        """An exception's text for a message: the endpoint as shown elsewhere, secrets masked."""
        return redact(str(exc).replace(self.base_url, self._where), self._secrets) or type(exc).__name__

    async def aclose(self) -> None:
        """Close the connections of the running loop's client, then everything else."""
        loop = asyncio.get_running_loop()
        with self._async_lock:
            entry = self._async_clients.get(id(loop))
        if entry is not None:
            await entry[3].aclose()  # its ``finally`` closes the client and forgets it
        self.close()

    def close(self) -> None:
        """Close the sync client and the async clients of loops that are still open.

        Async users should prefer ``await guard.aclose()`` from the loop they used: a client
        whose event loop has already closed cannot be closed cleanly.
        """
        if self._closed:
            return
        self._closed = True
        self._client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._async_lock:
            clients = list(self._async_clients.values())
            self._async_clients.clear()
        for client, _, loop, _ in clients:
            if loop.is_closed():
                continue  # closed with its loop (see _async_client)
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)
            else:
                loop.run_until_complete(client.aclose())


def from_endpoint(base_url: str, model: str, api_key: str | None = None, **options: Any) -> RemoteBackend:
    """Deprecated: use ``RemoteBackend(base_url, model, api_key)`` or ``Guard.from_endpoint``."""
    _deprecated.warn(
        "guardrail.backends.remote.from_endpoint", "RemoteBackend(base_url, model) or Guard.from_endpoint"
    )
    return RemoteBackend(base_url, model, api_key, **options)


def load(model: str, *, base_url: str | None = None, **options: Any) -> RemoteBackend:
    """The loader of ``Guard.from_pretrained(model, backend="remote", base_url=...)`` (the CLI's)."""
    if not base_url:
        raise ConfigurationError("the remote backend needs base_url (CLI: --base-url)")
    return RemoteBackend(base_url, model, **options)
