"""One failure policy everywhere: every backend, every integration, logged and counted."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from guardrail import BackendError, BackendTimeoutError, Guard, GuardViolation, ParseError
from guardrail.server import create_app
from guardrail.testing import FakeBackend, result_output, serve_app

BOOM = BackendError("model crashed")


def guards(**failure):
    """The same failure seen by a guard: an unparsable output, or a backend error."""
    return {
        "parse": Guard(FakeBackend(["not a verdict"]), **failure),
        "backend": Guard(FakeBackend(error=BOOM), **failure),
    }


@pytest.mark.parametrize("kind", ["parse", "backend"])
def test_block_is_the_default_and_is_logged_and_counted(kind, caplog):
    guard = guards()[kind]
    with caplog.at_level(logging.WARNING, logger="guardrail"):
        v = guard.moderate(prompt="x")
    assert not v.allowed and v.harmful and v.decided_by == "policy" and not v.parsed and v.error
    assert any("decided by policy" in r.message for r in caplog.records)
    stats = guard.stats.snapshot()
    assert stats["policy_blocks"] == 1 and stats["policy_allows"] == 0
    assert stats["parse_failures" if kind == "parse" else "backend_errors"] == 1


@pytest.mark.parametrize("kind", ["parse", "backend"])
def test_allow_and_raise(kind):
    on = "on_parse_error" if kind == "parse" else "on_error"
    v = guards(**{on: "allow"})[kind].moderate(prompt="x")
    assert v.allowed and not v.harmful and v.decided_by == "policy"
    guard = guards(**{on: "raise"})[kind]
    with pytest.raises(ParseError if kind == "parse" else BackendError):
        guard.moderate(prompt="x")
    assert guard.stats.get("parse_failures" if kind == "parse" else "backend_errors") == 1


@pytest.mark.parametrize("kind", ["parse", "backend"])
async def test_async_path_follows_the_same_policy(kind):
    v = await guards()[kind].amoderate(prompt="x")
    assert not v.allowed and v.decided_by == "policy"


@pytest.mark.parametrize("kind", ["parse", "backend"])
def test_decorator_follows_the_guard_policy(kind):
    blocked = guards()[kind]

    @blocked.check
    def handler(prompt: str) -> str:
        raise AssertionError("a policy block must not reach the handler")

    with pytest.raises(GuardViolation) as info:
        handler("hello")
    assert info.value.verdict.decided_by == "policy"

    allowed = guards(on_parse_error="allow", on_error="allow")[kind]
    assert allowed.check(lambda prompt: "ok")("hello") == "ok"

    raising = guards(on_parse_error="raise", on_error="raise")[kind]
    with pytest.raises(ParseError if kind == "parse" else BackendError):
        raising.check(lambda prompt: "ok")("hello")


@pytest.mark.parametrize("kind", ["parse", "backend"])
def test_langchain_follows_the_guard_policy(kind):
    pytest.importorskip("langchain_core")
    from langchain_core.runnables import RunnableLambda

    chain = guards()[kind].as_runnable() | RunnableLambda(lambda x: "reached")
    with pytest.raises(GuardViolation):
        chain.invoke("hello")
    allowed = guards(on_parse_error="allow", on_error="allow")[kind]
    assert (allowed.as_runnable() | RunnableLambda(lambda x: "reached")).invoke("hello") == "reached"


@pytest.mark.parametrize("kind", ["parse", "backend"])
def test_server_flags_policy_blocks_and_exports_the_counters(kind):
    guard = guards()[kind]
    with serve_app(create_app(guard)) as url:
        r = httpx.post(url + "/v1/moderations", json={"input": "x"})
        result = r.json()["results"][0]
        assert r.status_code == 200 and result["flagged"] and result["guardrail"]["decided_by"] == "policy"
        metrics = httpx.get(url + "/metrics").text
    assert "guardrail_guard_policy_blocks_total 1.0" in metrics
    assert 'guardrail_verdicts_total{decided_by="policy",decision="blocked"} 1.0' in metrics


# ---------------------------------------------------------------------------------- timeouts
def test_transformers_timeout_fails_closed_and_the_backend_stays_usable(vl_backend):
    slow = Guard(vl_backend, max_new_tokens=5000, timeout_s=0.3, batching=False)
    t0 = time.monotonic()
    v = slow.moderate(prompt="a long generation")
    assert time.monotonic() - t0 < 3
    assert v.decided_by == "policy" and not v.allowed and "did not finish within 0.3s" in v.error
    assert slow.stats.get("timeouts") == 1 and slow.stats.get("policy_blocks") == 1
    with pytest.raises(BackendTimeoutError):
        Guard(vl_backend, max_new_tokens=5000, timeout_s=0.3, on_error="raise").moderate(prompt="x")
    quick = Guard(vl_backend, max_new_tokens=4, timeout_s=30)
    assert quick.moderate(prompt="x").output_tokens == 4  # finished in time: a normal verdict path


def test_llamacpp_timeout_fails_closed_and_the_backend_stays_usable(tiny_gguf):
    pytest.importorskip("llama_cpp")
    backend = Guard.from_gguf(tiny_gguf.model, tiny_gguf.mmproj, n_ctx=8192, n_threads=1).backend
    try:
        slow = Guard(backend, max_new_tokens=6000, timeout_s=0.3, batching=False)
        t0 = time.monotonic()
        verdicts = slow.moderate_batch([{"prompt": "one"}, {"prompt": "two"}])
        assert time.monotonic() - t0 < 3
        assert all(v.decided_by == "policy" and "did not finish" in v.error for v in verdicts)
        assert slow.stats.get("timeouts") == 2
        assert Guard(backend, max_new_tokens=4).moderate(prompt="x").output_tokens == 4
    finally:
        backend.close()


def test_remote_timeout_option_bounds_the_request():
    from tests.backends.chat_server import Script
    from tests.backends.chat_server import create_app as chat_app

    script = Script(plan=["sleep:5"])
    with serve_app(chat_app(script)) as url:
        guard = Guard.from_endpoint(url + "/v1", "tiny-guard", timeout=60, max_retries=0, timeout_s=0.5)
        try:
            t0 = time.monotonic()
            v = guard.moderate(prompt="x")
            assert time.monotonic() - t0 < 2.5
            assert v.decided_by == "policy" and guard.stats.get("timeouts") == 1
        finally:
            guard.close()


def test_counters_for_the_model_path():
    guard = Guard(FakeBackend([result_output("unharmful")]))
    guard.moderate(prompt="x")
    stats = guard.stats.snapshot()
    assert stats["reasoning_verdicts"] == 1 and stats["policy_blocks"] == 0 and stats["backend_errors"] == 0


# ---------------------------------------------------------------------------------- safe defaults
def test_pickle_checkpoints_are_refused(tiny_vl_path, tmp_path):
    """Weights load from safetensors only: a model directory holding only a pickle checkpoint
    (which can run code when loaded) is refused."""
    import shutil

    import torch
    from safetensors.torch import load_file

    model_dir = tmp_path / "pickled"
    shutil.copytree(tiny_vl_path, model_dir)
    state = load_file(model_dir / "model.safetensors")
    (model_dir / "model.safetensors").unlink()
    torch.save(state, model_dir / "pytorch_model.bin")
    with pytest.raises(BackendError, match="cannot load model"):
        Guard.from_pretrained(model_dir)


def test_remote_code_stays_off(tiny_vl_path):
    from guardrail.backends.transformers import TransformersBackend

    assert "trust_remote_code" in TransformersBackend._load.__kwdefaults__  # Guard.from_pretrained's loader
    assert TransformersBackend._load.__kwdefaults__["trust_remote_code"] is False
