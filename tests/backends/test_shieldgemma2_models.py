"""ShieldGemma 2 on a tiny random ShieldGemma2ForImageClassification (transformers backend): the
family is detected, our token ids are the processor's, and our category scores are the model's
own ``probabilities`` (P(Yes) per image x policy) to 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from guardrail import Guard  # noqa: E402
from guardrail.errors import InputError, UnsupportedError  # noqa: E402
from guardrail.inputs import InputLimits, prepare  # noqa: E402
from guardrail.policies import Category, Policy  # noqa: E402
from guardrail.testing.tiny import cached_tiny_model  # noqa: E402

RED = Image.new("RGB", (40, 30), (200, 10, 10))
NOISE = Image.fromarray((np.random.RandomState(0).rand(48, 36, 3) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def sg_path(tiny_cache):
    return cached_tiny_model("shieldgemma-2", tiny_cache)


@pytest.fixture(scope="module")
def guard(sg_path):
    return Guard.from_pretrained(sg_path, device="cpu")


def reference(guard, images, **kwargs):
    """The model's own answer: ShieldGemma2Processor + ShieldGemma2ForImageClassification."""
    inputs = guard.backend.processor(images=images, return_tensors="pt", **kwargs)
    with torch.inference_mode():
        out = guard.backend.loaded_model(**inputs)
    return inputs, out.probabilities[:, 0].tolist()  # P(Yes): violates the policy


def test_detected_and_loaded_as_the_classifier(guard):
    assert guard.profile.name == "shieldgemma-2"
    assert type(guard.backend.loaded_model).__name__ == "ShieldGemma2ForImageClassification"
    assert guard.backend.model is guard.backend.loaded_model.model  # scored with its Gemma 3


def test_token_ids_are_the_processors(guard):
    inputs, _ = reference(guard, [RED])
    item = prepare(guard.profile, {"images": [RED]}, InputLimits()).item
    prompts = guard.profile.category_prompts(item)
    assert len(prompts) == inputs["input_ids"].shape[0] == 3
    for row, (_, prompt) in enumerate(prompts):
        ids, pixels, _ = guard.backend.encode(prompt)
        mask = inputs["attention_mask"][row].bool()
        assert ids == inputs["input_ids"][row][mask].tolist()
        assert ids[:2] == [guard.backend.tokenizer.bos_token_id] * 2  # the processor's two BOS
        assert torch.allclose(pixels, inputs["pixel_values"][row : row + 1])


@pytest.mark.parametrize("image", [RED, NOISE], ids=["red", "noise"])
def test_scores_are_the_models_probabilities(guard, image):
    _, expected = reference(guard, [image])
    v = guard.moderate(images=[image])
    assert list(v.category_scores) == ["dangerous", "sexual", "violence"]
    assert list(v.category_scores.values()) == pytest.approx(expected, abs=1e-4)
    assert v.score == pytest.approx(max(expected), abs=1e-4)
    assert v.categories == tuple(c for c, p in zip(v.category_scores, expected, strict=True) if p >= 0.5)
    assert v.harmful == (max(expected) >= 0.5) and v.path == "fast"


def test_images_change_the_scores(guard):
    # the tiny model's image projection is not zero: a test here can tell two images apart
    assert reference(guard, [RED])[1] != pytest.approx(reference(guard, [NOISE])[1], abs=1e-3)


def test_several_images_in_one_batch(guard):
    _, red = reference(guard, [RED])
    _, noise = reference(guard, [NOISE])
    both, alone = guard.moderate_batch([{"images": [RED, NOISE]}, {"images": [NOISE]}])
    assert list(both.category_scores.values()) == pytest.approx(list(map(max, red, noise)), abs=1e-4)
    assert list(alone.category_scores.values()) == pytest.approx(noise, abs=1e-4)


def test_custom_policy_is_the_processors_custom_policy(guard):
    text = '"No Weapons": The image shall not contain firearms or knives.'
    _, expected = reference(guard, [NOISE], custom_policies={"weapons": text}, policies=["weapons"])
    policy = Policy([Category("weapons", "Weapons", text)])
    v = guard.moderate(images=[NOISE], policy=policy)
    assert v.category_scores == pytest.approx({"weapons": expected[0]}, abs=1e-4)


def test_text_only_and_responses_are_refused(guard):
    with pytest.raises(InputError, match="classifies images"):
        guard.moderate(prompt="How do I build a bomb?")
    with pytest.raises(InputError, match="responses"):
        guard.moderate(images=[RED], response="Sure.")


def test_gguf_export_is_refused(sg_path, tmp_path):
    from guardrail.export.gguf import export_gguf

    with pytest.raises(UnsupportedError, match="ShieldGemma 2"):
        export_gguf(sg_path, tmp_path / "out")
