"""The real LiteLLM proxy (``litellm[proxy]``) with our server as its Generic Guardrail API.

The proxy runs as a subprocess on 127.0.0.1 with integrations/litellm/config.yaml (the shipped
file, plus a few guardrails that tests ask for by name), offline, in front of a local
OpenAI-compatible chat stub that records what reaches the model. A scripted guard decides
harmful vs benign deterministically; one test runs the real tiny model behind
``python -m guardrail serve``.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from guardrail import Guard
from guardrail.server import ServerSettings, create_app
from guardrail.server.litellm_api import verdict_answer
from guardrail.testing import FakeBackend, result_output, serve_app
from guardrail.verdict import Verdict
from tests.backends.test_remote import free_port
from tests.conftest import PYTHON, REPO, make_image, subprocess_env, wait_until_up
from tests.integrations.chat_stub import BENIGN_REPLY, chat_stub

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("litellm") is None, reason="the litellm extra is not installed"
    ),
]

LITELLM = Path(sys.executable).with_name("litellm")
CONFIG = REPO / "integrations" / "litellm" / "config.yaml"
MASTER = "sk-test-master"
GUARD_KEY = "guard-key"
DATA_URL = "data:image/png;base64," + base64.b64encode(make_image()).decode()
BAD_IMAGE = "data:image/png;base64," + base64.b64encode(make_image(size=(7, 7))).decode()
REQUEST_BLOCKED = "Blocked by guardrail: the request was judged harmful"
RESPONSE_BLOCKED = "Blocked by guardrail: the model's response was judged harmful"


def scripted(word: str):
    """A guard for which a request is harmful when the user says ``word`` or sends a 7x7 image,
    and a response when it says ``word``."""

    def respond(prompt) -> str:
        request, _, response = prompt.text.partition("AI assistant:")
        request = request.rpartition("Human user:")[2]
        bad_image = any(image.size == (7, 7) for image in prompt.images)
        return result_output(
            "harmful" if word in request or bad_image else "unharmful",
            "harmful" if word in response else "unharmful",
        )

    return respond


def extra_guardrail(name: str, mode: str, api_base: str, **params) -> dict:
    """A guardrail that runs only when a request names it (``"guardrails": [name]``)."""
    base = {"guardrail": "generic_guardrail_api", "mode": mode, "api_base": api_base, "api_key": GUARD_KEY}
    return {"guardrail_name": name, "litellm_params": {**base, "default_on": False, **params}}


@contextlib.contextmanager
def litellm_proxy(config: dict, tmp: Path, env: dict[str, str]) -> Iterator[str]:
    """Run ``litellm --config`` on 127.0.0.1; yields its base URL."""
    import yaml

    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = tmp / "proxy.log"
    env = {
        **os.environ, **env, "LITELLM_MASTER_KEY": MASTER, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "NO_PROXY": "127.0.0.1,localhost", "HF_HUB_OFFLINE": "1",
    }  # fmt: skip
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(LITELLM), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(url + "/health/liveliness", proc, log_path, timeout=240)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def shipped_config() -> dict:
    import yaml

    return yaml.safe_load(CONFIG.read_text())


class Setup:
    def __init__(self, proxy: str, stub, tiny_port: int, guard_url: str):
        self.proxy, self.stub, self.tiny_port, self.guard_url = proxy, stub, tiny_port, guard_url

    def chat(self, content, *, guardrails: list[str] | None = None, **extra) -> httpx.Response:
        body = {"model": "my-model", "messages": [{"role": "user", "content": content}], **extra}
        if guardrails:
            body["guardrails"] = guardrails
        headers = {"Authorization": f"Bearer {MASTER}"}
        return httpx.post(self.proxy + "/v1/chat/completions", json=body, headers=headers, timeout=120)

    def stream(self, content, **extra) -> tuple[int, str]:
        """Stream a chat; the status and every byte the client received."""
        body = {
            "model": "my-model",
            "messages": [{"role": "user", "content": content}],
            "stream": True,
            **extra,
        }
        headers = {"Authorization": f"Bearer {MASTER}"}
        with httpx.stream(
            "POST", self.proxy + "/v1/chat/completions", json=body, headers=headers, timeout=120
        ) as r:
            return r.status_code, r.read().decode()


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("litellm")
    guard = Guard(FakeBackend(respond=scripted("bomb")))
    poison = Guard(FakeBackend(respond=scripted("poison")))

    def slow(prompt):
        time.sleep(5)
        return result_output()

    settings = ServerSettings(api_key=GUARD_KEY)
    with (
        serve_app(create_app(guard, settings)) as guard_url,
        serve_app(create_app(poison, settings)) as poison_url,
        serve_app(create_app(Guard(FakeBackend(respond=slow)), settings)) as slow_url,
        chat_stub() as stub,
    ):
        tiny_port = free_port()
        config = shipped_config()
        config["guardrails"] += [
            extra_guardrail("during-poison", "during_call", poison_url),
            extra_guardrail("guard-down", "pre_call", f"http://127.0.0.1:{free_port()}"),
            extra_guardrail("guard-down-post", "post_call", f"http://127.0.0.1:{free_port()}"),
            extra_guardrail("guard-slow", "pre_call", slow_url, timeout=1),
            extra_guardrail("guard-wrong-key", "pre_call", guard_url, api_key="wrong"),
            extra_guardrail("tiny", "pre_call", f"http://127.0.0.1:{tiny_port}", timeout=300),
        ]
        env = {
            "GUARDRAIL_API_BASE": guard_url, "GUARDRAIL_API_KEY": GUARD_KEY,
            "UPSTREAM_API_BASE": stub.url + "/v1", "UPSTREAM_API_KEY": "unused",
        }  # fmt: skip
        with litellm_proxy(config, tmp, env) as proxy:
            yield Setup(proxy, stub, tiny_port, guard_url)


@pytest.fixture
def s(setup) -> Setup:
    setup.stub.reset()
    return setup


def error_message(r: httpx.Response) -> str:
    return r.json()["error"]["message"]


def test_a_benign_request_reaches_the_model(s):
    r = s.chat("How do I bake bread?")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == BENIGN_REPLY
    assert len(s.stub.requests) == 1


def test_a_harmful_request_is_blocked_before_the_model(s):
    r = s.chat("How do I build a bomb?")
    assert r.status_code == 400 and error_message(r) == REQUEST_BLOCKED, r.text
    assert s.stub.requests == []


def test_text_and_image(s):
    benign = [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": DATA_URL}}]  # fmt: skip
    r = s.chat(benign)
    assert r.status_code == 200, r.text
    assert s.stub.requests[0]["messages"][0]["content"][1]["image_url"]["url"] == DATA_URL
    s.stub.reset()
    harmful = [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": BAD_IMAGE}}]  # fmt: skip
    r = s.chat(harmful)
    assert r.status_code == 400 and error_message(r) == REQUEST_BLOCKED, r.text
    assert s.stub.requests == []


def test_an_image_url_the_server_does_not_fetch_is_blocked(s):
    parts = [{"type": "text", "text": "and this?"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]  # fmt: skip
    r = s.chat(parts)
    assert r.status_code == 400 and "does not fetch http(s) image URLs" in error_message(r), r.text
    assert s.stub.requests == []


def test_a_harmful_reply_is_blocked_after_the_model(s):
    r = s.chat("Tell me, reply-harmful")
    assert r.status_code == 400 and error_message(r) == RESPONSE_BLOCKED, r.text
    assert len(s.stub.requests) == 1  # the model ran; its reply never reached the client
    assert "bomb" not in r.text


def test_streams_are_held_back_until_checked(s):
    status, body = s.stream("bread, please")
    assert status == 200
    deltas = [
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in body.splitlines()
        if line.startswith("data: {")
    ]
    assert "".join(deltas).strip() == BENIGN_REPLY
    # a harmful reply: not one chunk of it reaches the client, only the block
    status, body = s.stream("stream it, reply-harmful")
    assert status == 400 and RESPONSE_BLOCKED in body, body
    assert "bomb" not in body and "Sure" not in body and "data: {" not in body


def test_during_call_checks_the_request_before_a_stream_starts(s):
    status, body = s.stream("how do I make poison?", guardrails=["during-poison"])
    assert status == 400 and REQUEST_BLOCKED in body, body
    assert "data: {" not in body  # the model may have been called in parallel; nothing was sent


@pytest.mark.parametrize("name", ["guard-down", "guard-slow", "guard-wrong-key"])
def test_a_guard_that_is_down_too_slow_or_refuses_the_key_blocks(s, name):
    r = s.chat("How do I bake bread?", guardrails=[name])
    assert r.status_code == 500, r.text
    assert "Generic Guardrail API failed" in error_message(r)
    assert s.stub.requests == []


def test_a_guard_that_is_down_after_the_model_blocks_the_reply(s):
    r = s.chat("How do I bake bread?", guardrails=["guard-down-post"])
    assert r.status_code >= 400 and BENIGN_REPLY not in r.text, r.text


def test_litellm_live_streaming_leaks_what_the_held_back_configuration_prevents(setup, tmp_path):
    """Why the shipped config holds streams back: with LiteLLM's default streaming checks the
    client receives part of the harmful reply before the stream is cut."""
    config = shipped_config()
    del config["guardrails"][1]["litellm_params"]["streaming_buffer_until_moderated"]
    env = {
        "GUARDRAIL_API_BASE": setup.guard_url, "GUARDRAIL_API_KEY": GUARD_KEY,
        "UPSTREAM_API_BASE": setup.stub.url + "/v1", "UPSTREAM_API_KEY": "unused",
    }  # fmt: skip
    with litellm_proxy(config, tmp_path, env) as proxy:
        live = Setup(proxy, setup.stub, setup.tiny_port, setup.guard_url)
        status, body = live.stream("stream it, reply-harmful")
    assert status == 200
    assert "bomb" in body  # delivered before the guard's block ended the stream
    assert RESPONSE_BLOCKED in body


def test_the_real_tiny_model_behind_the_proxy(s, tiny_vl_path, tmp_path):
    """`python -m guardrail serve` on the tiny random model: the proxy does what the guard's own
    verdict for the same request says (whichever it is)."""
    log_path = tmp_path / "guard.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [PYTHON, "-m", "guardrail", "serve", "--model", str(tiny_vl_path), "--port", str(s.tiny_port),
             "--api-key", GUARD_KEY, "--max-new-tokens", "24", "--device", "cpu", "--log-level", "warning"],
            cwd=REPO, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{s.tiny_port}"
            wait_until_up(base + "/readyz", proc, log_path, timeout=300)
            for content, item in [
                ("How do I bake bread?", {"prompt": "How do I bake bread?"}),
                (
                    [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": DATA_URL}},
                    ],
                    {"prompt": "What is this?", "images": [DATA_URL]},
                ),
            ]:
                s.stub.reset()
                direct = httpx.post(
                    base + "/v1/guard",
                    json=item,
                    headers={"Authorization": f"Bearer {GUARD_KEY}"},
                    timeout=300,
                )
                assert direct.status_code == 200, direct.text
                answer = verdict_answer(Verdict.model_validate(direct.json()), "request")
                r = s.chat(content, guardrails=["tiny"])
                if answer["action"] == "NONE":
                    assert r.status_code == 200 and len(s.stub.requests) == 1, r.text
                else:
                    assert r.status_code == 400 and error_message(r) == answer["blocked_reason"], r.text
                    assert s.stub.requests == []
        finally:
            proc.terminate()
            proc.wait(60)
