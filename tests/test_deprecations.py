"""Names that moved still work, with a DeprecationWarning that names their new home."""

from __future__ import annotations

import importlib

import pytest

from guardrail import inputs, moderation, verdict

MOVED_MODULE_NAMES = [
    ("guardrail.core", "prepare", inputs.prepare),
    ("guardrail.core", "Prepared", inputs.Prepared),
    ("guardrail.core", "check_batch", inputs.check_batch),
    ("guardrail.core", "assemble", verdict.verdict_from_generation),
    ("guardrail.core", "policy_verdict", verdict.policy_verdict),
    ("guardrail.core", "validate_policy", verdict.validate_policy),
    ("guardrail.fast", "assemble", verdict.verdict_from_scores),
    ("guardrail.pipeline", "moderate", moderation.moderation_pass),
    ("guardrail.pipeline", "run_sync", moderation.run_sync),
    ("guardrail.pipeline", "Work", moderation.Work),
]


@pytest.mark.parametrize(("module", "name", "new"), MOVED_MODULE_NAMES)
def test_moved_module_names_warn_and_resolve(module, name, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{name} is deprecated; use {new.__module__}\."):
        assert getattr(mod, name) is new


@pytest.mark.parametrize("module", ["guardrail.core", "guardrail.fast", "guardrail.pipeline"])
def test_unknown_names_still_raise_attribute_error(module):
    with pytest.raises(AttributeError):
        importlib.import_module(module).no_such_name  # noqa: B018


def test_the_old_verdict_builder_still_builds_verdicts():
    from guardrail.backends.base import Generation
    from guardrail.profiles import get_profile
    from guardrail.testing import result_output

    profile = get_profile("guardreasoner-vl")
    prepared = inputs.prepare(profile, {"prompt": "hi"}, inputs.InputLimits())
    with pytest.warns(DeprecationWarning):
        from guardrail.core import assemble
    v = assemble(profile, prepared, Generation(text=result_output("harmful")), on_parse_error="block",
                 on_error="block", latency_ms=1.0, model="m")  # fmt: skip
    assert v.request_harmful is True and v.decided_by == "model"


# ------------------------------------------------------------------ the factory layers below Guard
def test_load_backend_warns_and_builds_the_named_backend():
    from guardrail.backends import load_backend
    from guardrail.backends.remote import RemoteBackend

    with pytest.warns(DeprecationWarning, match=r"load_backend is deprecated; use Guard\.from_pretrained"):
        backend = load_backend("remote", "m", base_url="http://127.0.0.1:9/v1", timeout=3.0)
    try:
        assert isinstance(backend, RemoteBackend) and backend.timeout == 3.0 and backend.model_name == "m"
    finally:
        backend.close()


def test_remote_from_endpoint_warns_and_builds_the_backend():
    from guardrail.backends.remote import RemoteBackend, from_endpoint

    with pytest.warns(DeprecationWarning, match=r"from_endpoint is deprecated; use RemoteBackend"):
        backend = from_endpoint("http://127.0.0.1:9/v1", "m", "key", max_retries=0)
    try:
        assert isinstance(backend, RemoteBackend) and backend.retry.max_retries == 0
    finally:
        backend.close()


@pytest.mark.slow
def test_transformers_factories_warn_and_load(tiny_text_path):
    pytest.importorskip("transformers", reason="the transformers extra is not installed")
    from guardrail.backends.transformers import TransformersBackend, from_transformers

    with pytest.warns(DeprecationWarning, match=r"TransformersBackend\.from_pretrained is deprecated"):
        loaded = TransformersBackend.from_pretrained(tiny_text_path, device="cpu", dtype="float32")
    assert isinstance(loaded, TransformersBackend) and str(tiny_text_path) in loaded.cache_identity
    with pytest.warns(DeprecationWarning, match=r"from_transformers is deprecated"):
        wrapped = from_transformers(loaded.model, loaded.processor)
    assert wrapped.model is loaded.model


@pytest.mark.slow
def test_llamacpp_factories_warn_and_load(tiny_text_gguf):
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")
    from guardrail.backends.llamacpp import LlamaCppBackend, from_llamacpp

    with pytest.warns(DeprecationWarning, match=r"LlamaCppBackend\.from_gguf is deprecated"):
        loaded = LlamaCppBackend.from_gguf(tiny_text_gguf.model, None, n_ctx=512, n_threads=1)
    try:
        assert loaded.n_ctx == 512 and loaded.default_profile() == "guardreasoner"
        with pytest.warns(DeprecationWarning, match=r"from_llamacpp is deprecated"):
            wrapped = from_llamacpp(loaded.llama)
        assert wrapped.llama is loaded.llama
    finally:
        loaded.close()
