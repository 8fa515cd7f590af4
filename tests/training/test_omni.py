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


def test_rl_refuses_clip_rows_before_loading_a_model(omni_file):
    from guardrail.training.rl import rl_rows

    examples = load_examples(omni_file, profile="guardreasoner-omni").examples
    with pytest.raises(ConfigurationError, match="RL .* passes only images"):
        rl_rows(examples, OMNI)
    assert len(rl_rows([e for e in examples if not (e.videos or e.audios)], OMNI)) == 1
