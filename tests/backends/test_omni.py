"""GuardReasoner-Omni on a tiny random Qwen2.5-Omni thinker (real architecture, stock processor):
the prompt is the reference's byte for byte, the token ids are the processor's, and text, image,
video and audio checks run through the transformers backend. Also: video through
GuardReasoner-VL (Qwen2.5-VL's native video input) on the tiny VL model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers", reason="the transformers extra is not installed")
pytest.importorskip("av", reason="the media extra is not installed")

from guardrail import Guard  # noqa: E402
from guardrail.inputs import InputLimits, prepare  # noqa: E402
from guardrail.profiles import get_profile  # noqa: E402
from tests.media_clips import mp4, wav  # noqa: E402

REFERENCE = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "guardreasoner_omni_reference.json").read_text()
)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def omni_path(tiny_cache) -> Path:
    from guardrail.testing import cached_tiny_model

    return cached_tiny_model("guardreasoner-omni", tiny_cache)


@pytest.fixture(scope="module")
def omni_guard(omni_path) -> Guard:
    import torch

    torch.set_num_threads(1)
    return Guard.from_pretrained(omni_path, device="cpu", max_new_tokens=6)


def reference_messages(modality: str, prompt: str, response: str | None) -> list[dict]:
    """The reference's messages (src/generate.py) for one sample of ``modality``."""
    content = [{"type": "text", "text": REFERENCE["user_head"]}]
    part = REFERENCE["media_parts"][modality]
    if part is not None:
        content.append(copy.deepcopy(part))
    content.append(
        {"type": "text", "text": REFERENCE["input_format"].format(prompt=prompt, response=response)}
    )
    return [{"role": "system", "content": REFERENCE["instruction"]}, {"role": "user", "content": content}]


FRAMES = {"frames": [np.full((48, 64, 3), 30 * i, np.uint8) for i in range(6)], "fps": 2}
AUDIO = {"array": (0.1 * np.sin(np.arange(24000) / 5)).astype(np.float32), "sampling_rate": 16000}
IMAGE = Image.new("RGB", (64, 48), (200, 20, 20))
MEDIA = {
    "text": {},
    "image": {"images": [IMAGE]},
    "video": {"videos": [FRAMES]},
    "audio": {"audios": [AUDIO]},
}


def test_instruction_is_the_reference_text():
    assert get_profile("guardreasoner-omni").system_prompt == REFERENCE["instruction"]


@pytest.mark.parametrize("modality", ["text", "image", "video", "audio"])
@pytest.mark.parametrize("response", [None, "Sure, here it is."])
def test_rendered_prompt_is_the_processor_chat_template_byte_for_byte(omni_guard, modality, response):
    processor = omni_guard.backend.processor
    expected = processor.apply_chat_template(
        reference_messages(modality, "How do I <|im_end|> do this?", response),
        **REFERENCE["apply_chat_template"],
    )
    item = {"prompt": "How do I <|im_end|> do this?", "response": response, **MEDIA[modality]}
    prepared = prepare(omni_guard.profile, item, InputLimits())
    assert prepared.prompt.text == expected
    # the messages for chat-completions backends render the same through the template
    messages = [dict(m) for m in prepared.prompt.messages]
    assert processor.apply_chat_template(messages, **REFERENCE["apply_chat_template"]) == expected


@pytest.mark.parametrize("modality", ["image", "video", "audio"])
def test_token_ids_and_media_tensors_are_the_processors(omni_guard, modality):
    import torch

    backend = omni_guard.backend
    prepared = prepare(omni_guard.profile, {"prompt": "what is this", **MEDIA[modality]}, InputLimits())
    prompt = prepared.prompt
    ids, media, _ = backend.encode(prompt)
    kwargs: dict = {}
    if modality == "image":
        kwargs["images"] = list(prompt.images)
    elif modality == "video":
        video = prompt.videos[0]
        kwargs.update(videos=[np.stack(video.frames)], do_sample_frames=False, do_resize=False, fps=video.fps)
    else:
        kwargs["audio"] = [prompt.audios[0].samples]
    out = backend.processor(text=[prompt.text], return_tensors="pt", **kwargs)
    assert ids == out["input_ids"][0].tolist()
    for key, value in media.tensors.items():
        assert torch.equal(value.float(), out[key].float()), key


def test_video_is_sampled_as_the_reference_samples_it():
    # 10 frames at 5 fps = 2 s -> 2 frames at 1 fps: the first and the last (qwen_vl_utils)
    item = prepare(
        get_profile("guardreasoner-omni"), {"prompt": "x", "videos": [mp4(10, 5)]}, InputLimits()
    ).item
    video = item.videos[0]
    assert video.indices == (0, 9) and video.fps == pytest.approx(1.0)
    assert [int(f.mean()) // 10 for f in video.frames] == [0, 17]  # frame i is grey level 20*i
    assert video.size == (56, 56)  # 64x48 -> multiples of 28 within 4..64 x 28x28


@pytest.mark.parametrize("modality", ["text", "image", "video", "audio"])
def test_checks_run_on_the_tiny_omni_thinker(omni_guard, modality):
    verdict = omni_guard.moderate(prompt="What is going on?", **MEDIA[modality])
    assert verdict.raw_output  # random weights: the text means nothing, but the model ran
    assert verdict.decided_by in ("model", "policy")


def test_a_batch_mixes_modalities_and_matches_single_checks(omni_guard):
    items = [{"prompt": "a", **MEDIA["video"]}, {"prompt": "b"}, {"prompt": "c", **MEDIA["audio"]},
             {"prompt": "d", **MEDIA["image"]}]  # fmt: skip
    batched = [v.raw_output for v in omni_guard.moderate_batch(items)]
    single = [omni_guard.moderate(**item).raw_output for item in items]
    assert batched == single


def test_fast_mode_scores_video(omni_guard):
    verdict = omni_guard.moderate(prompt="x", mode="fast", **MEDIA["video"])
    assert verdict.decided_by == "model"


def test_cache_keys_follow_the_decoded_media():
    from guardrail.cache import request_key

    profile = get_profile("guardreasoner-omni")

    def key(**media):
        return request_key("g", prepare(profile, {"prompt": "x", **media}, InputLimits()).item, "reasoning")

    clip = mp4(10, 5)
    frames = prepare(profile, {"prompt": "x", "videos": [clip]}, InputLimits()).item.videos[0].frames
    # the same frames at the same rate, from a file or as frames: one key
    assert key(videos=[clip]) == key(videos=[{"frames": list(frames), "fps": 1}])
    assert key(videos=[clip]) != key(videos=[mp4(20, 5)])
    # a flat grey clip at another size scales to the same frames: the same key (what the model sees)
    assert key(videos=[clip]) == key(videos=[mp4(10, 5, size=(64, 64))])
    assert key(videos=[clip]) != key(videos=[{"frames": list(frames), "fps": 2}])
    assert key(videos=[clip]) != key()
    silence = {"array": np.zeros(8000, np.float32), "sampling_rate": 16000}
    assert key(audios=[wav(0.5)]) == key(audios=[wav(0.5)])
    assert key(audios=[wav(0.5)]) != key(audios=[silence])
    assert key(audios=[silence]) == key(
        audios=[{"array": np.zeros(16000, np.float32), "sampling_rate": 32000}]
    )


# --------------------------------------------------------------- GuardReasoner-VL and video
def test_guardreasoner_vl_takes_video_through_qwen25vl(vl_backend):
    import torch

    guard = Guard(vl_backend, max_new_tokens=4)
    prepared = prepare(guard.profile, {"prompt": "what happens", "videos": [FRAMES]}, InputLimits())
    assert "Human user:\n<|vision_start|><|video_pad|><|vision_end|>\nwhat happens" in prepared.prompt.text
    ids, media, _ = vl_backend.encode(prepared.prompt)
    video = prepared.prompt.videos[0]
    out = vl_backend.processor(
        text=[prepared.prompt.text], videos=[np.stack(video.frames)], do_sample_frames=False, do_resize=False,
        fps=video.fps, return_tensors="pt",
    )  # fmt: skip
    assert ids == out["input_ids"][0].tolist()
    assert torch.equal(media.tensors["video_grid_thw"], out["video_grid_thw"])
    assert guard.moderate(prompt="what happens", videos=[FRAMES]).raw_output


def test_cli_checks_video_and_audio_files(omni_path, tmp_path):
    import subprocess

    from tests.conftest import PYTHON, REPO, subprocess_env

    clip, sound = tmp_path / "clip.mp4", tmp_path / "voice.wav"
    clip.write_bytes(mp4(10, 5))
    sound.write_bytes(wav(0.5))
    base = [PYTHON, "-m", "guardrail", "check", "--model", str(omni_path), "--device", "cpu", "--json",
            "--max-new-tokens", "4"]  # fmt: skip
    ok = subprocess.run([*base, "--prompt", "x", "--video", str(clip), "--audio", str(sound)],
                        capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=300)  # fmt: skip
    assert ok.returncode in (0, 1), ok.stderr
    assert json.loads(ok.stdout)["profile"] == "guardreasoner-omni"
    (tmp_path / "bad.mp4").write_bytes(mp4(10, 5)[:300])
    bad = subprocess.run([*base, "--video", str(tmp_path / "bad.mp4")],
                         capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "MediaError" in bad.stderr
