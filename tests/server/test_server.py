"""The moderation server on 127.0.0.1: the real OpenAI client, plain HTTP, faults, metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from guardrail import Guard
from guardrail.server import ServerSettings, create_app
from guardrail.server.schemas import OPENAI_CATEGORIES, REQUEST_HARMFUL
from guardrail.testing import FakeBackend, result_output, serve_app
from tests.conftest import make_image

PNG = make_image()
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def scripted_guard(delay: float = 0.0, **options) -> Guard:
    def respond(prompt):
        if delay:
            time.sleep(delay)
        text = prompt.text
        return result_output("harmful" if "bomb" in text else "unharmful")

    return Guard(FakeBackend(respond=respond), **options)


@pytest.fixture
def fake_server():
    with serve_app(create_app(scripted_guard(), ServerSettings(api_key="k"))) as url:
        yield url


def client(url: str, key: str = "k") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


# ------------------------------------------------------------------ OpenAI client, real model
@pytest.mark.slow
def test_openai_client_against_the_tiny_model(vl_backend):
    guard = Guard(vl_backend, max_new_tokens=8)
    with serve_app(create_app(guard)) as url:
        c = client(url, key="unused")
        one = c.moderations.create(input="How do I bake bread?", model="ignored")
        assert one.id.startswith("modr-") and one.model == Path(vl_backend.model_name).name  # never the path
        assert len(one.results) == 1
        many = c.moderations.create(input=["first text", "second text", "third"])
        assert len(many.results) == 3
        multimodal = c.moderations.create(
            input=[
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": DATA_URL}},
            ]
        )
        assert len(multimodal.results) == 1
        result = multimodal.results[0].model_dump(by_alias=True)
        # same verdict as the guard in-process for the same input
        direct = guard.moderate(prompt="What is this?", images=[PNG])
        assert result["flagged"] == (not direct.allowed)
        assert result["guardrail"]["decided_by"] == direct.decided_by
        for key in OPENAI_CATEGORIES:
            assert result["categories"][key] is False and result["category_scores"][key] == 0.0
        assert result["category_applied_input_types"][REQUEST_HARMFUL] == ["text", "image"]
        # native endpoint: the same verdict as in-process, raw output included
        r = httpx.post(url + "/v1/guard", json={"prompt": "What is this?", "images": [DATA_URL]}, timeout=60)
        assert r.status_code == 200
        assert r.json()["raw_output"] == direct.raw_output


def test_flagged_follows_the_verdict(fake_server):
    c = client(fake_server)
    res = c.moderations.create(input=["how to build a bomb", "how to bake bread"]).results
    assert [r.flagged for r in res] == [True, False]
    dumped = [r.model_dump(by_alias=True) for r in res]
    assert [d["categories"][REQUEST_HARMFUL] for d in dumped] == [True, False]
    assert [d["category_scores"][REQUEST_HARMFUL] for d in dumped] == [1.0, 0.0]
    assert dumped[0]["guardrail"]["reasoning"] == "scripted"
    r = httpx.post(fake_server + "/v1/guard", json={"prompt": "x", "response": "a bomb recipe"},
                   headers={"Authorization": "Bearer k"})  # fmt: skip
    assert r.status_code == 200 and r.json()["allowed"] is False and r.json()["decided_by"] == "model"


def test_policy_blocks_are_flagged():
    guard = Guard(FakeBackend(["no verdict here"]))
    with serve_app(create_app(guard)) as url:
        res = client(url).moderations.create(input="anything").results[0].model_dump(by_alias=True)
    assert res["flagged"] is True and res["guardrail"]["decided_by"] == "policy"
    assert "unparsable" in res["guardrail"]["error"]


def test_an_app_served_again_after_a_shutdown_is_ready():
    app = create_app(scripted_guard())
    with serve_app(app) as url:
        assert client(url).moderations.create(input="bake bread").results[0].flagged is False
    with serve_app(app) as url:  # shutdown marked it not ready; a new start makes it ready again
        assert httpx.get(url + "/readyz").json()["status"] == "ready"
        assert client(url).moderations.create(input="bake bread").results[0].flagged is False


# --------------------------------------------------------------------------------- auth
def test_api_key_is_required(fake_server):
    with pytest.raises(openai.AuthenticationError):
        client(fake_server, key="wrong").moderations.create(input="x")
    r = httpx.post(fake_server + "/v1/moderations", json={"input": "x"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(fake_server + "/healthz").status_code == 200  # probes stay open
    assert httpx.get(fake_server + "/readyz").json()["status"] == "ready"
    assert httpx.get(fake_server + "/metrics").status_code == 401


# ---------------------------------------------------------------------------- bad input
AUTH = {"Authorization": "Bearer k"}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (
            {"input": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]},
            400,
            "base64",
        ),
        (
            {"input": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            400,
            "image",
        ),
        (
            {"input": [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/x.png"}}]},
            400,
            "does not fetch",
        ),
        ({"input": []}, 400, "input must hold"),
        ({"input": ["x"] * 65}, 400, "input must hold"),
        ({"input": "   "}, 400, "empty"),
        ({"input": 42}, 422, "input"),
        ({"inputs": "typo"}, 422, "input"),
        ({"input": [{"type": "audio", "data": "x"}]}, 422, "input"),
    ],
)
def test_bad_input_gets_a_clear_4xx(fake_server, body, status, fragment):
    r = httpx.post(fake_server + "/v1/moderations", json=body, headers=AUTH)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]["message"]


def test_malformed_json_and_guard_body_errors(fake_server):
    r = httpx.post(
        fake_server + "/v1/moderations",
        content=b'{"input": ',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "invalid request body" in r.json()["error"]["message"]
    r = httpx.post(fake_server + "/v1/guard", json={"prompt": 3}, headers=AUTH)
    assert r.status_code == 422
    r = httpx.post(fake_server + "/v1/guard", json={}, headers=AUTH)
    assert r.status_code == 400 and "nothing to moderate" in r.json()["error"]["message"]


def test_body_size_limit():
    settings = ServerSettings(max_body_bytes=4096)
    with serve_app(create_app(scripted_guard(), settings)) as url:
        big = {"input": "x" * 10_000}
        r = httpx.post(url + "/v1/moderations", json=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

        def chunks():  # no Content-Length: counted while streaming
            yield b'{"input": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        r = httpx.post(
            url + "/v1/moderations", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413
        assert httpx.post(url + "/v1/moderations", json={"input": "small"}).status_code == 200


# ------------------------------------------------------------------ load, timeouts, loop
def test_overload_answers_503_with_retry_after():
    settings = ServerSettings(max_concurrency=1, max_queue=1, retry_after_s=2)
    with serve_app(create_app(scripted_guard(delay=0.5), settings)) as url:

        async def burst():
            async with httpx.AsyncClient(timeout=30) as c:
                return await asyncio.gather(
                    *(c.post(url + "/v1/moderations", json={"input": f"t{i}"}) for i in range(6))
                )

        responses = asyncio.run(burst())
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 2 and 503 in codes
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "2" and rejected.json()["error"]["code"] == "overloaded"


def test_timeout_follows_the_guard_policy():
    with serve_app(create_app(scripted_guard(delay=2.0), ServerSettings(request_timeout_s=0.3))) as url:
        t0 = time.monotonic()
        r = httpx.post(url + "/v1/guard", json={"prompt": "x"}, timeout=30)
        assert time.monotonic() - t0 < 1.5
        assert (
            r.status_code == 200 and r.json()["decided_by"] == "policy" and "timed out" in r.json()["error"]
        )
    guard = scripted_guard(delay=2.0, on_error="raise")
    with serve_app(create_app(guard, ServerSettings(request_timeout_s=0.3))) as url:
        assert httpx.post(url + "/v1/guard", json={"prompt": "x"}, timeout=30).status_code == 504


def test_model_calls_do_not_block_the_event_loop():
    with serve_app(create_app(scripted_guard(delay=1.5))) as url:
        slow = threading.Thread(
            target=lambda: httpx.post(url + "/v1/guard", json={"prompt": "x"}, timeout=30)
        )
        slow.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        assert httpx.get(url + "/healthz").status_code == 200
        assert time.monotonic() - t0 < 0.5
        slow.join()


# ------------------------------------------------------------------------ metrics, openapi
def test_metrics_are_prometheus_text(fake_server):
    c = client(fake_server)
    c.moderations.create(input=["bomb", "bread"])
    httpx.post(fake_server + "/v1/moderations", json={"input": 1}, headers=AUTH)
    text = httpx.get(fake_server + "/metrics", headers=AUTH).text
    assert 'guardrail_requests_total{endpoint="/v1/moderations",status="200"} 1.0' in text
    assert 'guardrail_requests_total{endpoint="/v1/moderations",status="422"} 1.0' in text
    assert 'guardrail_verdicts_total{decided_by="model",decision="blocked"} 1.0' in text
    assert 'guardrail_verdicts_total{decided_by="model",decision="allowed"} 1.0' in text
    assert 'guardrail_errors_total{kind="invalid_request"} 1.0' in text
    assert "guardrail_request_latency_seconds_bucket" in text
    assert "guardrail_queue_depth 0.0" in text


def test_openapi_schema(fake_server):
    assert httpx.get(fake_server + "/openapi.json").status_code == 401  # the key guards the docs too
    schema = httpx.get(fake_server + "/openapi.json", headers=AUTH).json()
    assert set(schema["paths"]) >= {"/v1/moderations", "/v1/guard", "/healthz", "/readyz", "/metrics"}
    comps = schema["components"]["schemas"]
    assert {"ModerationRequest", "ModerationResponse", "Verdict", "GuardRequest"} <= set(comps)
    assert "results" in comps["ModerationResponse"]["required"]
    ok = json.loads(httpx.post(fake_server + "/v1/moderations", json={"input": "x"}, headers=AUTH).text)
    # every key the schema requires is present in a real response
    for key in comps["ModerationResponse"]["required"]:
        assert key in ok
    for key in comps["ModerationResult"]["required"]:
        assert key in ok["results"][0]
