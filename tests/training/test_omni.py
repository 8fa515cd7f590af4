"""Training on video and audio rows (GuardReasoner-Omni on the tiny random Qwen2.5-Omni thinker):
clip paths resolved like image paths, prompts encoded exactly as a check encodes them, the loss
on the answer only, and a few-step SFT run whose model Guard loads and runs on a clip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the transformers extra is not installed")
pytest.importorskip("av", reason="the media extra is not installed")

from guardrail.errors import ConfigurationError  # noqa: E402
from guardrail.profiles import GuardReasonerOmniProfile  # noqa: E402
from guardrail.training.data import load_examples  # noqa: E402
from tests.media_clips import mp4, wav  # noqa: E402
from tests.training.conftest import sft_settings, write_rows  # noqa: E402

pytestmark = pytest.mark.slow
OMNI = GuardReasonerOmniProfile()


def tone(seconds: float, freq: float) -> bytes:
    """A 16 kHz WAV of a sine at ``freq`` (two sounds the model must tell apart)."""
    import io
    import wave

    t = np.arange(int(seconds * 16000)) / 16000
    data = (0.4 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(data.tobytes())
    return buf.getvalue()


def omni_rows(root: Path) -> list[dict]:
    """Two clips and two sounds with the same text and opposite labels, and a text row; media in
    a folder beside the data file, referred to by relative paths."""
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    (media / "calm.mp4").write_bytes(mp4(frames=4, fps=2))
    (media / "fight.mp4").write_bytes(mp4(frames=6, fps=2, size=(96, 64)))
    (media / "low.wav").write_bytes(tone(0.5, 220))
    (media / "high.wav").write_bytes(wav(0.5))

    def row(i, labels, prompt="What happens here?", **clips):
        target = OMNI.answer(f"The clip is case {i}.", labels)
        return {"id": f"omni-{i}", "prompt": prompt, "labels": labels, "target": target, **clips}

    return [
        row(0, {"request": "unharmful"}, videos=["media/calm.mp4"]),
        row(1, {"request": "harmful"}, videos=["media/fight.mp4"]),
        row(2, {"request": "unharmful"}, audios=["media/low.wav"]),
        row(3, {"request": "harmful"}, audios=["media/high.wav"]),
        row(4, {"request": "unharmful", "response": "harmful"}, prompt="Any tips?", response="Here is how."),
    ]


@pytest.fixture(scope="module")
def omni_path(tiny_cache) -> Path:
    from guardrail.testing import cached_tiny_model

    return cached_tiny_model("guardreasoner-omni", tiny_cache)


@pytest.fixture
def omni_file(tmp_path) -> Path:
    rows = omni_rows(tmp_path / "data")
    return write_rows(tmp_path / "data" / "train.jsonl", rows)


def test_clip_rows_are_read_with_paths_beside_the_data_file(omni_file, tmp_path):
    loaded = load_examples(omni_file, profile="guardreasoner-omni", on_bad_row="fail")
    ex = {e.id: e for e in loaded.examples}
    assert ex["omni-1"].videos == (str(omni_file.parent / "media" / "fight.mp4"),)
    assert ex["omni-2"].audios == (str(omni_file.parent / "media" / "low.wav"),) and not ex["omni-2"].videos
    assert ex["omni-1"].modality == "text+video" and ex["omni-1"].labels == {"request": "harmful"}
    # written back as rows (the sample/augment stages) and read again: same clips
    row = ex["omni-3"].to_row(omni_file.parent)
    assert row["audios"] == ["media/high.wav"] and "videos" not in row

    bad = [
        {"id": "b1", "prompt": "x", "labels": {"request": "harmful"}, "videos": ["media/nope.mp4"]},
        {"id": "b2", "prompt": "x", "labels": {"request": "harmful"}, "videos": "media/calm.mp4"},
        {"id": "b3", "labels": {"request": "harmful"}, "audios": ["media/low.wav"]},  # clip-only: fine
    ]
    path = write_rows(omni_file.parent / "bad.jsonl", bad)
    loaded = load_examples(path, profile="guardreasoner-omni")
    assert [e.id for e in loaded.examples] == ["b3"]
    reasons = [i.reason for i in loaded.issues]
    assert "video file not found" in reasons[0] and "must be a list" in reasons[1]
    # GuardReasoner-VL takes video but not audio; the text guard neither
    vl = load_examples(path, profile="guardreasoner-vl")
    assert "the guardreasoner-vl profile takes no audios" in vl.issues[-1].reason
    text = load_examples(omni_file, profile="guardreasoner")
    assert {i.row for i in text.issues} == {1, 2, 3, 4}


def test_collator_encodes_prompts_as_a_check_does_and_trains_the_answer_only(omni_path, omni_file):
    import torch
    import transformers

    from guardrail import Guard
    from guardrail.inputs import prepare
    from guardrail.training.media import MediaCollator, media_sft_rows

    torch.set_num_threads(1)
    guard = Guard.from_pretrained(omni_path, device="cpu")
    model = transformers.AutoModelForImageTextToText.from_pretrained(omni_path)
    processor = transformers.AutoProcessor.from_pretrained(omni_path)
    examples = load_examples(omni_file, profile="guardreasoner-omni").examples
    collator = MediaCollator(model, processor, OMNI, max_length=4096)
    rows = media_sft_rows(examples)
    batch = collator(rows)
    assert {"pixel_values_videos", "video_grid_thw", "video_second_per_grid", "input_features"} <= set(batch)
    tok = processor.tokenizer
    for i, ex in enumerate(examples):
        mask = batch["attention_mask"][i].bool()
        ids, labels = batch["input_ids"][i][mask].tolist(), batch["labels"][i][mask].tolist()
        first = next(j for j, lab in enumerate(labels) if lab != -100)
        assert all(lab != -100 for lab in labels[first:])
        assert tok.decode(ids[first:]) == ex.target + "<|im_end|>\n"
        guard_ids, _, _ = guard.backend.encode(prepare(guard.profile, ex.request(), guard.limits).prompt)
        assert ids[:first] == guard_ids, ex.id
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss.item() > 0
    # a prompt longer than the cutoff cannot be cut inside its clip: a clear error
    from guardrail.errors import DataError

    with pytest.raises(DataError, match="over max_length 16"):
        MediaCollator(model, processor, OMNI, max_length=16)(rows[:1])


def test_tiny_omni_sft_run_on_clips_learns_and_guard_loads_it(omni_path, omni_file, tmp_path):
    from guardrail import Guard
    from guardrail.training import SFTConfig, train_sft

    out = tmp_path / "model"
    settings = sft_settings(max_steps=12, per_device_train_batch_size=5, logging_steps=2, max_length=2048)
    result = train_sft(SFTConfig(model=str(omni_path), profile="guardreasoner-omni", data=[str(omni_file)],
                                 output_dir=str(out), **settings))  # fmt: skip
    assert result.global_step == 12
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert len(losses) == 6 and losses[-1] < losses[0] / 2, losses
    guard = Guard.from_pretrained(out, device="cpu", max_new_tokens=48)
    assert guard.profile.name == "guardreasoner-omni"
    verdict = guard.moderate(
        prompt="What happens here?", videos=[str(omni_file.parent / "media" / "fight.mp4")]
    )
    assert verdict.raw_output.startswith("<think>"), verdict.raw_output


def test_rl_rows_of_clips_carry_the_request_for_the_inference_encoding(omni_path, omni_file, tmp_path):
    from guardrail.training import RLConfig, train_rl
    from guardrail.training.rl import rl_rows

    examples = load_examples(omni_file, profile="guardreasoner-omni").examples
    rows = {r["id"]: r for r in rl_rows(examples, OMNI)}
    assert rows["omni-1"]["video_files"] == [str(omni_file.parent / "media" / "fight.mp4")]
    assert rows["omni-2"]["audio_files"] and not rows["omni-2"]["video_files"]
    assert rows["omni-4"]["response"] == "Here is how." and rows["omni-1"]["request"] == "What happens here?"
    assert "images" not in rows["omni-1"]  # TRL would render and process it as a chat prompt
    assert rows["omni-1"]["prompt"] == OMNI.render(examples[1].moderation_input()).text
    # vLLM rollouts would get token ids without the clips: refused before a model loads
    config = RLConfig(model=str(omni_path), profile="guardreasoner-omni", data=[str(omni_file)],
                      output_dir=str(tmp_path / "o"), use_vllm=True)  # fmt: skip
    with pytest.raises(ConfigurationError, match="vLLM rollouts get token ids only"):
        train_rl(config)


def test_augment_keeps_clip_rows_whole_and_pairs_only_the_others(omni_file, tmp_path):
    """The RL data's concatenation would drop a clip and keep its label: clip rows stay originals."""
    from guardrail.training.augment import AugmentConfig, augment_dataset

    rows = [json.loads(line) for line in omni_file.read_text().splitlines()]
    rows.append({"id": "omni-5", "prompt": "Hello", "labels": {"request": "unharmful"}})
    data = write_rows(omni_file.parent / "aug.jsonl", rows)
    out = tmp_path / "aug"
    config = dict(data=[str(data)], profile="guardreasoner-omni", output_dir=str(out), seed=0)
    result = augment_dataset(AugmentConfig(fraction=0.5, **config))
    assert (result.originals, result.augmented) == (6, 6)
    made = load_examples(out / "augmented.jsonl", profile="guardreasoner-omni", on_bad_row="fail").examples
    assert [e.videos or e.audios for e in made[:6]] == [
        e.videos or e.audios for e in load_examples(data, profile="guardreasoner-omni").examples
    ]
    assert all(set(e.meta["from"]) == {"omni-4", "omni-5"} and not (e.videos or e.audios) for e in made[6:])
    write_rows(data, rows[:5])  # one row without clips: nothing to pair
    assert (
        augment_dataset(
            AugmentConfig(fraction=0.5, **{**config, "output_dir": str(tmp_path / "b")})
        ).augmented
        == 0
    )


RL_STEPS = 4
RL_SETTINGS = dict(
    learning_rate=1e-4, max_steps=RL_STEPS, num_generations=2, per_device_train_batch_size=2,
    steps_per_generation=2, max_completion_length=16, bf16=False, logging_steps=1, save_steps=1000,
    disable_tqdm=True, num_threads=1, resume="never", seed=0,
)  # fmt: skip  # rollouts of one row per old-log-prob chunk, two updates per generation batch


def spy_grpo(mp, keys: tuple[str, ...]) -> tuple[list, list, list]:
    """Record what TRL generates from (prompt ids, media field names, completion ids), what the
    rewards score, and the ``keys`` every log-prob forward hands the model."""
    import trl

    rollouts, scored, forwards = [], [], []
    generate, rewards = trl.GRPOTrainer._generate_single_turn, trl.GRPOTrainer._calculate_rewards
    logps = trl.GRPOTrainer._get_per_token_logps_and_entropies

    def spy_generate(self, prompt_ids, images, fields, *args, **kwargs):
        completion_ids, lp = generate(self, prompt_ids, images, fields, *args, **kwargs)
        rollouts.append({"prompt_ids": [list(p) for p in prompt_ids], "fields": set(fields),
                         "completion_ids": completion_ids})  # fmt: skip
        return completion_ids, lp

    def spy_rewards(self, inputs, prompts, completions, completion_ids_list):
        scored.append((list(completions), [list(c) for c in completion_ids_list]))
        return rewards(self, inputs, prompts, completions, completion_ids_list)

    def spy_logps(self, model, input_ids, *args, **kwargs):
        def record(module, a, kw):  # runs after the trainer's own hook: sees what the model gets
            forwards.append({"ids": kw["input_ids"].clone(), **{k: kw.get(k) for k in keys}})

        handle = model.register_forward_pre_hook(record, with_kwargs=True)
        try:
            return logps(self, model, input_ids, *args, **kwargs)
        finally:
            handle.remove()

    mp.setattr(trl.GRPOTrainer, "_generate_single_turn", spy_generate)
    mp.setattr(trl.GRPOTrainer, "_calculate_rewards", spy_rewards)
    mp.setattr(trl.GRPOTrainer, "_get_per_token_logps_and_entropies", spy_logps)
    return rollouts, scored, forwards


def check_rollouts(rollouts, scored, want: dict, fields: set, tok) -> None:
    """Two generation batches of both rows x 2 rollouts, prompts encoded as Guard encodes them,
    with the media fields; the rewards scored the generated completions themselves."""
    assert len(rollouts) == 2 and len(scored) == 2
    for rollout in rollouts:
        assert sorted(map(tuple, rollout["prompt_ids"])) == sorted(tuple(ids) for ids in want.values()
                                                                   for _ in range(2))  # fmt: skip
        assert fields <= rollout["fields"], rollout["fields"]
    for rollout, (completions, ids) in zip(rollouts, scored, strict=True):
        assert ids == rollout["completion_ids"] and any(ids)
        assert completions == [tok.decode(c, skip_special_tokens=True) for c in ids]


def test_tiny_omni_rl_run_on_a_video_and_an_audio_row(omni_path, omni_file, tmp_path):
    """GRPO on a video row and an audio row: rollouts generated from the prompts a check sends
    (clips included), rewards computed on those generations, every log-prob forward given the
    clips of its rows, and a saved model that Guard loads and runs on a clip."""
    import torch

    from guardrail import Guard
    from guardrail.inputs import prepare
    from guardrail.training import RLConfig, train_rl

    rows = [json.loads(line) for line in omni_file.read_text().splitlines()]
    data = write_rows(omni_file.parent / "rl.jsonl", [r for r in rows if r["id"] in ("omni-1", "omni-2")])
    examples = load_examples(data, profile="guardreasoner-omni").examples
    guard = Guard.from_pretrained(omni_path, device="cpu")
    want = {ex.id: guard.backend.encode(prepare(guard.profile, ex.request(), guard.limits).prompt)[0]
            for ex in examples}  # fmt: skip
    tok = guard.backend.tokenizer
    video_id, audio_id = (tok.convert_tokens_to_ids(t) for t in ("<|VIDEO|>", "<|AUDIO|>"))

    out = tmp_path / "model"
    config = RLConfig(model=str(omni_path), profile="guardreasoner-omni", data=[str(data)],
                      output_dir=str(out), **RL_SETTINGS)  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        rollouts, scored, forwards = spy_grpo(mp, ("pixel_values_videos", "video_grid_thw", "input_features"))
        result = train_rl(config)
    assert result.global_step == RL_STEPS

    check_rollouts(rollouts, scored, want, {"pixel_values_videos", "video_grid_thw", "video_second_per_grid",
                                            "input_features", "feature_attention_mask"}, tok)  # fmt: skip
    # every forward (old log-probs per chunk of one row's rollouts, the loss on shuffled pairs)
    # got exactly the clips of its rows: the model checks the feature counts against the tokens
    assert len(forwards) >= 2 * 2 + RL_STEPS
    for f in forwards:
        has_video, has_audio = bool((f["ids"] == video_id).any()), bool((f["ids"] == audio_id).any())
        assert has_video == (f["pixel_values_videos"] is not None)
        assert has_audio == (f["input_features"] is not None)
        if has_video:
            assert int((f["ids"] == video_id).sum()) == int(f["video_grid_thw"].prod(-1).sum()) // 4
    assert any(f["pixel_values_videos"] is not None and f["input_features"] is None for f in forwards)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [m for m in metrics if "reward" in m]
    assert logged and all(torch.isfinite(torch.tensor(m["rewards/format/mean"])) for m in logged)

    trained = Guard.from_pretrained(out, device="cpu", max_new_tokens=16)
    assert trained.profile.name == "guardreasoner-omni"
    verdict = trained.moderate(
        prompt="What happens here?", videos=[str(omni_file.parent / "media" / "fight.mp4")]
    )
    assert verdict.model == str(out) and verdict.raw_output is not None


def test_tiny_vl_rl_run_on_a_video_and_an_image_row(tiny_vl_path, omni_file, tmp_path):
    """GuardReasoner-VL on video (Qwen2.5-VL's own video input) next to an image row: the same
    inference encoding, with the M-RoPE marks of video (2) and image (1) placeholders."""
    from guardrail import Guard
    from guardrail.inputs import prepare
    from guardrail.training import RLConfig, train_rl
    from tests.training.conftest import TINY_DATA

    vl = "guardreasoner-vl"
    rows = [
        {"id": "v", "prompt": "What happens here?", "labels": {"request": "harmful"},
         "videos": [str(omni_file.parent / "media" / "fight.mp4")]},
        {"id": "i", "prompt": "What is in this picture?", "labels": {"request": "unharmful"},
         "images": [str(TINY_DATA.parent / "images" / "sky.png")]},
    ]  # fmt: skip
    data = write_rows(tmp_path / "vl.jsonl", rows)
    examples = load_examples(data, profile=vl, on_bad_row="fail").examples
    guard = Guard.from_pretrained(tiny_vl_path, device="cpu")
    want = {ex.id: guard.backend.encode(prepare(guard.profile, ex.request(), guard.limits).prompt)[0]
            for ex in examples}  # fmt: skip
    tok = guard.backend.tokenizer
    video_id, image_id = (tok.convert_tokens_to_ids(t) for t in ("<|video_pad|>", "<|image_pad|>"))

    config = RLConfig(model=str(tiny_vl_path), profile=vl, data=[str(data)], output_dir=str(tmp_path / "m"),
                      **RL_SETTINGS)  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        keys = ("pixel_values_videos", "pixel_values", "mm_token_type_ids", "second_per_grid_ts")
        rollouts, scored, forwards = spy_grpo(mp, keys)
        result = train_rl(config)
    assert result.global_step == RL_STEPS
    check_rollouts(rollouts, scored, want, {"pixel_values_videos", "video_grid_thw", "second_per_grid_ts",
                                            "pixel_values", "image_grid_thw", "mm_token_type_ids"}, tok)  # fmt: skip
    for f in forwards:
        has_video, has_image = bool((f["ids"] == video_id).any()), bool((f["ids"] == image_id).any())
        assert has_video == (f["pixel_values_videos"] is not None) == (f["second_per_grid_ts"] is not None)
        assert has_image == (f["pixel_values"] is not None)
        marks = f["mm_token_type_ids"]
        assert marks.tolist() == (2 * (f["ids"] == video_id) + (f["ids"] == image_id)).long().tolist()
    assert any(f["pixel_values"] is None for f in forwards)  # a chunk of the video row's rollouts only
