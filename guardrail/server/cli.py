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
        "--api-key", default=os.environ.get("GUARDRAIL_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $GUARDRAIL_API_KEY)",
    )  # fmt: skip
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
    s.add_argument("--log-level", default="info", help="uvicorn log level")
    return _run_serve


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run_serve(args: argparse.Namespace) -> int:
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
    )
    guard = guard_from_args(args)
    app = create_app(guard, settings)
    try:
        uvicorn.run(
            app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=30
        )
    finally:
        guard.close()
    return 0
