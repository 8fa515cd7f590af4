"""The integration examples run (as scripts, and in-process with a chosen guard)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from itertools import cycle

import pytest

from guardrail import Guard
from tests.conftest import PYTHON, REPO, subprocess_env
from tests.integrations.conftest import KeywordGuard, data_url

EXAMPLES = REPO / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the body model's annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fastapi_example():
    pytest.importorskip("fastapi")
    return load("fastapi_app")


@pytest.fixture(scope="module")
def langchain_example():
    pytest.importorskip("langchain_core")
    return load("langchain_chain")


IMAGE_MESSAGES = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": data_url()}},
        ],
    }
]


# -------------------------------------------------------------------------------- FastAPI
def test_fastapi_chat_endpoint(fastapi_example):
    from fastapi.testclient import TestClient

    kw = KeywordGuard()
    calls = []

    async def llm(messages):
        calls.append(messages)
        return "Here is some poison." if "story" in str(messages) else "A red square."

    with TestClient(fastapi_example.create_app(kw.guard, llm=llm)) as client:
        # FastAPI read the guarded handler's signature: the body model is documented
        schema = client.get("/openapi.json").json()
        assert "ChatRequest" in schema["components"]["schemas"]

        r = client.post("/chat", json={"messages": IMAGE_MESSAGES})
        assert r.status_code == 200 and r.json() == {"role": "assistant", "content": "A red square."}
        assert kw.checks[-1][2] == 1 and "A red square." in kw.checks[-1][1]

        r = client.post("/chat", json={"messages": [{"role": "user", "content": "build a bomb"}]})
        assert r.status_code == 400 and r.json()["stage"] == "input"
        assert r.json()["verdict"]["request_harmful"] is True and len(calls) == 1

        r = client.post("/chat", json={"messages": [{"role": "user", "content": "tell a story"}]})
        assert r.status_code == 400 and r.json()["stage"] == "output"

        bad = [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
            }
        ]
        assert client.post("/chat", json={"messages": bad}).status_code == 422


def test_fastapi_stream_endpoint_cuts_the_harmful_continuation(fastapi_example):
    from fastapi.testclient import TestClient

    kw = KeywordGuard()

    async def stream_llm(messages):
        for word in "Sure, here is a long and friendly story about a poison apple and more".split():
            yield word + " "

    app = fastapi_example.create_app(kw.guard, stream_llm=stream_llm, window=16)
    with TestClient(app) as client:
        r = client.post("/chat/stream", json={"messages": [{"role": "user", "content": "a story"}]})
        assert r.status_code == 200
        assert r.text.startswith("Sure, here") and "poison" not in r.text
        assert r.text.endswith(fastapi_example.STREAM_NOTICE)
        r = client.post("/chat/stream", json={"messages": [{"role": "user", "content": "a bomb story"}]})
        assert r.status_code == 400 and r.json()["stage"] == "input"


@pytest.mark.slow
def test_fastapi_example_with_the_tiny_model(fastapi_example, vl_backend):
    from fastapi.testclient import TestClient

    lenient = Guard(vl_backend, max_new_tokens=8, on_parse_error="allow")
    with TestClient(fastapi_example.create_app(lenient)) as client:
        r = client.post("/chat", json={"messages": IMAGE_MESSAGES})
        assert r.status_code == 200 and r.json()["content"] == "You said: What is this? and 1 image(s)."
    strict = Guard(vl_backend, max_new_tokens=8)
    with TestClient(fastapi_example.create_app(strict)) as client:
        r = client.post("/chat", json={"messages": IMAGE_MESSAGES})
        assert r.status_code == 400 and r.json()["verdict"]["decided_by"] == "policy"


# ------------------------------------------------------------------------------ LangChain
def test_langchain_example_chain(langchain_example):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage

    kw = KeywordGuard()
    chain = langchain_example.build_chain(kw.guard)
    image = langchain_example.image_message("What is this?", EXAMPLES / "images" / "bread.png")
    assert "bread" in chain.invoke({"messages": [image]})
    assert kw.checks[-1][2] == 1 and "What is this?" in kw.checks[-1][0]
    fallback = langchain_example.FALLBACK.content
    assert chain.invoke({"messages": [HumanMessage("a bomb")]}) == fallback
    poisoned = langchain_example.build_chain(
        kw.guard,
        GenericFakeChatModel(messages=cycle([AIMessage("Knead the dough well, then add poison.")])),
        window=10,
    )
    streamed = "".join(poisoned.stream({"messages": [HumanMessage("bread?")]}))
    assert streamed.startswith("Knead") and streamed.endswith(fallback) and "poison" not in streamed


@pytest.mark.slow
def test_langchain_example_with_the_tiny_model(langchain_example, vl_backend):
    image = langchain_example.image_message("What is this?", EXAMPLES / "images" / "bread.png")
    lenient = langchain_example.build_chain(Guard(vl_backend, max_new_tokens=8, on_parse_error="allow"))
    assert "bread" in lenient.invoke({"messages": [image]})
    strict = langchain_example.build_chain(Guard(vl_backend, max_new_tokens=8))
    assert strict.invoke({"messages": [image]}) == langchain_example.FALLBACK.content


# ----------------------------------------------------------------------- as scripts
@pytest.mark.parametrize("script", ["fastapi_app.py", "langchain_chain.py"])
def test_examples_run_as_scripts(script):
    proc = subprocess.run(
        [PYTHON, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        env=subprocess_env(GUARDRAIL_EXAMPLE_GUARD="keywords"),
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "harmful" in proc.stdout and ("400 blocked at input" in proc.stdout or "Sorry" in proc.stdout)
