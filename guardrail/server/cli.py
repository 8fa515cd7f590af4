"""``python -m guardrail serve``: run the moderation server with uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from guardrail.cli import EXIT_ERROR, Handler, add_backend_arguments, guard_from_args

__all__ = ["add_serve"]


def add_serve(parser: argparse.ArgumentParser) -> Handler:
    """Serve a guard over HTTP (OpenAI-compatible /v1/moderations, /v1/guard, /metrics)."""
    parser.description = "Serve a guard over HTTP: OpenAI-compatible /v1/moderations, /v1/guard, /metrics."
    add_backend_arguments(parser)
    s = parser.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    s.add_argument(
        "--api-key", default=None,
        help="require 'Authorization: Bearer KEY'; visible to other users in the process list, so "
        "prefer $GUARDRAIL_API_KEY or --api-key-file",
    )  # fmt: skip
    s.add_argument("--api-key-file", default=None, help="read the API key from this file (first line)")
    s.add_argument(
        "--insecure-no-auth", action="store_true",
        help="allow binding a non-loopback address without an API key",
    )  # fmt: skip
    s.add_argument(
        "--max-concurrency", type=int, default=32,
        help="requests checked at once, gathered into backend batches (default: 32)",
    )  # fmt: skip
    s.add_argument("--max-queue", type=int, default=256, help="requests allowed to wait (default: 256)")
    s.add_argument("--timeout", type=float, default=300.0, help="per-request guard timeout in seconds")
    s.add_argument("--max-body-mb", type=float, default=32.0, help="request body limit in MiB (default: 32)")
    s.add_argument(
        "--body-timeout", type=float, default=30.0,
        help="seconds a client has to send its whole request body (default: 30; then 408)",
    )  # fmt: skip
    s.add_argument(
        "--max-connections", type=int, default=256,
        help="open connections at most; more are answered 503 by uvicorn (default: 256)",
    )  # fmt: skip
    s.add_argument(
        "--served-model-name", default=None,
        help="model name shown in responses (default: the model's name, never its local path)",
    )  # fmt: skip
    s.add_argument(
        "--allow-remote-images", action="store_true",
        help="fetch http(s) image URLs sent by clients (public addresses only; off by default)",
    )  # fmt: skip
    s.add_argument(
        "--remote-allowed-network", action="append", default=[], metavar="CIDR",
        help="also let image fetches reach this non-public network (repeatable; e.g. an internal image store)",
    )  # fmt: skip
    s.add_argument("--log-level", default="info", help="uvicorn log level")
    return _run_serve


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key_file:
        with open(args.api_key_file, encoding="utf-8") as fh:
            return fh.readline().strip() or None
    if args.api_key:
        print(
            "warning: --api-key is visible in the process list; use $GUARDRAIL_API_KEY or --api-key-file",
            file=sys.stderr,
        )
        return args.api_key
    return os.environ.get("GUARDRAIL_API_KEY") or None


def _run_serve(args: argparse.Namespace) -> int:
    try:
        args.api_key = _api_key(args)
    except OSError as exc:
        print(f"error: cannot read --api-key-file: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    if not _is_loopback(args.host) and not args.api_key and not args.insecure_no_auth:
        print(
            f"error: refusing to serve on {args.host} without an API key; pass --api-key KEY "
            "(or --insecure-no-auth if something in front of it authenticates)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    from guardrail._deps import require
    from guardrail.server import ServerSettings, create_app

    uvicorn = require("uvicorn", extra="server")
    settings = ServerSettings(
        api_key=args.api_key or None,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        request_timeout_s=args.timeout,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        body_timeout_s=args.body_timeout,
        model_name=args.served_model_name,
        allow_remote_images=args.allow_remote_images,
        remote_allowed_networks=tuple(args.remote_allowed_network),
    )
    guard = guard_from_args(args)
    app = create_app(guard, settings)
    try:
        uvicorn.run(
            app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=30,
            limit_concurrency=args.max_connections, timeout_keep_alive=5,
        )  # fmt: skip
    finally:
        guard.close()
    return 0
