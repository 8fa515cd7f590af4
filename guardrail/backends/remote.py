"""Remote backend: a client of an OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp server).

Install with ``pip install "guardrail-vl[remote]"``.

Chat profiles (GuardReasoner-VL) are sent to ``POST {base_url}/chat/completions`` as the
profile's messages: the system instruction, then the user content parts in the reference order
with each image as a base64 PNG data URL where ``<image>`` stands. Profiles without a chat
template (GuardReasoner) are sent to ``POST {base_url}/completions`` as the raw prompt.

All request building, response reading and retry decisions live in :class:`RemoteCore`, which
does no I/O; :class:`RemoteBackend` has two thin shells over it, one sync (``httpx.Client``,
prompts of a batch sent concurrently from a thread pool) and one natively async
(``httpx.AsyncClient`` + ``asyncio.gather``).

Failure handling:

- Retries with exponential backoff (and ``Retry-After`` when the server sends it) on connection
  errors, 429 and 5xx; never on other 4xx (a wrong model name, a rejected request).
- ``timeout`` bounds a whole call, retries included: a call never hangs past it, even against
  a server that trickles its answer. ``connect_timeout`` bounds each connection attempt.
- ``max_concurrency`` bounds the requests in flight from one backend.
- A prompt whose request fails for good gets a per-item error; the Guard's ``on_error`` policy
  turns it into a verdict (blocked by default, ``decided_by="policy"``).

Fast mode (label probabilities) needs the engine to return the log-probabilities of prompt
tokens. Each candidate continuation is sent as its own request (prompt + forced answer +
candidate, ``max_tokens=1``), all concurrently, so an engine with prefix caching computes the
shared prompt once:

- chat profiles: ``/chat/completions`` with the answer as a final assistant message,
  ``continue_final_message=true``, ``add_generation_prompt=false`` and ``prompt_logprobs=0``
  (vLLM's extension: the response's top-level ``prompt_logprobs`` gives each prompt token's
  log-probability);
- raw profiles: ``/completions`` with ``echo=true`` and ``logprobs=1`` (OpenAI's legacy echo
  format, ``choices[0].logprobs.tokens/token_logprobs``; vLLM and llama.cpp's server give it).

The candidate's log-probability is the sum over the prompt's last tokens, matched by their
text, that spell the candidate. An endpoint that answers without these log-probabilities raises
:class:`~guardrail.errors.UnsupportedError`.

Stop strings are sent as ``stop``; OpenAI-style servers leave the stop string out of the text,
so when the server names it (vLLM's ``stop_reason``) it is put back, and the output reads as the
model wrote it. Reasoning mode is different: the guard passes the profile's ``answer_end``
check, because a ``</result>`` can occur inside ``<think>`` (a result block the model quotes
from the user's text), where a server-side stop string would end the output and hand the quoted
block to the parser. Then no stop string is sent: the server generates to the end of turn (the
released models end their turn right after ``</result>``) and the text is cut here where the
model's own answer ends; an answer completed before ``max_tokens`` counts as finished even when
the server then ran into the cap.

Special tokens: an OpenAI-compatible server renders its chat template and tokenizes the result
with special tokens enabled, so a user who types ``<|im_end|>`` could forge template structure.
With ``escape_special_tokens=True`` (default) every ``<|...|>`` sequence in user content is sent
as ``<\\u200b|...|>`` (a zero-width space after ``<``): the model sees the same visible text, but
no special token can be formed.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import http
import io
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from guardrail import _deprecated
from guardrail._deps import require
from guardrail._redact import redact, redact_url
from guardrail.backends.base import Backend, Generation, GenerationOptions, ScoreRequest, ScoreResult
from guardrail.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    UnsupportedError,
)
from guardrail.profiles.base import RenderedPrompt

__all__ = ["RemoteBackend", "RemoteCore", "from_endpoint", "image_data_url"]

_EXTRA = "remote"
_SPECIAL = re.compile(r"<(\|[^|<>\s]{1,64}\|)>")
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
log = logging.getLogger("guardrail.remote")
_SECRET_HEADER = re.compile(r"(?i)auth|key|token|secret|cookie|session|pass")
# Keys the cache identity's digest of credentials and options (stable for this process only, so
# the digest reveals nothing about an API key outside it).
_IDENTITY_SALT = secrets.token_bytes(16)


def image_data_url(image: Any) -> str:
    """Encode a PIL image as a ``data:image/png;base64,...`` URL (lossless)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def escape_special(text: str) -> str:
    """Break ``<|name|>`` sequences so a server tokenizer cannot read them as special tokens.

    >>> escape_special("hi <|im_end|> there")
    'hi <\\u200b|im_end|> there'
    """
    return _SPECIAL.sub("<\u200b\\1>", text)


@dataclass(frozen=True)
class RemoteRequest:
    path: str
    body: dict[str, Any]
    # For scoring requests: the candidate text whose log-probability the answer gives.
    scored: str | None = None
    # The caller's own bound on the call (GenerationOptions.timeout_s), under the backend's.
    timeout_s: float | None = None
    # Where the model's own answer ends (GenerationOptions.answer_end): the text is cut there.
    answer_end: Callable[[str], int | None] | None = None


@dataclass
class RemoteCore:
    """Everything the remote backend decides, without I/O (shared by the sync and async shells)."""

    model: str
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    escape_special_tokens: bool = True
    max_retries: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    mode: str = "auto"  # "auto" | "chat" | "completions"

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "chat", "completions"):
            raise ConfigurationError(f"mode must be auto, chat or completions; got {self.mode!r}")
        if self.max_retries < 0 or self.backoff_s < 0:
            raise ConfigurationError("max_retries and backoff_s must be >= 0")

    # ---------------------------------------------------------------------------- requests
    def build(self, prompt: RenderedPrompt, options: GenerationOptions) -> RemoteRequest:
        body: dict[str, Any] = {"model": self.model, "max_tokens": options.max_new_tokens}
        if options.greedy:
            body.update(temperature=0.0, top_p=1.0)
        else:
            body.update(temperature=options.temperature, top_p=options.top_p)
        if options.seed is not None:
            body["seed"] = options.seed
        if options.stop and options.answer_end is None:
            body["stop"] = list(options.stop)  # else cut in interpret(): see the module docstring
        use_chat = self.mode == "chat" or (self.mode == "auto" and prompt.messages is not None)
        if use_chat:
            if prompt.messages is None:
                raise ConfigurationError("this profile has no chat messages; use mode='completions'")
            body["messages"] = [self._message(m, prompt) for m in prompt.messages]
            path = "/chat/completions"
        else:
            if prompt.images:
                raise ConfigurationError("images need a chat profile (the completions API takes text only)")
            text = "".join(p if isinstance(p, str) else p.token for p in prompt.parts)  # type: ignore[union-attr]
            if self.escape_special_tokens:
                # Only user text can hold forged tokens, but a raw prompt has no boundaries;
                # templates without a chat format (GuardReasoner) contain no special tokens.
                text = escape_special(text)
            body["prompt"] = text
            path = "/completions"
        body.update(self.extra_body)
        answer_end = _for_prompt(options.answer_end, prompt) if options.answer_end is not None else None
        return RemoteRequest(path, body, timeout_s=options.timeout_s, answer_end=answer_end)

    def _message(self, message: Mapping[str, Any], prompt: RenderedPrompt) -> dict[str, Any]:
        content = message["content"]
        if isinstance(content, str):
            return {"role": message["role"], "content": content}
        parts = []
        for part in content:
            if part["type"] == "image":
                parts.append(
                    {"type": "image_url", "image_url": {"url": image_data_url(prompt.images[part["index"]])}}
                )
            else:
                text = part["text"]
                if self.escape_special_tokens and message["role"] != "system":
                    text = escape_special(text)
                parts.append({"type": "text", "text": text})
        return {"role": message["role"], "content": parts}

    def build_score(self, request: ScoreRequest) -> list[RemoteRequest]:
        """One request per candidate continuation (see the module docstring)."""
        out = []
        for continuation in request.continuations:
            answer = request.prefix + continuation
            body: dict[str, Any] = {"model": self.model, "max_tokens": 1, "temperature": 0.0, "top_p": 1.0}
            prompt = request.prompt
            if self.mode == "chat" or (self.mode == "auto" and prompt.messages is not None):
                if prompt.messages is None:
                    raise ConfigurationError("this profile has no chat messages; use mode='completions'")
                body["messages"] = [self._message(m, prompt) for m in prompt.messages]
                body["messages"].append({"role": "assistant", "content": answer})
                body.update(add_generation_prompt=False, continue_final_message=True, prompt_logprobs=0)
                path = "/chat/completions"
            else:
                text = self.build(prompt, GenerationOptions(max_new_tokens=1)).body["prompt"]
                body.update(prompt=text + answer, echo=True, logprobs=1)
                path = "/completions"
            body.update(self.extra_body)
            out.append(RemoteRequest(path, body, scored=continuation))
        return out

    # --------------------------------------------------------------------------- responses
    def interpret_score(self, status: int, content: bytes, request: RemoteRequest) -> float:
        """The log-probability of ``request.scored`` from the answer's prompt log-probabilities."""
        if status >= 400:
            self.interpret(status, content, True)  # raises the typed HTTP error
        try:
            data = json.loads(content)
            tokens, values = _prompt_logprobs(data)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            log.debug("malformed log-probabilities from endpoint (%s); body starts %s", redact(exc),
                      redact(repr(content[:200])))  # fmt: skip
            raise BackendError(
                f"malformed log-probabilities from endpoint ({type(exc).__name__}; body logged at DEBUG)"
            ) from exc
        if tokens is None:
            raise UnsupportedError(
                "the endpoint returned no prompt log-probabilities, which fast mode needs: serve the "
                "guard with vLLM (chat: prompt_logprobs; completions: echo + logprobs)"
            )
        return _tail_logprob(tokens, values, request.scored or "")

    def interpret(
        self, status: int, content: bytes, chat: bool, stop: Sequence[str] = (),
        answer_end: Callable[[str], int | None] | None = None,
    ) -> Generation:  # fmt: skip
        """Read one HTTP response into a Generation, or raise a typed error. With ``answer_end``
        the text is cut where the model's own answer ends (see the module docstring)."""
        if status >= 400:
            # The body is the upstream's (it may echo keys, internal addresses): DEBUG log only.
            log.debug("endpoint answered HTTP %d: %s", status, redact(_error_detail(content)))
            retryable = status in _RETRY_STATUS or status >= 500
            cls = BackendUnavailableError if retryable else BackendError
            raise cls(f"endpoint answered {_status_text(status)}", retryable=retryable)
        try:
            data = json.loads(content)
            choice = data["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise TypeError("output is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            log.debug("malformed response from endpoint; body starts %s", redact(repr(content[:200])))
            raise BackendError(
                f"malformed response from endpoint ({type(exc).__name__}; body logged at DEBUG)"
            ) from exc
        usage = data.get("usage") or {}
        tokens = usage.get("completion_tokens") if isinstance(usage, Mapping) else None
        reason = choice.get("finish_reason")
        matched = choice.get("stop_reason")
        if isinstance(matched, str) and matched in stop and not text.endswith(matched):
            text += matched  # the server left the stop string out; it is part of the answer
        finish = "length" if reason == "length" else "stop"
        end = answer_end(text) if answer_end is not None else None
        if end is not None:
            text, finish = text[:end], "stop"  # the answer was complete before any cap
        return Generation(
            text=text,
            output_tokens=tokens if isinstance(tokens, int) else None,
            finish_reason=finish,
        )

    def retry_delay(self, attempt: int, error: BaseException, retry_after: str | None = None) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or None to give up."""
        if attempt >= self.max_retries or not getattr(error, "retryable", False):
            return None
        delay = min(self.backoff_s * (2**attempt), self.max_backoff_s)
        hinted = _parse_retry_after(retry_after)
        if hinted is not None:
            delay = min(max(delay, hinted), self.max_backoff_s)
        return delay


def _for_prompt(
    answer_end: Callable[[str, RenderedPrompt | None], int | None], prompt: RenderedPrompt
) -> Callable[[str], int | None]:
    """``answer_end`` for the outputs of one prompt."""

    def end(text: str) -> int | None:
        return answer_end(text, prompt)

    return end


def _prompt_logprobs(data: Mapping[str, Any]) -> tuple[list[str] | None, list[float | None]]:
    """Prompt tokens (as text) and their log-probabilities from either format, or (None, [])."""
    choice = (data.get("choices") or [{}])[0]
    entries = data.get("prompt_logprobs")
    if entries is None and isinstance(choice, Mapping):
        entries = choice.get("prompt_logprobs")
    if entries is not None:  # vLLM: [None, {"<id>": {"logprob", "rank", "decoded_token"}}, ...]
        ids = data.get("prompt_token_ids")
        tokens: list[str] = []
        values: list[float | None] = []
        for pos, entry in enumerate(entries):
            if entry is None:
                tokens.append("")
                values.append(None)
                continue
            if len(entry) == 1:
                info = next(iter(entry.values()))
            elif ids is not None:
                info = entry[str(ids[pos])] if str(ids[pos]) in entry else entry[ids[pos]]
            else:
                raise ValueError("several candidates per prompt position and no prompt_token_ids")
            tokens.append(str(info.get("decoded_token") or ""))
            values.append(float(info["logprob"]))
        return tokens, values
    legacy = choice.get("logprobs") if isinstance(choice, Mapping) else None
    if isinstance(legacy, Mapping) and legacy.get("tokens") is not None:
        tokens = [str(t) for t in legacy["tokens"]]
        values = [None if v is None else float(v) for v in legacy["token_logprobs"]]
        usage = data.get("usage") or {}
        generated = usage.get("completion_tokens") if isinstance(usage, Mapping) else None
        generated = generated if isinstance(generated, int) and generated >= 0 else 1
        if generated:  # echo: prompt tokens, then the generated ones
            tokens, values = tokens[:-generated], values[:-generated]
        return tokens, values
    return None, []


def _tail_logprob(tokens: Sequence[str], values: Sequence[float | None], text: str) -> float:
    """The summed log-probability of the last prompt tokens, which must spell ``text``.

    >>> _tail_logprob(["a", " b", "c", " d"], [None, -1.0, -2.0, -0.5], "c d")
    -2.5
    """
    spelled, total = "", 0.0
    for token, value in zip(reversed(tokens), reversed(values), strict=True):
        spelled = token + spelled
        if value is None:
            break
        total += value
        if spelled == text:
            return total
        if len(spelled) >= len(text):
            break
    raise BackendError(
        f"the prompt's last tokens ({spelled[-len(text) - 10 :]!r}) do not spell the scored text {text!r}"
    )


def _error_detail(content: bytes) -> str:
    try:
        data = json.loads(content)
        err = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(err, dict):
            err = err.get("message") or err.get("detail") or err
        return str(err)[:300]
    except ValueError:
        return content[:300].decode("utf-8", "replace")


def _status_text(status: int) -> str:
    """``HTTP 404 Not Found (...)``: the status and its standard phrase, never the body."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    hint = {401: " (check api_key)", 403: " (check api_key)", 404: " (check base_url and the model name)"}
    return f"HTTP {status} {phrase}{hint.get(status, '')}"


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


class RemoteBackend(Backend):
    """Send prompts to an OpenAI-compatible endpoint; see the module docstring.

    ``base_url`` is the API root including ``/v1`` (``http://127.0.0.1:8000/v1``); ``model`` is
    the served model name. ``extra_body`` is merged into every request body (engine-specific
    options, e.g. vLLM's ``{"repetition_penalty": 1.0}``). ``profile`` names the guard profile
    the served model needs (default ``guardreasoner-vl``).
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
    ):
        self._httpx = require("httpx", extra=_EXTRA)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"base_url must start with http:// or https://; got {redact(base_url)!r}"
            )
        if timeout <= 0 or connect_timeout <= 0 or max_concurrency < 1:
            raise ConfigurationError("timeout, connect_timeout must be > 0 and max_concurrency >= 1")
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
            max_retries=max_retries,
            backoff_s=backoff_s,
            mode=mode,
        )
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # Never shown: masked in any error text that might echo them.
        secret_headers = [v for k, v in self._headers.items() if _SECRET_HEADER.search(k)]
        self._secrets = (*secret_headers, api_key or "")
        limits = self._httpx.Limits(
            max_connections=max_concurrency, max_keepalive_connections=max_concurrency
        )
        self._client = self._httpx.Client(headers=self._headers, limits=limits)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="guardrail-remote")
        self._async_clients: dict[int, Any] = {}
        self._async_lock = threading.Lock()
        self._closed = False

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

    # ------------------------------------------------------------------------------ sync
    def generate(self, prompts: Sequence[RenderedPrompt], options: GenerationOptions) -> list[Generation]:
        if self._closed:
            raise BackendUnavailableError("the remote backend is closed", retryable=False)
        requests = [self.core.build(p, options) for p in prompts]
        if len(requests) == 1:
            return [self._call_sync(requests[0])]
        return list(self._pool.map(self._call_sync, requests))

    def _read(self, request: RemoteRequest, status: int, content: bytes) -> Any:
        if request.scored is not None:
            return self.core.interpret_score(status, content, request)
        return self.core.interpret(
            status, content, request.path == "/chat/completions", request.body.get("stop", ()),
            request.answer_end,
        )  # fmt: skip

    @staticmethod
    def _failure(request: RemoteRequest, error: BackendError) -> Any:
        if request.scored is not None:
            return error
        return Generation(text="", finish_reason="error", error=error)

    def _deadline(self, request: RemoteRequest) -> float:
        bound = self.timeout if request.timeout_s is None else min(self.timeout, request.timeout_s)
        return time.monotonic() + bound

    def _call_sync(self, request: RemoteRequest) -> Any:
        deadline = self._deadline(request)
        attempt = 0
        while True:
            retry_after = None
            try:
                status, content, retry_after = self._send_sync(request, deadline)
                return self._read(request, status, content)
            except BackendError as exc:
                error: BackendError = exc
            delay = self.core.retry_delay(attempt, error, retry_after)
            if delay is None or time.monotonic() + delay >= deadline:
                return self._failure(request, error)
            time.sleep(delay)
            attempt += 1

    def _send_sync(self, request: RemoteRequest, deadline: float) -> tuple[int, bytes, str | None]:
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
                    if time.monotonic() > deadline:
                        raise BackendTimeoutError(
                            f"answer from {self._where} not complete in time", retryable=False
                        )
                return resp.status_code, b"".join(chunks), resp.headers.get("retry-after")
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated in one place
            raise self._translate(exc) from exc

    # --------------------------------------------------------------------------- scoring
    supports_scoring = True
    #: Micro-batches in flight at once: HTTP requests of several batches overlap (the engine
    #: batches them itself).
    batch_concurrency = 4

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        if self._closed:
            raise BackendUnavailableError("the remote backend is closed", retryable=False)
        built = [self.core.build_score(r) for r in requests]
        flat = [req for group in built for req in group]
        answers = (
            list(self._pool.map(self._call_sync, flat))
            if len(flat) > 1
            else [self._call_sync(flat[0])]
            if flat
            else []
        )
        return _group_scores(built, answers)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        if self._closed:
            raise BackendUnavailableError("the remote backend is closed", retryable=False)
        built = [self.core.build_score(r) for r in requests]
        client, sem = await self._async_client()
        answers = await asyncio.gather(
            *(self._call_async(client, sem, req) for group in built for req in group)
        )
        return _group_scores(built, list(answers))

    # ----------------------------------------------------------------------------- async
    async def agenerate(
        self, prompts: Sequence[RenderedPrompt], options: GenerationOptions
    ) -> list[Generation]:
        if self._closed:
            raise BackendUnavailableError("the remote backend is closed", retryable=False)
        requests = [self.core.build(p, options) for p in prompts]
        client, sem = await self._async_client()
        return list(await asyncio.gather(*(self._call_async(client, sem, r) for r in requests)))

    async def _async_client(self) -> tuple[Any, asyncio.Semaphore]:
        """One AsyncClient + semaphore per event loop (clients cannot cross loops).

        Each client is closed when its loop ends: a small async generator, started in that
        loop, holds it, and ``asyncio.run`` (like any runner) closes the async generators of a
        loop before closing the loop. Without that, a script calling ``asyncio.run(guard.
        amoderate(...))`` again and again would leave one client's sockets per run to the
        garbage collector.
        """
        loop = asyncio.get_running_loop()
        key = id(loop)
        with self._async_lock:
            entry = self._async_clients.get(key)
            if entry is not None and entry[2] is loop:
                return entry[0], entry[1]
            limits = self._httpx.Limits(
                max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
            )
            client = self._httpx.AsyncClient(headers=self._headers, limits=limits)
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

    async def _call_async(self, client: Any, sem: asyncio.Semaphore, request: RemoteRequest) -> Any:
        deadline = self._deadline(request)
        attempt = 0
        while True:
            retry_after = None
            try:
                remaining = deadline - time.monotonic()
                async with asyncio.timeout(max(remaining, 0.0)):
                    async with sem:
                        status, content, retry_after = await self._send_async(client, request, deadline)
                return self._read(request, status, content)
            except TimeoutError:
                error: BackendError = BackendTimeoutError(
                    f"no answer from {self._where} within {self.timeout}s", retryable=False
                )
            except BackendError as exc:
                error = exc
            delay = self.core.retry_delay(attempt, error, retry_after)
            if delay is None or time.monotonic() + delay >= deadline:
                return self._failure(request, error)
            await asyncio.sleep(delay)
            attempt += 1

    async def _send_async(
        self, client: Any, request: RemoteRequest, deadline: float
    ) -> tuple[int, bytes, str | None]:
        httpx = self._httpx
        remaining = max(deadline - time.monotonic(), 0.001)
        timeout = httpx.Timeout(remaining, connect=min(self.connect_timeout, remaining))
        try:
            resp = await client.post(self.base_url + request.path, json=request.body, timeout=timeout)
            return resp.status_code, resp.content, resp.headers.get("retry-after")
        except Exception as exc:  # noqa: BLE001 - translated in one place
            raise self._translate(exc) from exc

    # --------------------------------------------------------------------------- helpers
    def _translate(self, exc: BaseException) -> BaseException:
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


def _group_scores(built: Sequence[Sequence[RemoteRequest]], answers: Sequence[Any]) -> list[ScoreResult]:
    """Per scoring request: its candidates' log-probabilities, or the first failure among them."""
    out, i = [], 0
    for group in built:
        values = answers[i : i + len(group)]
        i += len(group)
        error = next((v for v in values if isinstance(v, BaseException)), None)
        out.append(ScoreResult(error=error) if error is not None else ScoreResult(logprobs=tuple(values)))
    return out


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
