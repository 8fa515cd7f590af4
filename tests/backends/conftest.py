"""Backends shared by the llama.cpp test modules (module-scoped: each module loads its own)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def llama_vl(tiny_gguf):
    from guardrail import Guard

    backend = Guard.from_gguf(tiny_gguf.model, tiny_gguf.mmproj, n_ctx=4096, n_threads=2).backend
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def llama_text(tiny_text_gguf):
    from guardrail import Guard

    backend = Guard.from_gguf(tiny_text_gguf.model, n_ctx=2048, n_threads=2).backend
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def vl_eps0(tiny_vl_path):
    """The transformers model with llama.cpp's qwen2vl quirk mirrored: language-model RMSNorm
    epsilon 0 (the vision tower keeps its own)."""
    from guardrail import Guard

    backend = Guard.from_pretrained(tiny_vl_path, device="cpu").backend
    for name, module in backend.model.named_modules():
        if hasattr(module, "variance_epsilon") and "visual" not in name:
            module.variance_epsilon = 0.0
    return backend
