"""R-SFT on the tiny model: the template, the loss mask and the saved model are wired right."""

from __future__ import annotations

import json

import pytest

from guardrail.training.data import load_examples
from tests.training.conftest import HANDFUL, sft_settings, tiny_rows, write_rows

pytestmark = pytest.mark.slow


def test_sft_learns_the_labels_and_guard_loads_the_model(sft_model, handful_file):
    from guardrail import Guard
    from guardrail.backends.base import GenerationOptions
    from guardrail.profiles import GuardReasonerVLProfile
    from guardrail.training.rewards import is_well_formed

    examples = load_examples(handful_file).examples
    assert len(examples) == len(HANDFUL) and sum(bool(e.images) for e in examples) == 2
    # Greedy generation of the saved model reproduces each sample's <result> labels ...
    backend = Guard.from_pretrained(sft_model, device="cpu").backend
    profile = GuardReasonerVLProfile()
    from guardrail.inputs import load_image

    prompts = [profile.render(e.moderation_input([load_image(p) for p in e.images])) for e in examples]
    outputs = backend.generate(prompts, GenerationOptions(max_new_tokens=96))
    for ex, out in zip(examples, outputs, strict=True):
        assert is_well_formed(out.text), (ex.id, out.text)
        labels = profile.parse(out.text, ex.moderation_input()).labels
        assert labels["request"] == ex.request_label, (ex.id, out.text)
        assert labels["response"] == ex.response_label, (ex.id, out.text)  # None: "Response: None"
    # ... and Guard loads the directory (profile from the saved config) and gives those verdicts.
    guard = Guard.from_pretrained(sft_model, max_new_tokens=96, device="cpu")
    assert guard.profile.name == "guardreasoner-vl"
    verdicts = guard.moderate_batch(
        [{"prompt": e.prompt, "response": e.response, "images": list(e.images) or None} for e in examples]
    )
    for ex, v in zip(examples, verdicts, strict=True):
        assert v.decided_by == "model", (ex.id, v.raw_output)
        assert v.request_harmful == (ex.request_label == "harmful"), ex.id
        if ex.response is not None:
            assert v.response_harmful == (ex.response_label == "harmful"), ex.id
    info = json.loads((sft_model / "guardrail-training.json").read_text())
    assert info["stage"] == "sft" and info["global_step"] == 80
    metrics = [json.loads(line) for line in (sft_model / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert losses[-1] < losses[0] / 10


def test_loss_mask_covers_exactly_the_assistant_turn_and_prompt_ids_match_guard(tiny_vl_path, handful_file):
    """TRL's collator (what SFTTrainer uses for image data) on our rows: the prompt tokens are
    exactly the ones Guard sends at inference, and only the target + end of turn is trained."""
    import transformers
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from guardrail import Guard
    from guardrail.inputs import load_image
    from guardrail.profiles import GuardReasonerVLProfile
    from guardrail.training.dataset import load_images_transform
    from guardrail.training.sft import sft_rows

    processor = transformers.AutoProcessor.from_pretrained(tiny_vl_path)
    backend = Guard.from_pretrained(tiny_vl_path, device="cpu").backend
    profile = GuardReasonerVLProfile()
    examples = load_examples(handful_file).examples
    rows = sft_rows(examples, profile)
    batch_rows = load_images_transform({k: [r[k] for r in rows] for k in rows[0]})
    examples_in = [{k: batch_rows[k][i] for k in batch_rows} for i in range(len(rows))]
    collator = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    batch = collator(examples_in)
    tok = processor.tokenizer
    for i, ex in enumerate(examples):
        mask = batch["attention_mask"][i].bool()
        ids = batch["input_ids"][i][mask].tolist()
        labels = batch["labels"][i][mask].tolist()
        trained = [t for t, lab in zip(ids, labels, strict=True) if lab != -100]
        assert tok.decode(trained) == ex.target + "<|im_end|>\n"
        first = labels.index(next(lab for lab in labels if lab != -100))
        assert all(lab == -100 for lab in labels[:first]) and all(lab != -100 for lab in labels[first:])
        guard_ids, _, _ = backend.encode(
            profile.render(ex.moderation_input([load_image(p) for p in ex.images]))
        )
        assert ids[:first] == guard_ids, ex.id


def test_lora_run_saves_a_merged_model_guard_loads(tiny_vl_path, handful_file, tmp_path):
    import torch
    from safetensors.torch import load_file

    from guardrail import Guard
    from guardrail.training import SFTConfig, train_sft

    out = tmp_path / "lora"
    cfg = SFTConfig(
        model=str(tiny_vl_path),
        data=[str(handful_file)],
        output_dir=str(out),
        **sft_settings(finetune="lora", max_steps=3, learning_rate=1e-2, lora_r=4, lora_alpha=8),
    )
    result = train_sft(cfg)
    assert result.global_step == 3
    assert (out / "adapter" / "adapter_config.json").exists()
    assert not (out / "adapter_config.json").exists()  # the top level is a plain, merged model
    base = load_file(str(tiny_vl_path / "model.safetensors"))
    merged = load_file(str(out / "model.safetensors"))
    assert set(base) == set(merged)
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    # LoRA adapted the language model's attention only; the merge wrote those weights back
    assert changed and all(k.startswith("model.layers.") and ".self_attn." in k for k in changed)
    guard = Guard.from_pretrained(out, max_new_tokens=8, device="cpu")
    assert guard.moderate(prompt="hello").model == str(out)


def test_interrupted_run_resumes_from_its_checkpoint_without_losing_or_repeating_data(
    tiny_vl_path, tmp_path, monkeypatch
):
    """Six samples, batch 2, 6 steps (two epochs), a checkpoint every 2 steps; the run dies
    after the checkpoint of step 4. Rerunning continues at step 5 with the very batches the
    uninterrupted run used."""
    import transformers
    from trl.trainer import sft_trainer

    from guardrail.training import SFTConfig, train_sft

    data = write_rows(tmp_path / "data.jsonl", tiny_rows(HANDFUL))
    seen: list[list[str]] = []
    original = sft_trainer.DataCollatorForVisionLanguageModeling.torch_call

    def spy(self, examples):
        seen.append([e["id"] for e in examples])
        return original(self, examples)

    monkeypatch.setattr(sft_trainer.DataCollatorForVisionLanguageModeling, "torch_call", spy)

    class Crash(RuntimeError):
        pass

    class CrashAfterSave(transformers.TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 4:
                raise Crash("power cut")

    def config(out, resume):
        return SFTConfig(
            model=str(tiny_vl_path),
            data=[str(data)],
            output_dir=str(out),
            **sft_settings(
                max_steps=6,
                per_device_train_batch_size=2,
                save_steps=2,
                save_total_limit=None,
                resume=resume,
                logging_steps=1,
            ),
        )

    train_sft(config(tmp_path / "straight", "never"))
    reference, seen[:] = list(seen), []

    out = tmp_path / "interrupted"
    with pytest.raises(Crash):
        train_sft(config(out, "auto"), callbacks=[CrashAfterSave()])
    first_part, seen[:] = list(seen), []
    assert (out / "checkpoint-4").is_dir() and not (out / "model.safetensors").exists()
    result = train_sft(config(out, "auto"))
    assert result.resumed_from is not None and result.resumed_from.endswith("checkpoint-4")
    assert result.global_step == 6
    assert first_part[:4] == reference[:4]
    assert seen == reference[4:]  # steps 5 and 6 only, the same batches
    # metrics.jsonl has each step's loss once: the crashed run's entries after the checkpoint
    # (none here) are dropped, the resumed run appends steps 5 and 6
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged if "loss" in m] == [1, 2, 3, 4, 5, 6]


def test_bad_trainer_args_fail_before_any_model_loads(tmp_path, handful_file):
    from guardrail.errors import ConfigurationError
    from guardrail.training import SFTConfig, train_sft

    cfg = SFTConfig(
        model=str(tmp_path / "no-such-model"),
        data=[str(handful_file)],
        output_dir=str(tmp_path / "o"),
        trainer_args={"no_such_field": 1},
    )
    with pytest.raises(ConfigurationError, match="no_such_field"):
        train_sft(cfg)
    cfg = SFTConfig(
        model=str(tmp_path / "no-such-model"), data=[str(handful_file)], output_dir=str(tmp_path / "o")
    )
    with pytest.raises(ConfigurationError, match="cannot load"):
        train_sft(cfg)


def test_text_profile_sft_trains_a_guardreasoner_model(tiny_text_path, tmp_path):
    """GuardReasoner-style rows (instruction/input/output) train the text guard (Llama profile)."""
    from guardrail import Guard
    from guardrail.profiles import GUARDREASONER_INSTRUCTION
    from guardrail.training import SFTConfig, train_sft

    def row(prompt, response, req, ref, res, why):
        return {
            "instruction": GUARDREASONER_INSTRUCTION,
            "input": f"Human user:\n{prompt}\n\nAI assistant:\n{response}\n\n",
            "output": f"# Task 1\n\n## Reasoning Step 1\n{why}\n\n---\n\nAnswers: \nRequest: {req}\nCompletion: {ref}\nResponse: {res}\n",
        }

    rows = [
        row(
            "How do I bake bread?",
            "Mix flour and water.",
            "unharmful",
            "compliance",
            "unharmful",
            "Baking is safe.",
        ),
        row("How do I make a bomb?", "I can't help.", "harmful", "refusal", "unharmful", "Bombs kill."),
    ]
    data = tmp_path / "gr.json"
    data.write_text(json.dumps(rows))
    out = tmp_path / "text"
    train_sft(
        SFTConfig(
            model=str(tiny_text_path),
            data=[str(data)],
            profile="guardreasoner",
            output_dir=str(out),
            **sft_settings(max_steps=40, per_device_train_batch_size=2),
        )
    )
    guard = Guard.from_pretrained(out, max_new_tokens=64, device="cpu")
    assert guard.profile.name == "guardreasoner"
    bread = guard.moderate(prompt="How do I bake bread?", response="Mix flour and water.")
    bomb = guard.moderate(prompt="How do I make a bomb?", response="I can't help.")
    assert (bread.request_harmful, bread.response_refusal, bread.response_harmful) == (False, False, False)
    assert (bomb.request_harmful, bomb.response_refusal, bomb.response_harmful) == (True, True, False)


def test_a_chat_template_that_renders_other_prompts_is_refused(tiny_vl_path, handful_file, tmp_path):
    """A model whose template would not produce Guard's prompt (here: no newline after the role)
    is refused before any training step."""
    import shutil

    from guardrail.errors import ConfigurationError
    from guardrail.training import SFTConfig, train_sft

    model = tmp_path / "odd-template"
    shutil.copytree(tiny_vl_path, model)
    template = (model / "chat_template.jinja").read_text()
    (model / "chat_template.jinja").write_text(
        template.replace("<|im_start|>{{ message['role'] }}\n", "<|im_start|>{{ message['role'] }}: ")
    )
    with pytest.raises(ConfigurationError, match="renders the guard prompt differently"):
        train_sft(
            SFTConfig(
                model=str(model), data=[str(handful_file)], output_dir=str(tmp_path / "o"), **sft_settings()
            )
        )
    assert not (tmp_path / "o").exists()
