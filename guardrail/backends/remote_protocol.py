"""The remote backend's wire protocol (OpenAI-compatible endpoints), without I/O.

:class:`RemoteCore` builds the request bodies (chat or completions, generation or fast-mode
scoring) and reads the answers: a :class:`~guardrail.backends.base.Generation` (the text cut
where the model's own answer ends), a candidate's log-probability from the prompt
log-probabilities, or a typed error. The HTTP shells of :mod:`guardrail.backends.remote` send
what it builds. What is sent and why: ``docs/backends/remote.md``.
"""

from __future__ import annotations

import base64
import http
import io
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from guardrail._redact import redact
from guardrail.backends.base import Generation, GenerationOptions, ScoreRequest, ScoreResult
from guardrail.errors import BackendError, BackendUnavailableError, ConfigurationError, UnsupportedError
from guardrail.profiles.base import RenderedPrompt

__all__ = ["RemoteCore", "RemoteRequest", "escape_special", "group_scores", "image_data_url"]

_SPECIAL = re.compile(r"<(\|[^|<>\s]{1,64}\|)>")
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
log = logging.getLogger("guardrail.remote")


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
    """Everything the remote backend decides about requests and answers, without I/O.

    ``mode``: ``"chat"`` (``/chat/completions`` with the profile's messages), ``"completions"``
    (``/completions`` with the raw prompt) or ``"auto"`` (chat for profiles with messages).
    ``escape_special_tokens``: send every ``<|...|>`` of user content with a zero-width space
    after ``<``, so the server's tokenizer cannot read it as a special token.
    """

    model: str
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    escape_special_tokens: bool = True
    mode: str = "auto"  # "auto" | "chat" | "completions"

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "chat", "completions"):
            raise ConfigurationError(f"mode must be auto, chat or completions; got {self.mode!r}")

    # ---------------------------------------------------------------------------- requests
    def build(self, prompt: RenderedPrompt, options: GenerationOptions) -> RemoteRequest:
        """The request generating ``prompt``'s output. With ``options.answer_end`` no stop
        string is sent (a ``</result>`` quoted inside ``<think>`` would stop the server): the
        answer is cut where the model's own answer ends instead (:meth:`interpret`)."""
        body: dict[str, Any] = {"model": self.model, "max_tokens": options.max_new_tokens}
        if options.greedy:
            body.update(temperature=0.0, top_p=1.0)
        else:
            body.update(temperature=options.temperature, top_p=options.top_p)
        if options.seed is not None:
            body["seed"] = options.seed
        if options.stop and options.answer_end is None:
            body["stop"] = list(options.stop)
        if self._chat(prompt):
            body["messages"] = self._messages(prompt)
            path = "/chat/completions"
        else:
            body["prompt"] = self._raw_text(prompt)
            path = "/completions"
        body.update(self.extra_body)
        answer_end = _for_prompt(options.answer_end, prompt) if options.answer_end is not None else None
        return RemoteRequest(path, body, timeout_s=options.timeout_s, answer_end=answer_end)

    def build_score(self, request: ScoreRequest) -> list[RemoteRequest]:
        """One request per candidate continuation, all with the prompt, the forced answer and
        the candidate as the prompt (``max_tokens=1``), asking for prompt log-probabilities:
        chat, a final assistant message continued (vLLM's ``prompt_logprobs``); completions,
        ``echo`` + ``logprobs`` (OpenAI's legacy format)."""
        out = []
        prompt = request.prompt
        for continuation in request.continuations:
            answer = request.prefix + continuation
            body: dict[str, Any] = {"model": self.model, "max_tokens": 1, "temperature": 0.0, "top_p": 1.0}
            if self._chat(prompt):
                body["messages"] = [*self._messages(prompt), {"role": "assistant", "content": answer}]
                body.update(add_generation_prompt=False, continue_final_message=True, prompt_logprobs=0)
                path = "/chat/completions"
            else:
                body.update(prompt=self._raw_text(prompt) + answer, echo=True, logprobs=1)
                path = "/completions"
            body.update(self.extra_body)
            out.append(RemoteRequest(path, body, scored=continuation))
        return out

    def _chat(self, prompt: RenderedPrompt) -> bool:
        """Whether ``prompt`` goes to ``/chat/completions`` (else ``/completions``)."""
        if self.mode == "chat" or (self.mode == "auto" and prompt.messages is not None):
            if prompt.messages is None:
                raise ConfigurationError("this profile has no chat messages; use mode='completions'")
            return True
        return False

    def _raw_text(self, prompt: RenderedPrompt) -> str:
        if prompt.images or prompt.videos or prompt.audios:
            raise ConfigurationError(
                "images, video and audio need a chat profile (the completions API takes text only)"
            )
        # Text parts can hold forged tokens (a user's typed <|eot|>); the template's own special
        # tokens (Llama Guard's raw prompt has them) are sent as they are.
        escape = escape_special if self.escape_special_tokens else str
        return "".join(escape(p) if isinstance(p, str) else p.token for p in prompt.parts)  # type: ignore[union-attr]

    def _messages(self, prompt: RenderedPrompt) -> list[dict[str, Any]]:
        return [self._message(m, prompt) for m in prompt.messages or ()]

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
            elif part["type"] in ("video", "audio"):
                parts.append(_media_part(part["type"], prompt, part["index"]))
            else:
                text = part["text"]
                if self.escape_special_tokens and message["role"] != "system":
                    text = escape_special(text)
                parts.append({"type": "text", "text": text})
        return {"role": message["role"], "content": parts}

    # --------------------------------------------------------------------------- responses
    def read(self, request: RemoteRequest, status: int, content: bytes) -> Any:
        """The answer to ``request``: a Generation, or a candidate's log-probability for a
        scoring request; raises a typed error (``retryable`` for 429, 5xx...)."""
        if request.scored is not None:
            return self.interpret_score(status, content, request)
        return self.interpret(
            status, content, request.path == "/chat/completions", request.body.get("stop", ()),
            request.answer_end,
        )  # fmt: skip

    @staticmethod
    def failure(request: RemoteRequest, error: BackendError) -> Any:
        """What a request that failed for good gives: an error Generation, or for a scoring
        request the error itself (see :func:`group_scores`)."""
        if request.scored is not None:
            return error
        return Generation(text="", finish_reason="error", error=error)

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
        """Read one HTTP response into a Generation, or raise a typed error.

        A stop string the server left out of the text (OpenAI-style servers do) is put back
        when the server names it (vLLM's ``stop_reason``). With ``answer_end`` the text is cut
        where the model's own answer ends, and an answer complete before the server ran into
        ``max_tokens`` counts as finished."""
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


def group_scores(built: Sequence[Sequence[RemoteRequest]], answers: Sequence[Any]) -> list[ScoreResult]:
    """Per scoring request: its candidates' log-probabilities, or the first failure among them."""
    out, i = [], 0
    for group in built:
        values = answers[i : i + len(group)]
        i += len(group)
        error = next((v for v in values if isinstance(v, BaseException)), None)
        out.append(ScoreResult(error=error) if error is not None else ScoreResult(logprobs=tuple(values)))
    return out


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


def _media_part(kind: str, prompt: RenderedPrompt, index: int) -> dict[str, Any]:
    """vLLM's OpenAI-compatible parts: ``video_url`` (the sampled frames as an MP4 data URL) and
    ``input_audio`` (the 16 kHz samples as a base64 WAV); see :mod:`guardrail.media.encode`."""
    from guardrail.media.encode import audio_wav, video_data_url

    if kind == "video":
        return {"type": "video_url", "video_url": {"url": video_data_url(prompt.videos[index])}}
    data = base64.b64encode(audio_wav(prompt.audios[index])).decode("ascii")
    return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
