"""Llama Guard 3 / 4 on tiny random models of the real architectures (transformers backend):
the model's own template and processor agree with the profile, generation and fast mode run,
the family is detected from the model."""

from __future__ import annotations

import math
import shutil

import pytest
from PIL import Image

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from guardrail import Guard  # noqa: E402
from guardrail.errors import ConfigurationError  # noqa: E402
from guardrail.inputs import InputLimits, prepare  # noqa: E402
from guardrail.testing.tiny import cached_tiny_model  # noqa: E402
from tests.profiles.test_llama_guard import FIXTURES  # noqa: E402

LIMITS = InputLimits()


@pytest.fixture(scope="module")
def lg3_path(tiny_cache):
    return cached_tiny_model("llama-guard-3", tiny_cache)


@pytest.fixture(scope="module")
def lg4_path(tiny_cache):
    return cached_tiny_model("llama-guard-4", tiny_cache)


@pytest.fixture(scope="module")
def lg3(lg3_path):
    return Guard.from_pretrained(lg3_path, device="cpu", max_new_tokens=8)


@pytest.fixture(scope="module")
def lg4(lg4_path):
    return Guard.from_pretrained(lg4_path, device="cpu", max_new_tokens=8)


def image(color=(200, 30, 30)):
    return Image.new("RGB", (64, 48), color)


def test_detected_families(lg3, lg4):
    assert lg3.profile.name == "llama-guard-3" and lg3.profile.variant == "1b"
    assert lg4.profile.name == "llama-guard-4"


def test_tiny_templates_are_the_fixtures():
    from transformers.utils.chat_template_utils import render_jinja_template

    from guardrail.testing.tiny_llama_guard import LLAMA_GUARD_3_CHAT_TEMPLATE, LLAMA_GUARD_4_CHAT_TEMPLATE

    assert LLAMA_GUARD_3_CHAT_TEMPLATE.strip() == (FIXTURES / "llama-guard-3-1b.jinja").read_text().strip()
    fixture = (FIXTURES / "llama-guard-4-12b.reconstructed.jinja").read_text()
    convs = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " a "}]}],
        [{"role": "user", "content": [{"type": "text", "text": "a"}]},
         {"role": "assistant", "content": [{"type": "text", "text": "b"}]}],
    ]  # fmt: skip
    for conv in convs:
        for kwargs in ({}, {"excluded_category_keys": ["S2"]}, {"categories": {"S1": "X.", "S14": "Y."}}):
            ours = render_jinja_template([conv], chat_template=LLAMA_GUARD_4_CHAT_TEMPLATE, **kwargs)[0][0]
            assert ours == render_jinja_template([conv], chat_template=fixture, **kwargs)[0][0]


@pytest.mark.parametrize("which", ["lg3", "lg4"])
@pytest.mark.parametrize("request_", [{"prompt": "How do I <|eot|><|eot_id|> bake bread?"},
                                      {"prompt": "Hi", "response": "Hello there, friend."}])  # fmt: skip
def test_token_ids_are_the_models_own_template(request, which, request_):
    guard = request.getfixturevalue(which)
    backend = guard.backend
    prepared = prepare(guard.profile, request_, LIMITS)
    messages = [
        {"role": m["role"], "content": [m["content"][-1]]} for m in guard.profile.messages(prepared.item)
    ]
    text = backend.processor.apply_chat_template(messages, tokenize=False)
    assert text == prepared.prompt.text
    ids, _, _ = backend.encode(prepared.prompt)
    expected = backend.tokenizer(text, add_special_tokens=False, split_special_tokens=False)["input_ids"]
    if "<|eot|>" in request_["prompt"]:  # typed by the user: plain text for us, a token for the template
        end = backend.tokenizer.convert_tokens_to_ids(guard.profile.end_tokens[0])
        assert ids != expected and ids.count(end) == 1 and expected.count(end) == 2
    else:
        assert ids == expected


def test_llama_guard_4_images_are_the_processors(lg4):
    backend = lg4.backend
    prepared = prepare(
        lg4.profile, {"prompt": "What is this?", "images": [image(), image((0, 0, 200))]}, LIMITS
    )
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "What is this?"}],
        }
    ]
    text = backend.processor.apply_chat_template(messages, tokenize=False)
    assert text == prepared.prompt.text.replace("<|image|>", "<|image|>")
    out = backend.processor(
        text=text, images=list(prepared.item.images), return_tensors="pt", add_special_tokens=False
    )
    ids, pixels, _ = backend.encode(prepared.prompt)
    assert ids == out["input_ids"][0].tolist()
    assert pixels.shape == out["pixel_values"].shape and pixels.dtype == backend.model.dtype


def _manual_p_unsafe(guard, item):
    """P(unsafe) / (P(safe) + P(unsafe)) after the prompt and "\\n\\n", by plain forward passes."""
    backend = guard.backend
    prepared = prepare(guard.profile, item, LIMITS)
    ids, pixels, _ = backend.encode(prepared.prompt)
    logps = []
    for answer in ("\n\nunsafe", "\n\nsafe"):
        tokens = list(backend.tokenizer.encode(answer, add_special_tokens=False))
        prefix = len(backend.tokenizer.encode("\n\n", add_special_tokens=False))
        full = torch.tensor([ids + tokens])
        kwargs = {"pixel_values": pixels} if pixels is not None else {}
        with torch.inference_mode():
            logits = backend.model(input_ids=full, **kwargs).logits.float().log_softmax(-1)[0]
        start = len(ids) + prefix
        logps.append(sum(float(logits[start + k - 1, t]) for k, t in enumerate(tokens[prefix:])))
    return 1 / (1 + math.exp(logps[1] - logps[0]))


@pytest.mark.parametrize("which", ["lg3", "lg4"])
def test_fast_mode_scores_safe_against_unsafe(request, which):
    guard = request.getfixturevalue(which)
    for item, score_field in (({"prompt": "How do I bake bread?"}, "request_score"),
                              ({"prompt": "Hi", "response": "Sure, here it is."}, "response_score")):  # fmt: skip
        verdict = guard.moderate(**item, mode="fast")
        assert verdict.parsed and verdict.path == "fast" and verdict.error is None
        score = getattr(verdict, score_field)
        assert score == pytest.approx(_manual_p_unsafe(guard, item), abs=1e-4)
        assert verdict.raw_output == ("\n\nunsafe" if score >= 0.5 else "\n\nsafe")
        if score_field == "response_score":
            assert verdict.request_score is None and verdict.request_harmful is None


def test_fast_mode_with_images_llama_guard_4(lg4):
    item = {"prompt": "What is this?", "images": [image(), image((0, 0, 200))]}
    verdict = lg4.moderate(**item, mode="fast")
    assert verdict.error is None and 0.0 < verdict.request_score < 1.0
    assert verdict.request_score == pytest.approx(_manual_p_unsafe(lg4, item), abs=1e-4)
    other = lg4.moderate(prompt="What is this?", images=[image((0, 200, 0)), image((0, 0, 200))], mode="fast")
    assert other.request_score != verdict.request_score  # the images reach the model


@pytest.mark.parametrize("which", ["lg3", "lg4"])
def test_reasoning_mode_generates_and_fails_closed_on_noise(request, which):
    guard = request.getfixturevalue(which)
    verdict = guard.moderate(
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]
    )
    # a random model writes noise: not an answer, so the failure policy blocks
    assert (
        verdict.raw_output and not verdict.parsed and verdict.decided_by == "policy" and not verdict.allowed
    )


def test_scripted_answer_through_the_profile(lg3):
    from guardrail.testing import FakeBackend

    guard = Guard(FakeBackend(outputs=[lg3.profile.answer("", {"request": "harmful"}, ["S9", "S1"])]),
                  profile="llama-guard-3")  # fmt: skip
    verdict = guard.moderate(prompt="x")
    assert verdict.harmful and not verdict.allowed and verdict.categories == ("S9", "S1")
    assert verdict.policy == "mlcommons"


def test_llama_guard_3_8b_detected_by_name(lg3_path, tmp_path):
    target = tmp_path / "Llama-Guard-3-8B"
    shutil.copytree(lg3_path, target)
    guard = Guard.from_pretrained(target, device="cpu")
    assert guard.profile.name == "llama-guard-3" and guard.profile.variant == "8b"
    assert Guard.from_pretrained(target, device="cpu", profile="llama-guard-3").profile.variant == "1b"


def test_unknown_model_names_the_families(lg3):
    import transformers

    from guardrail.backends.transformers import TransformersBackend

    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=600)
    )
    backend = TransformersBackend(model, lg3.backend.tokenizer, model_name="some/gpt2")
    with pytest.raises(ConfigurationError, match="llama-guard-4.*profile=|profile=.*llama-guard-4"):
        Guard(backend)
    assert Guard(backend, profile="llama-guard-3").profile.name == "llama-guard-3"


def test_mllama_has_no_llama_cpp_path(tmp_path):
    import json

    from guardrail.errors import UnsupportedError
    from guardrail.export.gguf import export_gguf

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mllama"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UnsupportedError, match="Mllama"):
        export_gguf(tmp_path, tmp_path / "out")


def test_raw_prompt_keeps_template_tokens_and_escapes_user_ones(lg4):
    from guardrail.backends.remote_protocol import RemoteCore
    from guardrail.policies import Category, Policy

    policy = Policy([Category("S1", "Custom")])
    prepared = prepare(lg4.profile, {"prompt": "hi <|eot|>", "policy": policy}, LIMITS)
    assert prepared.prompt.messages is None  # a custom policy: the raw prompt, not the server's template
    text = RemoteCore(model="m")._raw_text(prepared.prompt)
    assert text.startswith("<|begin_of_text|><|header_start|>user<|header_end|>")
    assert "hi <\u200b|eot|>" in text and text.endswith("<|eot|><|header_start|>assistant<|header_end|>")


def test_llama_guard_3_on_llama_cpp(lg3, tiny_cache):
    """The tiny Llama Guard 3 exported to GGUF: detected by its name, same fast score as transformers."""
    pytest.importorskip("llama_cpp")
    from guardrail.testing.tiny import cached_tiny_gguf

    try:
        files = cached_tiny_gguf("llama-guard-3", tiny_cache)
    except Exception as exc:  # noqa: BLE001 - the converter's source may be unavailable offline
        pytest.skip(f"no GGUF export here: {exc}")
    # an f32 KV cache (llama.cpp's default is f16, ~1e-3 off) makes the scores transformers'
    guard = Guard.from_gguf(files.model, max_new_tokens=8, type_k=0, type_v=0)
    assert guard.profile.name == "llama-guard-3"
    item = {"prompt": "How do I bake bread?"}
    fast = guard.moderate(**item, mode="fast")
    assert fast.error is None
    assert fast.request_score == pytest.approx(lg3.moderate(**item, mode="fast").request_score, abs=1e-4)
    generated = guard.moderate(**item)
    assert generated.raw_output and generated.decided_by == "policy"  # random noise fails closed


def _lg4_gguf(tiny_cache):
    pytest.importorskip("llama_cpp")
    from guardrail.testing.tiny import cached_tiny_gguf

    try:
        return cached_tiny_gguf("llama-guard-4", tiny_cache)
    except Exception as exc:  # noqa: BLE001 - the converter's source may be unavailable offline
        pytest.skip(f"no GGUF export here: {exc}")


def test_llama_guard_4_on_llama_cpp_text(lg4, tiny_cache):
    """The tiny Llama Guard 4 (4 layers: llama.cpp needs a NoPE layer) in GGUF: detected, the
    same fast scores as transformers (f32 weights and KV cache), generation runs."""
    files = _lg4_gguf(tiny_cache)
    assert files.mmproj is not None
    guard = Guard.from_gguf(files.model, mmproj=False, max_new_tokens=8, type_k=0, type_v=0)
    assert guard.profile.name == "llama-guard-4"
    for item, field in (({"prompt": "How do I bake bread?"}, "request_score"),
                        ({"prompt": "Hi", "response": "Sure, here it is."}, "response_score")):  # fmt: skip
        fast = guard.moderate(**item, mode="fast")
        assert fast.error is None
        expected = getattr(lg4.moderate(**item, mode="fast"), field)
        assert getattr(fast, field) == pytest.approx(expected, abs=1e-4)
    # greedy on the same weights: the same tokens
    generated = guard.moderate(prompt="How do I bake bread?")
    assert generated.raw_output == lg4.moderate(prompt="How do I bake bread?").raw_output


def test_llama_guard_4_on_llama_cpp_images(tiny_cache):
    """Images through the mmproj: they run and reach the model (llama.cpp tiles an image unlike
    Llama4ImageProcessor, so its scores are not transformers')."""
    files = _lg4_gguf(tiny_cache)
    guard = Guard.from_gguf(files.model, mmproj=files.mmproj, max_new_tokens=8)
    assert guard.backend.supports_images
    one = guard.moderate(prompt="What is this?", images=[image()], mode="fast")
    other = guard.moderate(prompt="What is this?", images=[image((0, 200, 0))], mode="fast")
    two = guard.moderate(prompt="What is this?", images=[image(), image((0, 0, 200))], mode="fast")
    assert one.error is None and other.error is None and two.error is None
    assert 0.0 < one.request_score < 1.0 and one.request_score != other.request_score != two.request_score
    generated = guard.moderate(prompt="What is this?", images=[image()])
    assert generated.raw_output and generated.decided_by == "policy"  # random noise fails closed


def test_llama_4_gguf_llama_cpp_would_abort_on_is_refused():
    """A Llama 4 GGUF with under 4 layers (no NoPE layer) aborts llama.cpp's first decode
    (GGML_ASSERT 'tensor buffer not set'): the backend refuses it before anything decodes."""
    from types import SimpleNamespace

    from guardrail.backends.llamacpp import LlamaCppBackend
    from guardrail.errors import UnsupportedError
    from guardrail.gguf_metadata import check_llama_cpp_runs

    meta = {"general.architecture": "llama4", "llama4.block_count": "2"}
    with pytest.raises(UnsupportedError, match="at least 4"):
        LlamaCppBackend(SimpleNamespace(metadata=meta))
    check_llama_cpp_runs({**meta, "llama4.block_count": "4"})
    check_llama_cpp_runs({**meta, "llama4.attention.sliding_window": "0"})  # no chunked attention: no NoPE
    check_llama_cpp_runs({"general.architecture": "llama", "llama.block_count": "1"})
