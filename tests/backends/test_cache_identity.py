"""One verdict cache shared by guards on different backends never hands one guard another's
verdict: the key holds the backend's cache identity (endpoint, model files, options), not only
the backend and model names."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from guardrail import Guard, VerdictCache
from guardrail.backends.remote import RemoteBackend
from guardrail.testing import FakeBackend, result_output, serve_app
from tests.backends.chat_server import completion

pytest.importorskip("fastapi", reason="the server extra is not installed")
from fastapi import FastAPI, Request  # noqa: E402 - after the skip

FAST = {"backoff_s": 0.01, "timeout": 10.0, "max_retries": 0}


@contextlib.contextmanager
def labelled_server(label: str) -> Iterator[tuple[str, list[dict]]]:
    """A real OpenAI-compatible server on 127.0.0.1 whose guard answers ``label`` to everything.
    Yields its base URL (with ``/v1``) and the list of request bodies it received."""
    app = FastAPI()
    seen: list[dict] = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict:
        seen.append(await request.json())
        return completion(result_output(label))

    with serve_app(app) as url:
        yield url + "/v1", seen


@pytest.fixture
def two_servers():
    with labelled_server("harmful") as harmful, labelled_server("unharmful") as unharmful:
        yield harmful, unharmful


def test_two_endpoints_serving_the_same_model_name_keep_their_own_verdicts(two_servers):
    (url_a, seen_a), (url_b, seen_b) = two_servers
    cache = VerdictCache()
    guard_a = Guard.from_endpoint(url_a, "guard", cache=cache, **FAST)
    guard_b = Guard.from_endpoint(url_b, "guard", cache=cache, **FAST)
    try:
        assert guard_a.moderate(prompt="same words").request_harmful is True
        second = guard_b.moderate(prompt="same words")
        assert second.request_harmful is False and not second.cached and len(seen_b) == 1
        # each guard's own entry is served again, from the one cache
        again_a, again_b = guard_a.moderate(prompt="same words"), guard_b.moderate(prompt="same words")
        assert again_a.cached and again_a.request_harmful is True
        assert again_b.cached and again_b.request_harmful is False
        assert len(seen_a) == len(seen_b) == 1 and len(cache) == 2
        # a guard set up like A (same endpoint, model, options) shares A's entries
        twin = Guard.from_endpoint(url_a, "guard", cache=cache, **FAST)
        assert twin.moderate(prompt="same words").cached and len(seen_a) == 1
        twin.close()
    finally:
        guard_a.close()
        guard_b.close()


async def test_async_calls_keep_their_own_verdicts_too(two_servers):
    (url_a, _), (url_b, seen_b) = two_servers
    cache = VerdictCache()
    guard_a = Guard.from_endpoint(url_a, "guard", cache=cache, **FAST)
    guard_b = Guard.from_endpoint(url_b, "guard", cache=cache, **FAST)
    try:
        first = await guard_a.amoderate(prompt="same words")
        a, b = await asyncio.gather(
            guard_a.amoderate(prompt="same words"), guard_b.amoderate(prompt="same words")
        )
        assert first.request_harmful is True and a.cached and a.request_harmful is True
        assert b.request_harmful is False and not b.cached and len(seen_b) == 1
    finally:
        await guard_a.aclose()
        await guard_b.aclose()


def test_remote_identity_names_what_is_sent_and_holds_no_secret():
    def backend(url="http://127.0.0.1:9/v1", model="guard", **options) -> RemoteBackend:
        made = RemoteBackend(url, model, **options)
        made.close()
        return made

    base = backend().cache_identity
    assert base == backend().cache_identity  # stable: the same setup is the same backend
    assert '"endpoint":"http://127.0.0.1:9/v1"' in base and '"model":"guard"' in base
    for other in (
        backend("http://127.0.0.1:10/v1"), backend("http://localhost:9/v1"), backend(model="guard-2"),
        backend(mode="completions"), backend(api_key="key-one"), backend(extra_body={"top_k": 1}),
        backend(escape_special_tokens=False), backend(headers={"X-Tenant": "a"}),
        backend("http://127.0.0.1:9/v1?route=b"), backend("http://someone:pw@127.0.0.1:9/v1"),
    ):  # fmt: skip
        assert other.cache_identity != base
    assert backend(api_key="key-one").cache_identity != backend(api_key="key-two").cache_identity
    secret = backend("http://alice:hunter2pass@10.0.0.7:8000/v1?api_key=querysecret", api_key="sk-verysecretkey123456",
                     headers={"X-Api-Key": "headersecret"}).cache_identity  # fmt: skip
    assert '"endpoint":"http://10.0.0.7:8000/v1"' in secret
    for word in ("alice", "hunter2pass", "querysecret", "verysecretkey", "headersecret"):
        assert word not in secret
    # options that do not change what is sent or answered do not split the cache
    assert backend(timeout=3.0, max_retries=5, max_concurrency=2).cache_identity == base


def test_a_backend_that_cannot_describe_itself_is_known_only_as_itself():
    one, two = FakeBackend(model_name="m"), FakeBackend(model_name="m")
    assert one.cache_identity == one.cache_identity != two.cache_identity
    cache = VerdictCache()
    harmful = Guard(FakeBackend([result_output("harmful")], model_name="m"), cache=cache)
    fine = Guard(FakeBackend([result_output("unharmful")], model_name="m"), cache=cache)
    assert harmful.moderate(prompt="x").request_harmful is True
    assert fine.moderate(prompt="x").request_harmful is False  # same names, other backend
    assert Guard(harmful.backend, cache=cache).moderate(prompt="x").cached  # same backend: shared


@pytest.mark.slow
def test_transformers_identity_is_the_loaded_directory(tiny_text_path):
    pytest.importorskip("transformers", reason="the transformers extra is not installed")
    from guardrail.backends.transformers import TransformersBackend

    one = Guard.from_pretrained(tiny_text_path, device="cpu").backend
    two = Guard.from_pretrained(tiny_text_path, device="cpu").backend
    assert one.cache_identity == two.cache_identity and str(tiny_text_path) in one.cache_identity
    assert Guard.from_pretrained(tiny_text_path, device="cpu", dtype="float16").backend.cache_identity \
        != one.cache_identity  # fmt: skip
    wrapped = TransformersBackend(one.model, one.processor)  # an in-memory model: only itself
    assert wrapped.cache_identity not in (
        one.cache_identity,
        TransformersBackend(one.model, one.processor).cache_identity,
    )


@pytest.mark.slow
def test_llamacpp_identity_is_the_loaded_files(llama_text, tiny_text_gguf):
    import os

    from guardrail.backends.llamacpp import LlamaCppBackend

    assert os.path.abspath(tiny_text_gguf.model) in llama_text.cache_identity
    # a Llama object of unknown options: known only as itself
    wrapped = [LlamaCppBackend(llama_text.llama), LlamaCppBackend(llama_text.llama)]
    try:
        identities = {b.cache_identity for b in [llama_text, *wrapped]}
        assert len(identities) == 3
    finally:
        for backend in wrapped:
            backend.close()
