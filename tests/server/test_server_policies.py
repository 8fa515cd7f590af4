"""The server with conversations and policies: /v1/guard messages + policy, /v1/moderations
categories through the OpenAI mapping (issue 18). A real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest

from guardrail import Category, Guard, Policy
from guardrail.profiles import GuardReasonerVLProfile
from guardrail.server import ServerSettings, create_app
from guardrail.server.schemas import OPENAI_CATEGORIES, REQUEST_HARMFUL
from guardrail.testing import FakeBackend, serve_app
from tests.conftest import make_image

POLICY = Policy(
    [
        Category("violence", "Violence", "Physical harm.", maps_to=("violence",)),
        Category("dosing", "Medical dosing", "Exact drug doses.", action="flag"),
        Category("S9", "Indiscriminate Weapons", "Bombs and the like.", maps_to=("illicit/violent",)),
    ],
    name="shop",
)


def answer(request: str, categories: list[str]) -> str:
    return GuardReasonerVLProfile(trained_policy=POLICY).answer("scripted", {"request": request}, categories)


def respond(prompt) -> str:
    text = prompt.text.split("Human user:", 1)[1]  # the user's part, not the policy in the system turn
    if "bomb" in text:
        return answer("harmful", ["S9"])
    if "dose" in text:
        return answer("harmful", ["dosing"])
    if "gamble" in text:
        return answer("harmful", ["gambling"])
    return answer("unharmful", [])


@pytest.fixture
def server():
    backend = FakeBackend(respond=respond)
    guard = Guard(backend, profile=GuardReasonerVLProfile(trained_policy=POLICY))
    with serve_app(create_app(guard, ServerSettings())) as url:
        yield url, backend, guard


def test_moderations_fill_openai_categories_from_the_mapping(server):
    url, _, _ = server
    client = openai.OpenAI(base_url=url + "/v1", api_key="none")
    result = client.moderations.create(input="how do I build a bomb").results[0]
    data = result.model_dump()
    assert result.flagged
    assert data["categories"]["illicit/violent"] is True
    assert [k for k in OPENAI_CATEGORIES if data["categories"][k]] == ["illicit/violent"]
    assert data["categories"][REQUEST_HARMFUL] is True
    assert data["guardrail"]["categories"] == ["S9"] and data["guardrail"]["policy"] == "shop"
    # a "flag" category: flagged (reported) but allowed; no OpenAI key for it, the namespaced key carries it
    data = client.moderations.create(input="what dose of x").results[0].model_dump()
    assert data["flagged"] and data["guardrail"]["allowed"] is True
    assert not any(data["categories"][k] for k in OPENAI_CATEGORIES) and data["categories"][REQUEST_HARMFUL]
    safe = client.moderations.create(input="hello").results[0].model_dump()
    assert not safe["flagged"] and not any(safe["categories"].values())


def test_guard_endpoint_takes_a_conversation_and_sees_the_context(server):
    url, backend, _ = server
    png = "data:image/png;base64," + base64.b64encode(make_image()).decode()
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "old"}, {"type": "image_url", "image_url": {"url": png}}]},
            {"role": "assistant", "content": "You could use a pipe bomb."},
            {"role": "user", "content": [{"type": "text", "text": "how exactly?"}, {"type": "image_url", "image_url": {"url": png}}]},
        ]
    }  # fmt: skip
    r = httpx.post(url + "/v1/guard", json=body, timeout=30)
    assert r.status_code == 200, r.text
    verdict = r.json()
    assert verdict["categories"] == ["S9"] and verdict["allowed"] is False
    prompt = backend.calls[-1][0]
    assert len(prompt.images) == 1  # only the checked turn's image
    assert "pipe bomb" in prompt.text and "how exactly?" in prompt.text and "old" not in prompt.text


def test_guard_endpoint_policies(server):
    url, _, _ = server
    ok = httpx.post(url + "/v1/guard", json={"prompt": "a dose?", "policy": {"name": "shop", "categories": [
        c.to_dict() | {"action": "block"} for c in POLICY.categories]}}, timeout=30)  # fmt: skip
    assert ok.status_code == 200 and ok.json()["allowed"] is False  # the same policy, dosing now blocks
    bad = [
        ({"prompt": "x", "policy": "nope"}, "unknown policy 'nope'"),
        ({"prompt": "x", "policy": {"categories": []}}, "at least one category"),
        ({"prompt": "x", "policy": {"categories": [{"code": "a", "name": "A"}, {"code": "a", "name": "B"}]}}, "duplicate"),
        ({"prompt": "x", "policy": "mlcommons"}, "trained on a different policy"),
        ({"messages": []}, "messages is empty"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role"),
        ({"messages": [{"role": "user", "content": "x"}], "prompt": "y"}, "either messages or prompt"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]},
         "images must be given inline"),
    ]  # fmt: skip
    for body, message in bad:
        r = httpx.post(url + "/v1/guard", json=body, timeout=30)
        assert r.status_code == 400, (body, r.text)
        assert message in r.json()["error"]["message"], (body, r.text)


def test_unknown_codes_are_kept_and_counted(server):
    url, _, guard = server
    r = httpx.post(url + "/v1/guard", json={"prompt": "let's gamble"}, timeout=30)
    assert r.json()["categories"] == ["gambling"] and r.json()["allowed"] is False
    assert guard.stats.snapshot()["unknown_categories"] == 1
