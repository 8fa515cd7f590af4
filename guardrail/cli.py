"""Command line: ``python -m guardrail <command>`` (also installed as ``guardrail``).

Commands are registered in :data:`COMMANDS` (name -> ``"module:function"``); each function
receives the subparser to fill in and returns the handler ``(args) -> exit code``. Modules are
imported only when the command line is built, and heavy libraries only when a command runs.

``check`` exit codes: 0 allowed, 1 blocked, 2 error (bad arguments, bad input, load failure).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["COMMANDS", "main"]

EXIT_ALLOWED, EXIT_BLOCKED, EXIT_ERROR = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]

COMMANDS: dict[str, str] = {
    "check": "guardrail.cli:add_check",
    "serve": "guardrail.server.cli:add_serve",
    "eval": "guardrail.eval.cli:add_eval",
    "export": "guardrail.export.cli:add_export",
    "batch": "guardrail.batch.cli:add_batch",
}


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that loads a guard (check, serve, eval...)."""
    g = parser.add_argument_group("guard model")
    g.add_argument("--model", required=True, help="model directory, GGUF file, hub id, or served model name")
    g.add_argument("--backend", default="transformers", help="backend name (default: transformers)")
    g.add_argument(
        "--profile", default=None, help="guardreasoner-vl | guardreasoner (default: from the model)"
    )
    g.add_argument(
        "--max-new-tokens", type=int, default=None, help="generation budget (default: the profile's)"
    )
    g.add_argument(
        "--base-url", default=None, help="remote: the endpoint's API root, e.g. http://127.0.0.1:8080/v1"
    )
    g.add_argument(
        "--remote-api-key", default=os.environ.get("GUARDRAIL_REMOTE_API_KEY"),
        help="remote: the endpoint's API key (default: $GUARDRAIL_REMOTE_API_KEY)",
    )  # fmt: skip
    g.add_argument("--device", default=None, help="transformers: cuda, cpu, cuda:1 ... (default: auto)")
    g.add_argument(
        "--progress", action="store_true", default=None,
        help="transformers: show the weight-loading progress bar (default: quiet)",
    )  # fmt: skip
    g.add_argument("--dtype", default=None, help="transformers: bfloat16, float16, float32 (default: auto)")
    g.add_argument("--mmproj", default=None, metavar="FILE", help="llamacpp: the vision projector GGUF")
    g.add_argument(
        "--threads", type=int, default=None, help="llamacpp: CPU threads (default: half the cores)"
    )
    g.add_argument("--n-ctx", type=int, default=None, help="llamacpp: context size in tokens (default: 8192)")
    g.add_argument(
        "--on-parse-error", choices=["block", "allow", "raise"], default="block",
        help="verdict for an unparsable model output (default: block)",
    )  # fmt: skip
    g.add_argument(
        "--on-error", choices=["block", "allow", "raise"], default="block",
        help="verdict when the backend fails (default: block)",
    )  # fmt: skip
    g.add_argument(
        "--mode", choices=["reasoning", "fast", "cascade"], default="reasoning",
        help="reasoning (default), fast (label probabilities, no reasoning) or cascade (fast, then "
             "reasoning when the score is uncertain)",
    )  # fmt: skip
    g.add_argument(
        "--threshold", type=float, default=0.5, help="fast/cascade: P(harmful) that blocks (default 0.5)"
    )
    g.add_argument(
        "--cascade-band", type=float, nargs=2, default=(0.2, 0.8), metavar=("LOW", "HIGH"),
        help="cascade: reason when LOW <= score <= HIGH (default 0.2 0.8)",
    )  # fmt: skip
    g.add_argument("--cache-size", type=int, default=0, help="verdict cache entries (default 0: no cache)")
    g.add_argument(
        "--generation-timeout", type=float, default=None, metavar="SECONDS",
        help="bound on the model's generation per call; unfinished outputs follow --on-error",
    )  # fmt: skip


# Backend-specific CLI options -> loader keyword, per backend. Other backends add entries.
BACKEND_OPTIONS: dict[str, dict[str, str]] = {
    "transformers": {"device": "device", "dtype": "dtype", "progress": "progress"},
    "remote": {"base_url": "base_url", "remote_api_key": "api_key"},
    "llamacpp": {"mmproj": "mmproj", "threads": "n_threads", "n_ctx": "n_ctx"},
}


def guard_from_args(args: argparse.Namespace) -> Any:
    """Build the :class:`~guardrail.Guard` that ``add_backend_arguments`` options describe."""
    from guardrail import Guard

    options = {
        kwarg: getattr(args, attr)
        for attr, kwarg in BACKEND_OPTIONS.get(args.backend, {}).items()
        if getattr(args, attr, None) is not None
    }
    speed: dict[str, Any] = {
        "mode": getattr(args, "mode", "reasoning"),
        "threshold": getattr(args, "threshold", 0.5),
        "cascade_band": tuple(getattr(args, "cascade_band", (0.2, 0.8))),
    }
    if getattr(args, "generation_timeout", None) is not None:
        speed["timeout_s"] = args.generation_timeout
    if getattr(args, "cache_size", 0):
        from guardrail.cache import VerdictCache

        speed["cache"] = VerdictCache(max_size=args.cache_size)
    return Guard.from_pretrained(
        args.model,
        backend=args.backend,
        profile=args.profile,
        max_new_tokens=args.max_new_tokens,
        on_parse_error=args.on_parse_error,
        on_error=args.on_error,
        **options,
        **speed,
    )


# ----------------------------------------------------------------------------------- check
def add_check(parser: argparse.ArgumentParser) -> Handler:
    """Moderate one request (and optionally a response)."""
    parser.description = "Moderate one request (and optionally a response) and print the verdict."
    add_backend_arguments(parser)
    parser.add_argument("--prompt", help="the user's request text ('-' reads standard input)")
    parser.add_argument("--response", help="the AI response to check with the request")
    parser.add_argument("--image", action="append", default=[], metavar="FILE", help="an image (repeatable)")
    parser.add_argument(
        "--video", action="append", default=[], metavar="FILE", help="a video clip (repeatable; media extra)"
    )
    parser.add_argument(
        "--audio", action="append", default=[], metavar="FILE", help="an audio clip (repeatable; media extra)"
    )
    parser.add_argument(
        "--messages", metavar="FILE.json",
        help="a conversation (OpenAI chat format, a JSON list of {role, content}); its last turn is checked",
    )  # fmt: skip
    parser.add_argument(
        "--policy", metavar="NAME|FILE.yaml",
        help="the policy: a built-in name (mlcommons, openai-moderation) or a policy file",
    )  # fmt: skip
    parser.add_argument(
        "--json", action="store_true",
        help="print the verdict as JSON (errors too: {\"error\": {\"type\": ..., \"message\": ...}})",
    )  # fmt: skip
    parser.add_argument(
        "--full-reasoning", action="store_true",
        help=f"print the whole reasoning (default: its first {REASONING_LINES} lines; --json has it all)",
    )  # fmt: skip
    return _run_check


#: Lines of reasoning the human output of ``check`` shows (``--full-reasoning``/``--json``: all).
REASONING_LINES = 20
_REASONING_CHARS = 2000


def _read_messages(path: str) -> Any:
    from guardrail.errors import InputError

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise InputError(f"cannot read --messages file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise InputError(f"--messages file {path} is not JSON: {exc}") from None


def _read_policy(spec: str | None) -> Any:
    if spec is None:
        return None
    from guardrail.policies import BUILTIN_POLICIES, Policy, get_policy

    if spec.lower().replace("_", "-") in BUILTIN_POLICIES:
        return get_policy(spec)
    return Policy.from_yaml(spec)


def _run_check(args: argparse.Namespace) -> int:
    from guardrail.errors import GuardrailError

    try:
        return _check(args)
    except GuardrailError as exc:
        if not args.json:
            raise
        print(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}, indent=2))
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _check(args: argparse.Namespace) -> int:
    from guardrail.errors import InputError
    from guardrail.inputs import normalize_input

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    videos, audios = getattr(args, "video", []), getattr(args, "audio", [])
    messages = getattr(args, "messages", None)
    if prompt is None and args.response is None and not (args.image or videos or audios) and messages is None:
        raise InputError("give --prompt, --response, --image, --video, --audio or --messages")
    policy = _read_policy(getattr(args, "policy", None))
    if messages is not None:
        if prompt is not None or args.response is not None or args.image or videos or audios:
            raise InputError("give either --messages or --prompt/--response/--image/--video/--audio")
        conversation = _read_messages(messages)
        from guardrail.conversation import parse_messages

        parse_messages(conversation)  # bad input fails before loading
        guard = guard_from_args(args)
        verdict = guard.moderate(messages=conversation, policy=policy)
    else:
        # bad input fails before loading (clips are decoded again with the guard's profile sampling)
        item = normalize_input(
            prompt, args.response, args.image or None, videos=videos or None, audios=audios or None
        )
        guard = guard_from_args(args)
        verdict = guard.moderate(
            prompt=item.prompt, response=item.response, images=list(item.images) or None,
            videos=videos or None, audios=audios or None, policy=policy,
        )  # fmt: skip
    if args.json:
        print(verdict.model_dump_json(indent=2))
    else:
        print(
            format_verdict(verdict, full_reasoning=args.full_reasoning, max_new_tokens=guard.max_new_tokens)
        )
    return EXIT_ALLOWED if verdict.allowed else EXIT_BLOCKED


def format_verdict(verdict: Any, *, full_reasoning: bool = True, max_new_tokens: int | None = None) -> str:
    """The human-readable verdict of ``check``: labels, who decided, the error, a note when the
    output hit ``max_new_tokens``, and the reasoning (cut to :data:`REASONING_LINES` lines unless
    ``full_reasoning``)."""

    def label(value: bool | None, yes: str, no: str) -> str:
        return "-" if value is None else (yes if value else no)

    lines = [
        ("ALLOWED" if verdict.allowed else "BLOCKED")
        + f"  request: {label(verdict.request_harmful, 'harmful', 'unharmful')}"
        + f"  response: {label(verdict.response_harmful, 'harmful', 'unharmful')}"
        + (
            f"  refusal: {label(verdict.response_refusal, 'yes', 'no')}"
            if verdict.response_refusal is not None
            else ""
        ),
        f"decided by: {verdict.decided_by}{f' ({verdict.path})' if verdict.path else ''}   "
        + (f"score: {verdict.score:.3f}   " if verdict.score is not None else "")
        + f"latency: {verdict.latency_ms:.0f} ms   "
        f"output tokens: {verdict.output_tokens if verdict.output_tokens is not None else '-'}   "
        f"model: {verdict.model}",
    ]
    if verdict.categories:
        lines.append(
            "categories: " + ", ".join(verdict.categories)
            + (" (flagged, allowed by the policy)" if verdict.flagged else "")
        )  # fmt: skip
    if verdict.error:
        lines.append(f"error: {verdict.error}")
    if max_new_tokens and verdict.output_tokens is not None and verdict.output_tokens >= max_new_tokens:
        lines.append(
            f"note: the guard model stopped at the cap of {max_new_tokens} new tokens before finishing "
            "its answer (a small or broken model, or a cap too low): the failure policy decided; "
            "set the cap with --max-new-tokens"
        )
    contradiction = getattr(verdict, "contradiction", None)
    if contradiction:
        lines.append(f"note: {contradiction} (the result decides)")
    if verdict.reasoning:
        lines.append("reasoning:")
        lines.extend("  " + line for line in _reasoning_lines(verdict.reasoning, full_reasoning))
    return "\n".join(lines)


def _reasoning_lines(reasoning: str, full: bool) -> list[str]:
    """The reasoning's lines, at most :data:`REASONING_LINES` and ``_REASONING_CHARS``
    characters of them unless ``full``, with a last line saying what was left out."""
    lines = reasoning.splitlines()
    if full:
        return lines
    shown: list[str] = []
    size = 0
    for line in lines[:REASONING_LINES]:
        room = _REASONING_CHARS - size
        if len(line) > room:
            shown.append(line[:room] + " ...")
            size += room
            break
        shown.append(line)
        size += len(line)
    hidden = sum(len(line) for line in lines) - size
    if hidden > 0:
        shown.append(f"[{hidden} more characters of reasoning: --full-reasoning or --json show it all]")
    return shown


# ------------------------------------------------------------------------------------ main
def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = argparse.ArgumentParser(prog="python -m guardrail", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    handlers: dict[str, Handler] = {}
    for name, target in COMMANDS.items():
        module_name, _, func = target.partition(":")
        add = getattr(importlib.import_module(module_name), func)
        handlers[name] = add(sub.add_parser(name, help=(add.__doc__ or "").strip().split("\n")[0]))
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    # Model-loading progress bars are noise on a command line that prints one verdict.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    return run_handler(handlers[args.command], args)


def run_handler(handler: Handler, args: argparse.Namespace, *, interrupted: str | None = None) -> int:
    """Run a command's handler: a guardrail error prints one ``error:`` line and exits 2, Ctrl-C
    exits 130 (after ``interrupted``, when given). Every ``python -m guardrail...`` uses this."""
    from guardrail.errors import GuardrailError

    try:
        return handler(args)
    except GuardrailError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        if interrupted:
            print(interrupted, file=sys.stderr)
        return 130
