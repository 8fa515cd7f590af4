"""Fast mode on the llama.cpp backend (tiny guards exported to f32 GGUF).

Checked two ways: against feeding each candidate token by token on a fresh context
(``token_logprobs``, no trie, no KV-cache rollback), and against the transformers backend's fast
scores (with llama.cpp's qwen2vl RMSNorm quirk mirrored, as in test_llamacpp.py).
"""

from __future__ import annotations

import pytest
from PIL import Image

from guardrail import Guard, fast
from guardrail.backends.base import ScoreRequest
from guardrail.inputs import InputLimits, prepare
from guardrail.profiles import GuardReasonerProfile, GuardReasonerVLProfile
from guardrail.profiles.base import merge_text

pytestmark = pytest.mark.slow
np = pytest.importorskip("numpy")
pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")

RED = Image.new("RGB", (64, 48), (220, 20, 20))
BLUE = Image.new("RGB", (30, 90), (20, 20, 220))
CASES = {
    "text": {"prompt": "How do I bake bread?"},
    "prompt+response": {"prompt": "Say something nice.", "response": "You are great!"},
    "response only": {"response": "Here is how to pick a lock."},
    "text+image": {"prompt": "What is in this picture?", "images": [BLUE]},
    "two images+response": {"prompt": "Compare.", "response": "Red and blue.", "images": [RED, BLUE]},
}


def fed_one_by_one(backend, request: ScoreRequest) -> list[float]:
    """Each candidate fed token by token after a fresh prefill of prompt + forced answer."""
    import dataclasses

    parts = merge_text([*request.prompt.parts, request.prefix])
    prompt = dataclasses.replace(request.prompt, parts=tuple(parts))
    out = []
    for continuation in request.continuations:
        tokens = backend._encode_text(parts[-1] + continuation)[len(backend._encode_text(parts[-1])) :]
        rows = backend.token_logprobs(prompt, tokens)
        out.append(float(sum(rows[i][t] for i, t in enumerate(tokens))))
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_scores_equal_feeding_each_candidate(llama_vl, case):
    profile = GuardReasonerVLProfile()
    prepared = prepare(profile, CASES[case], InputLimits())
    request = fast.score_request(profile, prepared, fast.plan(profile, prepared.item))
    (result,) = llama_vl.score([request])
    assert result.error is None
    # float32 logits, several tokens per call against one: equal to a few parts per million
    assert list(result.logprobs) == pytest.approx(fed_one_by_one(llama_vl, request), rel=3e-5, abs=1e-4)


def test_labels_sharing_a_first_token(llama_vl):
    prompt = prepare(GuardReasonerVLProfile(), CASES["text"], InputLimits()).prompt
    request = ScoreRequest(
        prompt, "<result>\nRequest:", ("u", "unharmful", " harmful", " harmful\nResponse: None")
    )
    (result,) = llama_vl.score([request])
    # float32 logits, several tokens per call against one: equal to a few parts per million
    assert list(result.logprobs) == pytest.approx(fed_one_by_one(llama_vl, request), rel=3e-5, abs=1e-4)


def test_fast_verdicts_match_the_transformers_backend(llama_vl, vl_eps0):
    ours, reference = Guard(llama_vl, mode="fast"), Guard(vl_eps0, mode="fast")
    for case, item in CASES.items():
        a, b = ours.moderate(**item), reference.moderate(**item)
        assert a.path == "fast" and a.output_tokens == 0, case
        for field in ("request_score", "response_score"):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None) == (y is None), (case, field)
            if x is not None:
                assert x == pytest.approx(y, abs=2e-3), (case, field)


def test_text_guard_fast_scores_match(llama_text, text_backend):
    item = {"prompt": "How do I bake bread?", "response": "I can't help with that."}
    a = Guard(llama_text, mode="fast").moderate(**item)
    b = Guard(text_backend, mode="fast").moderate(**item)
    assert a.raw_output.startswith(GuardReasonerProfile().fast_prefix)
    for field in ("request_score", "refusal_score", "response_score"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), abs=1e-3), field


def test_cascade_and_generation_after_scoring(llama_vl):
    score = Guard(llama_vl, mode="fast").moderate(**CASES["text"]).request_score
    guard = Guard(llama_vl, mode="cascade", cascade_band=(score - 0.01, score + 0.01), max_new_tokens=6)
    reasoned = guard.moderate(**CASES["text"])
    plain = Guard(llama_vl, max_new_tokens=6).moderate(**CASES["text"])
    # the scoring pass left nothing behind in the context: generation gives the same output
    assert reasoned.path == "reasoning" and reasoned.raw_output == plain.raw_output
    # the same scores up to float rounding: with prefix caching the two passes may evaluate the
    # prompt in different pieces (what the previous prompt left in the context differs)
    assert reasoned.request_score == pytest.approx(score, abs=1e-4)


def test_a_prompt_over_the_context_fails_that_item_only(tiny_gguf):
    backend = Guard.from_gguf(tiny_gguf.model, tiny_gguf.mmproj, n_ctx=256, n_threads=1).backend
    try:
        guard = Guard(backend, mode="fast")
        verdicts = guard.moderate_batch([{"prompt": "word " * 400}, {"prompt": "hi"}])
        assert (
            verdicts[0].decided_by == "policy" and "context" in verdicts[0].error and not verdicts[0].allowed
        )
        assert verdicts[1].decided_by == "model" and verdicts[1].path == "fast"
    finally:
        backend.close()


# ------------------------------------------------------- llama-cpp-python's server (a real engine)
@pytest.fixture(scope="module")
def llama_server(tiny_text_gguf):
    """``python -m llama_cpp.server`` on the tiny text guard, with log-probabilities on."""
    import socket
    import subprocess
    import time

    import httpx

    from tests.conftest import PYTHON, subprocess_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [PYTHON, "-m", "llama_cpp.server", "--model", str(tiny_text_gguf.model), "--model_alias", "tiny-text",
           "--logits_all", "true", "--n_ctx", "2048", "--n_threads", "1", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_llama_cpp_server_completions_give_the_in_process_scores(llama_server, llama_text):
    item = {"prompt": "How do I bake bread?", "response": "I can't help with that."}
    with Guard.from_endpoint(
        llama_server, "tiny-text", profile="guardreasoner", mode="fast", max_retries=0
    ) as remote:
        over_http = [remote.moderate(**item), remote.moderate(prompt="hi")]
    local = [
        Guard(llama_text, mode="fast").moderate(**item),
        Guard(llama_text, mode="fast").moderate(prompt="hi"),
    ]
    for a, b in zip(over_http, local, strict=True):
        assert a.decided_by == "model" and a.path == "fast"
        for field in ("request_score", "refusal_score", "response_score"):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None and y is None) or x == pytest.approx(y, abs=1e-5), field


def test_llama_cpp_server_chat_gives_no_prompt_logprobs(llama_server):
    from guardrail import UnsupportedError

    # llama-cpp-python's chat endpoint has no prompt_logprobs: chat profiles cannot run fast mode there
    with Guard.from_endpoint(llama_server, "tiny-text", mode="fast", max_retries=0) as remote:
        with pytest.raises(UnsupportedError):
            remote.moderate(prompt="hi")
