"""ShieldGemma 2 on a tiny random ShieldGemma2ForImageClassification (transformers backend): the
family is detected, our token ids are the processor's, and our category scores are the model's
own ``probabilities`` (P(Yes) per image x policy) to 1e-4. Exported to GGUF through its Gemma 3
layout, llama.cpp gives the processor's token ids and the same scores to 1e-3."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from guardrail import Guard  # noqa: E402
from guardrail.errors import InputError  # noqa: E402
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


# ------------------------------------------------------------------ llama.cpp (Gemma 3 layout)
@pytest.fixture(scope="module")
def sg_gguf(sg_path):
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")
    from guardrail.export.gguf import converter_source
    from guardrail.testing.tiny import cached_tiny_gguf

    try:
        converter_source()
    except Exception as exc:  # noqa: BLE001 - offline without a cached converter: nothing to test
        pytest.skip(f"llama.cpp's converter is not available here: {exc}")
    return cached_tiny_gguf("shieldgemma-2", sg_path.parent)


@pytest.fixture(scope="module")
def sg_llama(sg_gguf):
    g = Guard.from_gguf(sg_gguf.model, sg_gguf.mmproj)
    yield g
    g.close()


def test_gguf_is_gemma3_with_its_mmproj_and_named_for_the_family(sg_gguf, sg_llama):
    from guardrail.gguf_metadata import read_gguf_metadata, read_vision_projector

    assert sg_gguf.mmproj is not None
    meta = read_gguf_metadata(sg_gguf.model, "general.")
    assert meta["general.architecture"] == "gemma3" and "shieldgemma-2" in meta["general.name"]
    assert read_vision_projector(sg_gguf.mmproj).projector_type == "gemma3"
    assert sg_llama.profile.name == "shieldgemma-2"  # detected from the GGUF's name


def test_llama_cpp_token_ids_are_the_processors(guard, sg_llama):
    inputs, _ = reference(guard, [NOISE])
    item = prepare(guard.profile, {"images": [NOISE]}, InputLimits()).item
    image_id = guard.backend.loaded_model.config.image_token_index
    for row, (_, prompt) in enumerate(guard.profile.category_prompts(item)):
        encoded = sg_llama.backend.encode(prompt)
        assert (
            encoded.token_ids(image_id)
            == inputs["input_ids"][row][inputs["attention_mask"][row].bool()].tolist()
        )


@pytest.mark.parametrize(
    "image", [RED, NOISE, NOISE.resize((28, 28))], ids=["red", "noise-resized", "noise-28px"]
)
def test_llama_cpp_scores_are_the_models_probabilities(guard, sg_llama, image):
    # NOISE (48x36) is resized to the tower's 28 px: the backend does it as the processor does
    _, expected = reference(guard, [image])
    v = sg_llama.moderate(images=[image])
    assert v.error is None and v.path == "fast"
    assert list(v.category_scores) == ["dangerous", "sexual", "violence"]
    assert list(v.category_scores.values()) == pytest.approx(expected, abs=1e-3)


def test_llama_cpp_custom_policy_and_several_images(guard, sg_llama):
    text = '"No Weapons": The image shall not contain firearms or knives.'
    _, expected = reference(guard, [NOISE], custom_policies={"weapons": text}, policies=["weapons"])
    v = sg_llama.moderate(images=[NOISE], policy=Policy([Category("weapons", "Weapons", text)]))
    assert v.category_scores == pytest.approx({"weapons": expected[0]}, abs=1e-3)
    _, red = reference(guard, [RED])
    _, noise = reference(guard, [NOISE])
    both = sg_llama.moderate(images=[RED, NOISE])
    assert list(both.category_scores.values()) == pytest.approx(list(map(max, red, noise)), abs=1e-3)


def test_repack_names_every_tensor_as_gemma3(sg_path, tmp_path):
    import json

    from safetensors import safe_open

    from guardrail.errors import ConfigurationError
    from guardrail.export.gemma3 import gemma3_tensor_name, repack_shieldgemma2

    out = repack_shieldgemma2(sg_path, tmp_path / "gemma3")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gemma3" and config["architectures"] == ["Gemma3ForConditionalGeneration"]
    assert "yes_token_index" not in config
    with (
        safe_open(str(out / "model.safetensors"), "pt") as f,
        safe_open(str(sg_path / "model.safetensors"), "pt") as g,
    ):
        names = set(f.keys())
        assert len(names) == len(set(g.keys()))
        assert {n.split(".")[0] for n in names} == {"language_model", "vision_tower", "multi_modal_projector"}
        assert "language_model.lm_head.weight" in names
        key = "model.model.vision_tower.embeddings.patch_embedding.weight"
        assert torch.equal(f.get_tensor(gemma3_tensor_name(key)), g.get_tensor(key))
    assert json.loads((out / "preprocessor_config.json").read_text())["image_seq_length"] == 4
    with pytest.raises(ConfigurationError, match="unexpected"):
        gemma3_tensor_name("classifier.weight")
