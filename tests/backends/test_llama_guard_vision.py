"""Llama Guard 3 11B Vision (Mllama) on a tiny random model of the real architecture
(``MllamaForConditionalGeneration`` + ``MllamaProcessor``): the prompt with its image is the
processor's own, byte for byte and token for token, with the same cross-attention inputs; fast
mode and generation with an image match plain transformers calls on the processor's output."""

from __future__ import annotations

import math

import pytest
from PIL import Image

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from guardrail import Guard  # noqa: E402
from guardrail.inputs import InputLimits, prepare  # noqa: E402
from guardrail.testing.tiny import cached_tiny_model  # noqa: E402
from tests.profiles.test_llama_guard import FIXTURES  # noqa: E402

LIMITS = InputLimits()
QUESTION = "What is in this picture?"


@pytest.fixture(scope="module")
def mllama_path(tiny_cache):
    return cached_tiny_model("llama-guard-3-vision", tiny_cache)


@pytest.fixture(scope="module")
def lg3v(mllama_path):
    return Guard.from_pretrained(mllama_path, device="cpu", max_new_tokens=6)


def image(color=(200, 30, 30), size=(64, 48)):
    return Image.new("RGB", size, color)


def _processor_inputs(guard, images, answer=""):
    """What the model's own chat template and processor give for the one-turn question."""
    processor = guard.backend.processor
    content = [{"type": "image"}] * len(images) + [{"type": "text", "text": QUESTION}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
    kwargs = {"images": images} if images else {}
    return text, processor(text=text + answer, return_tensors="pt", add_special_tokens=False, **kwargs)


def test_detected_as_llama_guard_3(lg3v):
    assert lg3v.backend.model.config.model_type == "mllama"
    assert lg3v.profile.name == "llama-guard-3" and lg3v.backend.image_processor is not None


def test_prompt_with_image_is_the_template_and_processor(lg3v):
    from transformers.utils.chat_template_utils import render_jinja_template

    from guardrail.backends import transformers_vision

    backend = lg3v.backend
    prepared = prepare(lg3v.profile, {"prompt": QUESTION, "images": [image()]}, LIMITS)
    text, expected = _processor_inputs(lg3v, [image()])
    assert text == prepared.prompt.text
    fixture = (FIXTURES / "llama-guard-3-1b.jinja").read_text()
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    assert render_jinja_template([conv], chat_template=fixture)[0][0] == text  # Meta's template itself
    assert text.count("<|image|>") == 1 and "S14" not in text

    ids, images, _ = backend.encode(prepared.prompt)
    assert ids == expected["input_ids"][0].tolist()
    batch = transformers_vision.mllama_batch(backend, [(ids, images, None)], torch.tensor([ids]))
    for key in ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask", "cross_attention_mask"):
        assert torch.equal(batch[key].to(expected[key].dtype), expected[key]), key
    # tokens from the image token on see its tiles; the tokens before it see none
    mask = batch["cross_attention_mask"][0, :, 0]
    at = ids.index(backend.model.config.image_token_index)
    assert mask[:at].sum() == 0 and bool((mask[at:, : images.num_tiles[0]] == 1).all())


def _manual_p_unsafe(guard, images):
    """P(unsafe) / (P(safe) + P(unsafe)) by plain forward passes on the processor's inputs."""
    tok = guard.backend.tokenizer
    model = guard.backend.model
    logps = []
    for answer in ("\n\nunsafe", "\n\nsafe"):
        text, inputs = _processor_inputs(guard, images, answer)
        prefix = len(tok(text, add_special_tokens=False)["input_ids"]) + len(
            tok("\n\n", add_special_tokens=False)["input_ids"]
        )
        with torch.inference_mode():
            logits = model(**inputs).logits.float().log_softmax(-1)[0]
        ids = inputs["input_ids"][0].tolist()
        logps.append(sum(float(logits[i - 1, ids[i]]) for i in range(prefix, len(ids))))
    return 1 / (1 + math.exp(logps[1] - logps[0]))


def test_fast_mode_with_an_image_is_the_models(lg3v):
    red = lg3v.moderate(prompt=QUESTION, images=[image()], mode="fast")
    assert red.error is None and red.path == "fast" and 0.0 < red.request_score < 1.0
    assert red.request_score == pytest.approx(_manual_p_unsafe(lg3v, [image()]), abs=1e-4)
    green = lg3v.moderate(prompt=QUESTION, images=[image((0, 200, 0))], mode="fast")
    assert abs(green.request_score - red.request_score) > 1e-3  # the image reaches the model
    text = lg3v.moderate(prompt=QUESTION, mode="fast")
    assert text.request_score == pytest.approx(_manual_p_unsafe(lg3v, []), abs=1e-4)


def test_batches_mixing_images_and_text_score_as_alone(lg3v):
    items = [
        {"prompt": QUESTION, "images": [image()]},
        {"prompt": QUESTION},
        {"prompt": QUESTION, "images": [image((0, 0, 200), (30, 90))]},
    ]
    together = lg3v.moderate_batch(items, mode="fast")
    alone = [lg3v.moderate(**item, mode="fast") for item in items]
    assert [v.request_score for v in together] == pytest.approx([v.request_score for v in alone], abs=1e-5)
    assert all(v.error is None for v in together)


def test_generation_with_an_image_is_the_models(lg3v):
    backend = lg3v.backend
    _, inputs = _processor_inputs(lg3v, [image()])
    with torch.inference_mode():
        out = backend.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    expected = backend.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    verdict = lg3v.moderate(prompt=QUESTION, images=[image()])
    assert verdict.raw_output == expected
    assert not verdict.parsed and not verdict.allowed  # a random model's noise fails closed


def test_one_image_at_most(lg3v):
    from guardrail.errors import TooManyImagesError

    with pytest.raises(TooManyImagesError):
        lg3v.moderate(prompt=QUESTION, images=[image(), image()])


def test_no_llama_cpp_export(mllama_path, tmp_path):
    from guardrail.errors import UnsupportedError
    from guardrail.export.gguf import export_gguf

    with pytest.raises(UnsupportedError, match="Mllama"):
        export_gguf(mllama_path, tmp_path / "out")
