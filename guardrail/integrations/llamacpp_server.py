"""Run llama-cpp-python's OpenAI-compatible server with the reference GuardReasoner-VL prompt.

llama-cpp-python's ``qwen2.5-vl`` chat handler renders its template with Jinja's default of
dropping the template's final newline, so its prompts end with ``<|im_start|>assistant``
instead of ``<|im_start|>assistant\\n``: not the prompt GuardReasoner-VL was trained on (the
guard's local backends and vLLM/SGLang render the newline). This launcher restores that one
character, then runs the stock server with the same arguments::

    python -m guardrail.integrations.llamacpp_server --model guard-q8_0.gguf \\
        --clip_model_path mmproj-guard-f16.gguf --chat_format qwen2.5-vl --n_ctx 8192 --port 8080

Needs ``pip install "llama-cpp-python[server]"``. The test suite starts it on 127.0.0.1 with the
tiny test guard and checks that the remote backend's outputs equal the local llama.cpp
backend's for the same inputs.

**Prefix reuse** (``--prefix_cache true``, the default; ``false`` for the stock behaviour).
llama-cpp-python's multimodal chat handlers clear the context on every request and evaluate the
whole prompt again, and the server's own ``--cache`` (a ``LlamaRAMCache`` of saved states) does
not help them: it is consulted after the handler has already evaluated the prompt. Every guard
request starts with the same instruction, so the launcher keeps the context between requests
(:func:`patch_prefix_reuse`): the tokens of a request's first text chunk that equal the start of
what the context holds are not evaluated again; the rest is, from the first differing token
(images and everything after the first image are always evaluated). One line per request on
standard error says how many prompt tokens were reused (``guardrail prefix reuse: ...``).
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from guardrail._deps import require

__all__ = ["main", "patch_prefix_reuse", "patch_qwen25vl_template"]

_NEWLINE = "{{ '\\n' }}"


def patch_qwen25vl_template() -> None:
    """Make the qwen2.5-vl handler's template end with a newline after the assistant cue."""
    fmt = require("llama_cpp.llama_chat_format", extra="llamacpp", package="llama-cpp-python")
    handler = fmt.Qwen25VLChatHandler
    template = handler.CHAT_FORMAT
    if template.endswith(_NEWLINE):
        return
    if not template.endswith("<|im_start|>assistant\n"):
        raise RuntimeError(
            "llama-cpp-python's qwen2.5-vl template changed; check that it renders "
            "'<|im_start|>assistant\\n' before using it for a guard"
        )
    handler.CHAT_FORMAT = template[:-1] + _NEWLINE


class _Reuse:
    """What one chat request reuses: ``keep`` positions of the context known to hold text tokens
    (``ids``, a copy of them, taken before the handler zeroes ``input_ids``)."""

    def __init__(self, llama: Any) -> None:
        bound = getattr(llama, "_guardrail_text_until", 0)  # first image position of the last request
        self.keep = max(0, min(bound, llama.n_tokens))
        self.ids = llama.input_ids[: self.keep].copy()
        self.first = True  # the request's first evaluation (text or image) not yet seen
        self.image_at: int | None = None
        self.reused = 0
        self.evaluated = 0  # prompt tokens (and image tokens) evaluated
        self.generating = False


def _common_prefix(a: Any, b: list[int]) -> int:
    n = 0
    for x, y in zip(a.tolist(), b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _reusing(original: Any) -> Any:
    """Wrap a chat handler's ``__call__`` so that it keeps the context's common prefix."""

    @functools.wraps(original)
    def __call__(self: Any, **kwargs: Any) -> Any:
        llama = kwargs["llama"]
        if getattr(llama, "_is_recurrent", False) or getattr(llama, "_is_hybrid", False):
            return original(self, **kwargs)  # a recurrent state cannot be cut back to a prefix
        ctx, run = llama._ctx, _Reuse(llama)
        real_clear, real_eval = ctx.kv_cache_clear, llama.eval
        real_mtmd = self._mtmd_cpp

        def reset() -> None:  # the handler's reset: the position goes back, the context stays
            llama.n_tokens = 0
            llama._requires_eval = True

        def first_eval(tokens: list[int]) -> list[int]:
            run.first = False
            n = min(_common_prefix(run.ids, tokens), len(tokens) - 1)  # >= 1 token left: fresh logits
            if n > 0 and ctx.kv_cache_seq_rm(-1, n, -1):
                llama.input_ids[:n] = run.ids[:n]  # the handler zeroed them
                llama.n_tokens = n
                run.reused = n
                return tokens[n:]
            real_clear()
            llama.n_tokens = 0
            return tokens

        def eval_(tokens: Any) -> None:
            tokens = list(tokens)
            if run.first:
                tokens = first_eval(tokens)
            if not run.generating:
                run.evaluated += len(tokens)
            real_eval(tokens)

        real_complete = llama.create_completion

        def create_completion(*args: Any, **kw: Any) -> Any:  # the prompt is in: now it generates
            run.generating = True
            return real_complete(*args, **kw)

        class Mtmd:  # the handler's mtmd module, noting where images go
            def __getattr__(self, name: str) -> Any:
                return getattr(real_mtmd, name)

            @staticmethod
            def mtmd_helper_eval_chunk_single(
                mctx: Any, lctx: Any, chunk: Any, n_past: Any, *args: Any
            ) -> Any:
                if run.first:  # the prompt starts with an image: nothing is reused
                    run.first = False
                    real_clear()
                if run.image_at is None:
                    run.image_at = llama.n_tokens
                run.evaluated += int(real_mtmd.mtmd_input_chunk_get_n_tokens(chunk))
                return real_mtmd.mtmd_helper_eval_chunk_single(mctx, lctx, chunk, n_past, *args)

        llama.reset, ctx.kv_cache_clear, llama.eval, self._mtmd_cpp = reset, lambda: None, eval_, Mtmd()
        llama.create_completion = create_completion
        llama._guardrail_text_until = 0  # while the request runs the context is in flux
        try:
            result = original(self, **kwargs)
        finally:
            del llama.reset, llama.eval, llama.create_completion, ctx.kv_cache_clear  # the class's methods
            self._mtmd_cpp = real_mtmd
        # text up to the first image (everything, generated tokens included, when there is none)
        llama._guardrail_text_until = run.image_at if run.image_at is not None else sys.maxsize
        print(
            f"guardrail prefix reuse: {run.reused} prompt tokens reused, {run.evaluated} evaluated",
            file=sys.stderr,
            flush=True,
        )
        return result

    __call__._guardrail_prefix_reuse = True  # type: ignore[attr-defined]
    return __call__


def patch_prefix_reuse() -> None:
    """Make the qwen2.5-vl chat handler reuse the context's common prefix (module docstring)."""
    fmt = require("llama_cpp.llama_chat_format", extra="llamacpp", package="llama-cpp-python")
    handler = fmt.Qwen25VLChatHandler
    if not getattr(handler.__call__, "_guardrail_prefix_reuse", False):
        handler.__call__ = _reusing(handler.__call__)


def _take_prefix_cache_option(argv: list[str]) -> bool:
    """Remove ``--prefix_cache true|false`` (ours) from ``argv``; its value (default true)."""
    value = "true"
    for i, arg in enumerate(argv):
        if arg == "--prefix_cache" and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i : i + 2]
            break
        if arg.startswith("--prefix_cache="):
            value = arg.split("=", 1)[1]
            del argv[i]
            break
    if value.lower() not in ("true", "false", "1", "0"):
        raise SystemExit(f"--prefix_cache: expected true or false, got {value!r}")
    return value.lower() in ("true", "1")


def main() -> None:
    patch_qwen25vl_template()
    if _take_prefix_cache_option(sys.argv):
        patch_prefix_reuse()
    server = require("llama_cpp.server.__main__", extra="llamacpp", package="llama-cpp-python[server]")
    server.main()


if __name__ == "__main__":
    main()
