"""No secret reaches a caller through a backend error: credentials in the endpoint URL, the API
key, upstream error bodies (which may echo keys and internal addresses). Upstream bodies are
logged at DEBUG, redacted."""

from __future__ import annotations

import logging
import socket

import pytest

from guardrail import BackendError, Guard
from guardrail.testing import FakeBackend, serve_app

pytest.importorskip("fastapi", reason="the server extra is not installed")

KEY = "sk-verysecretkey1234567890"
USERINFO = "alice:hunter2pass"
SECRETS = ("alice", "hunter2pass", "verysecretkey", "10.0.0.7", "internal-db")
ECHO = (
    f"invalid key {KEY} (Authorization: Bearer {KEY}); upstream http://admin:rootpw@10.0.0.7:9000/internal-db "
    "refused"
)
FAST = {"backoff_s": 0.01, "timeout": 5.0, "max_retries": 0}


def hostile_app(status: int, body: bytes):
    from fastapi import FastAPI
    from fastapi.responses import Response

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> Response:
        return Response(body, status_code=status, media_type="application/json")

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_userinfo(url: str) -> str:
    return url.replace("http://", f"http://{USERINFO}@")


def assert_clean(text: str) -> None:
    for word in SECRETS:
        assert word not in text, f"{word!r} leaked: {text}"


@pytest.mark.parametrize(
    ("status", "body", "expect"),
    [
        (401, b'{"error": {"message": "%s"}}' % ECHO.encode(), "HTTP 401 Unauthorized"),
        (404, b'{"detail": "%s"}' % ECHO.encode(), "HTTP 404 Not Found"),
        (500, ECHO.encode(), "HTTP 500 Internal Server Error"),
        (200, b"<html>" + ECHO.encode(), "malformed response"),
    ],
)
def test_upstream_bodies_stay_out_of_verdicts_and_exceptions(status, body, expect, caplog):
    with serve_app(hostile_app(status, body)) as url:
        guard = Guard.from_endpoint(with_userinfo(url) + "/v1", "guard", api_key=KEY, **FAST)
        raising = Guard.from_endpoint(
            with_userinfo(url) + "/v1", "guard", api_key=KEY, on_error="raise", **FAST
        )
        try:
            with caplog.at_level(logging.DEBUG, logger="guardrail"):
                verdict = guard.moderate(prompt="x")
            assert verdict.decided_by == "policy" and not verdict.allowed and expect in verdict.error
            assert_clean(verdict.error)
            with pytest.raises(BackendError) as info:
                raising.moderate(prompt="x")
            assert expect in str(info.value)
            assert_clean(str(info.value))
        finally:
            guard.close()
            raising.close()
    debug = "\n".join(r.getMessage() for r in caplog.records if r.name == "guardrail.remote")
    assert "internal-db" in debug  # the body is there for whoever turns DEBUG on...
    for word in ("verysecretkey", "rootpw"):  # ...without the secrets it carried
        assert word not in debug
    assert_clean("\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO))


def test_connection_errors_show_the_endpoint_without_credentials():
    port = free_port()
    url = f"http://{USERINFO}@127.0.0.1:{port}/v1?api_key=querysecret"
    guard = Guard.from_endpoint(url, "guard", api_key=KEY, **FAST)
    try:
        verdict = guard.moderate(prompt="x")
    finally:
        guard.close()
    assert verdict.decided_by == "policy" and f"http://127.0.0.1:{port}/v1" in verdict.error
    assert_clean(verdict.error)
    assert "querysecret" not in verdict.error


def test_timeouts_show_the_endpoint_without_credentials():
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def slow() -> dict:
        import asyncio

        await asyncio.sleep(3)
        return {}

    with serve_app(app) as url:
        guard = Guard.from_endpoint(
            with_userinfo(url) + "/v1", "guard", api_key=KEY, **{**FAST, "timeout": 0.5}
        )
        try:
            verdict = guard.moderate(prompt="x")
        finally:
            guard.close()
    assert verdict.decided_by == "policy" and url.split("//")[1] in verdict.error
    assert_clean(verdict.error)


def test_bad_base_url_error_hides_credentials():
    from guardrail import ConfigurationError
    from guardrail.backends.remote import RemoteBackend

    with pytest.raises(ConfigurationError) as info:
        RemoteBackend(f"ftp://{USERINFO}@host/v1", "guard")
    assert_clean(str(info.value))


def test_any_backend_error_text_is_redacted_in_the_verdict():
    """A backend that puts secrets in its own error (a new backend, a third-party exception):
    the verdict's error is still redacted on the way out."""
    leaky = BackendError(f"cannot reach http://{USERINFO}@10.1.1.1/v1 with Authorization: Bearer {KEY}")
    verdict = Guard(FakeBackend([leaky])).moderate(prompt="x")
    assert verdict.decided_by == "policy" and "http://***@10.1.1.1/v1" in verdict.error
    assert_clean(verdict.error)
