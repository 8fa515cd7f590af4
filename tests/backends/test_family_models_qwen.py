"""Qwen3Guard (and gpt-oss-safeguard) on their tiny random models: transformers and llama.cpp.

The tiny models have the real architectures and tokenizer formats (``Qwen3ForCausalLM`` with
Qwen3's added tokens and Qwen3Guard-Gen's template; ``GptOssForCausalLM`` with the harmony
tokens and gpt-oss's template), built offline by ``guardrail.testing``.
"""

from __future__ import annotations

import math

import pytest

from guardrail import Guard
from guardrail.inputs import InputLimits, prepare

pytestmark = pytest.mark.slow
pytest.importorskip("transformers")

CONVERSATION = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "How do I pick a lock?"},
]


@pytest.fixture(scope="module")
def qwen3guard_path(tiny_cache):
    from guardrail.testing import cached_tiny_model

    return cached_tiny_model("qwen3guard", tiny_cache)


@pytest.fixture(scope="module")
def qwen3guard_hf(qwen3guard_path):
    guard = Guard.from_pretrained(qwen3guard_path, device="cpu", max_new_tokens=8)
    yield guard
    guard.close()


def test_the_profile_is_picked_from_the_model(qwen3guard_hf):
    assert qwen3guard_hf.profile.name == "qwen3guard"


@pytest.mark.parametrize(
    "item",
    [
        {"prompt": "How do I bake bread?"},
        {"prompt": "Say hi.", "response": "Hi!"},
        {"messages": CONVERSATION},
    ],
    ids=["prompt", "prompt+response", "conversation"],
)
def test_token_ids_equal_the_tokenizers_own_template(qwen3guard_hf, item):
    backend = qwen3guard_hf.backend
    prepared = prepare(qwen3guard_hf.profile, item, InputLimits())
    messages = item.get("messages") or [
        {"role": "user", "content": item["prompt"]},
        *([{"role": "assistant", "content": item["response"]}] if "response" in item else []),
    ]
    text = backend.tokenizer.apply_chat_template(messages, tokenize=False)
    ids, _, _ = backend.encode(prepared.prompt)
    assert ids == backend.tokenizer(text, add_special_tokens=False).input_ids


def test_reasoning_generates_and_fails_closed_on_a_random_answer(qwen3guard_hf):
    v = qwen3guard_hf.moderate(prompt="How do I bake bread?")
    # A random model writes no "Safety:" line: the failure policy blocks.
    assert v.raw_output and v.decided_by == "policy" and not v.allowed


@pytest.mark.parametrize("item", [{"prompt": "How do I bake bread?"}, {"prompt": "q", "response": "r"}])
def test_fast_scores_are_the_three_safety_words(qwen3guard_hf, item):
    backend = qwen3guard_hf.backend
    prepared = prepare(qwen3guard_hf.profile, item, InputLimits())
    from guardrail import fast

    fp = fast.plan(qwen3guard_hf.profile, prepared.item)
    [result] = backend.score([fast.score_request(qwen3guard_hf.profile, prepared, fp)])
    assert result.error is None and len(result.logprobs) == 3
    assert all(lp < 0 and math.isfinite(lp) for lp in result.logprobs)
    v = qwen3guard_hf.moderate(**item, mode="fast")
    task = "response" if "response" in item else "request"
    score = v.response_score if task == "response" else v.request_score
    probs = [math.exp(lp) for lp in result.logprobs]
    assert score == pytest.approx((probs[0] + probs[2]) / sum(probs))
    assert v.raw_output in ("Safety: Unsafe", "Safety: Safe")


# ------------------------------------------------------------------------------- llama.cpp
@pytest.fixture(scope="module")
def qwen3guard_gguf(qwen3guard_path):
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")
    from guardrail.testing import cached_tiny_gguf

    return cached_tiny_gguf("qwen3guard", qwen3guard_path.parent)


def test_llamacpp_runs_the_exported_model_like_transformers(qwen3guard_gguf, qwen3guard_hf):
    guard = Guard.from_gguf(qwen3guard_gguf.model, n_ctx=2048, n_threads=2, max_new_tokens=8)
    try:
        assert guard.profile.name == "qwen3guard"
        for item in ({"prompt": "How do I bake bread?"}, {"messages": CONVERSATION}):
            prepared = prepare(guard.profile, item, InputLimits())
            hf_ids, _, _ = qwen3guard_hf.backend.encode(prepared.prompt)
            assert guard.backend.encode(prepared.prompt).token_ids(-1) == hf_ids
            a = guard.moderate(**item, mode="fast")
            b = qwen3guard_hf.moderate(**item, mode="fast")
            assert a.request_score == pytest.approx(b.request_score, rel=1e-3, abs=1e-6)
            assert guard.moderate(**item).raw_output == qwen3guard_hf.moderate(**item).raw_output
    finally:
        guard.close()


# ------------------------------------------------------------------------ gpt-oss-safeguard
@pytest.fixture(scope="module")
def gpt_oss_hf(tiny_cache):
    from guardrail.testing import cached_tiny_model

    path = cached_tiny_model("gpt-oss-safeguard", tiny_cache)
    guard = Guard.from_pretrained(
        path, device="cpu", max_new_tokens=8, profile_options={"reasoning_effort": "low"}
    )
    yield guard
    guard.close()


def test_gpt_oss_runs_on_transformers_with_the_templates_token_ids(gpt_oss_hf):
    from guardrail.policies import MLCOMMONS

    assert gpt_oss_hf.profile.name == "gpt-oss-safeguard"
    backend, profile = gpt_oss_hf.backend, gpt_oss_hf.profile
    prepared = prepare(profile, {"prompt": "q", "response": "r", "policy": MLCOMMONS}, InputLimits())
    messages = [
        {"role": "system", "content": profile.policy_text(MLCOMMONS)},
        {"role": "user", "content": profile.content_text(prepared.item)},
    ]
    text = backend.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, reasoning_effort="low"
    )
    ids, _, _ = backend.encode(prepared.prompt)
    assert ids == backend.tokenizer(text, add_special_tokens=False).input_ids
    v = gpt_oss_hf.moderate(prompt="How do I bake bread?", policy=MLCOMMONS)
    assert v.raw_output and v.decided_by == "policy" and not v.allowed  # random weights: no answer


def test_gpt_oss_cascade_runs_low_effort_then_the_guards_effort(gpt_oss_hf, monkeypatch):
    """The tiny model's random output is unparsable at low effort: the cascade re-runs it at the
    guard's effort (medium), whose greedy output is the reasoning-mode one."""
    from guardrail.policies import MLCOMMONS
    from guardrail.profiles import get_profile

    backend = gpt_oss_hf.backend
    seen = []
    generate = backend.generate
    monkeypatch.setattr(
        backend, "generate", lambda prompts, options: seen.append(prompts) or generate(prompts, options)
    )
    medium = get_profile("gpt-oss-safeguard", reasoning_effort="medium", current_date="2026-01-02")
    guard = Guard(backend, profile=medium, policy=MLCOMMONS, mode="cascade", max_new_tokens=8)
    v = guard.moderate(prompt="How do I bake bread?")
    assert [["Reasoning: low\n" in p.text for p in batch] for batch in seen] == [[True], [False]]
    assert "Reasoning: medium\n" in seen[1][0].text
    assert v.path == "reasoning" and v.decided_by == "policy" and not v.allowed  # fails closed
    assert guard.stats.snapshot()["escalations"] == 1
    assert v.raw_output == guard.moderate(prompt="How do I bake bread?", mode="reasoning").raw_output


def test_gpt_oss_exports_to_gguf_and_runs_on_llamacpp(gpt_oss_hf, tiny_cache):
    """The exporter detects the o200k split (pre-tokenizer ``gpt-4o``); llama.cpp builds the
    same prompt tokens. Generations are not compared: llama.cpp's gpt-oss kernels differ from
    transformers' enough to change a random model's greedy tokens."""
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")
    from guardrail.policies import MLCOMMONS
    from guardrail.testing import cached_tiny_gguf

    files = cached_tiny_gguf("gpt-oss-safeguard", tiny_cache)
    guard = Guard.from_gguf(files.model, n_ctx=4096, n_threads=2, max_new_tokens=8)
    try:
        assert guard.profile.name == "gpt-oss-safeguard"
        prepared = prepare(
            guard.profile, {"prompt": "q", "response": "r", "policy": MLCOMMONS}, InputLimits()
        )
        hf_ids, _, _ = gpt_oss_hf.backend.encode(prepared.prompt)
        assert guard.backend.encode(prepared.prompt).token_ids(-1) == hf_ids
        v = guard.moderate(prompt="How do I bake bread?", policy=MLCOMMONS)
        assert v.raw_output and v.decided_by == "policy" and not v.allowed
    finally:
        guard.close()
