"""GRPO end to end on the tiny model, with images; the dynamic clip range as the loss sees it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from guardrail.errors import ConfigurationError
from guardrail.training import RLConfig
from guardrail.training.clipping import ClipSchedule, schedule_value

STEPS = 4


def test_schedules():
    assert [schedule_value("constant", s, 5, 0.2, 0.1) for s in range(5)] == [0.2] * 5
    assert [round(schedule_value("linear", s, 5, 0.2, 0.1), 6) for s in range(5)] == [
        0.2,
        0.175,
        0.15,
        0.125,
        0.1,
    ]
    cosine = [schedule_value("cosine", s, 5, 0.2, 0.1) for s in range(5)]
    assert cosine[0] == pytest.approx(0.2) and cosine[-1] == pytest.approx(0.1)
    assert cosine[2] == pytest.approx(0.15) and cosine[1] == pytest.approx(
        0.1 + 0.1 * (1 + math.cos(math.pi / 4)) / 2
    )
    assert schedule_value("linear", 0, 1, 0.2, 0.1) == 0.2  # a one-step run stays at the start
    assert schedule_value("linear", 9, 5, 0.2, 0.1) == pytest.approx(0.1)  # past the end: the end value
    # default end: epsilon / 2; an asymmetric range scales its upper bound with the lower one
    assert ClipSchedule("linear", 0.2).at(4, 5) == pytest.approx((0.1, 0.1))
    assert ClipSchedule("linear", 0.2, 0.1, epsilon_high=0.28).at(4, 5) == pytest.approx((0.1, 0.14))
    with pytest.raises(ValueError, match="unknown clip schedule"):
        ClipSchedule("exponential")
    with pytest.raises(ValueError, match="epsilon"):
        ClipSchedule("linear", 1.5)


def test_config_checks_happen_before_anything_loads():
    with pytest.raises(ConfigurationError, match="several optimizer updates"):
        RLConfig(model="m", output_dir="o", gradient_accumulation_steps=2, steps_per_generation=2)
    RLConfig(
        model="m",
        output_dir="o",
        gradient_accumulation_steps=2,
        steps_per_generation=2,
        clip_schedule="constant",
    )
    assert RLConfig(model="m", output_dir="o", gradient_accumulation_steps=4).updates_per_generation() == 2
    assert (
        RLConfig(model="m", output_dir="o", steps_per_generation=1, num_iterations=3).updates_per_generation()
        == 3
    )
    for bad, match in [
        ({"num_generations": 1}, "num_generations"),
        ({"temperature": 0}, "temperature"),
        ({"length_beta": 0}, "length_beta"),
        ({"length_floor": 0.5, "length_beta": 0.2}, "length_floor"),
        ({"rewards": ["format", "nope"]}, "unknown"),
        ({"reward_weights": [1.0]}, "reward_weights"),
        ({"reward_weights": [0.0, 0.0, 0.0]}, "non-zero"),
        ({"clip_schedule": "wobbly"}, "clip_schedule"),
        ({"epsilon": 1.2}, "epsilon"),
        ({"loss_type": "sapo"}, "loss_type"),
        ({"use_vllm": True, "vllm_mode": "server"}, "vllm_server_base_url"),
        ({"max_steps": 0}, "max_steps"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            RLConfig(model="m", output_dir="o", **bad)


@pytest.fixture(scope="module")
def rl_run(sft_model, handful_file, tmp_path_factory):
    """A few GRPO steps from the SFT model, with a spy on the loss: it records the trainer's
    clip range and the clamp bounds the loss actually applies, per optimizer step."""
    import torch
    import trl

    from guardrail.training import train_rl

    calls: list[dict] = []
    original = trl.GRPOTrainer._compute_loss

    def spy(self, model, inputs):
        bounds = []
        real_clamp = torch.clamp

        def clamp(*args, **kwargs):
            if len(args) == 3 and all(isinstance(a, float) for a in args[1:]):
                bounds.append((args[1], args[2]))
            return real_clamp(*args, **kwargs)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(torch, "clamp", clamp)
            loss = original(self, model, inputs)
        calls.append(
            {
                "step": self.state.global_step,
                "eps": (self.epsilon_low, self.epsilon_high),
                "bounds": bounds,
                "off_policy": inputs.get("old_per_token_logps") is not None,
                "images": inputs.get("pixel_values") is not None,
            }
        )
        return loss

    out = tmp_path_factory.mktemp("rl") / "model"
    config = RLConfig(
        model=str(sft_model),
        data=[str(handful_file)],
        output_dir=str(out),
        learning_rate=1e-4,
        max_steps=STEPS,
        num_generations=4,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,  # steps_per_generation 2: two updates per rollout batch
        max_completion_length=64,
        temperature=1.2,
        bf16=False,
        logging_steps=1,
        save_steps=1000,
        disable_tqdm=True,
        num_threads=1,
        resume="never",
        seed=0,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trl.GRPOTrainer, "_compute_loss", spy)
        result = train_rl(config)
    return config, result, calls


@pytest.mark.slow
def test_clip_range_used_in_the_loss_changes_per_step_as_scheduled(rl_run):
    config, result, calls = rl_run
    assert result.global_step == STEPS
    assert sorted({c["step"] for c in calls}) == list(range(STEPS))
    expected = {s: config.clip().at(s, STEPS) for s in range(STEPS)}
    assert [round(expected[s][0], 6) for s in range(STEPS)] == [0.2, 0.166667, 0.133333, 0.1]
    for call in calls:
        low, high = expected[call["step"]]
        assert call["eps"] == pytest.approx((low, high))
        # the clamp the loss applies to the policy ratio uses exactly these bounds
        assert call["bounds"] and call["bounds"][0] == pytest.approx((1 - low, 1 + high))
    # two updates per generation batch: the rollouts' old log-probs are kept, so the policy ratio
    # (and clipping) acts on the second update
    assert all(c["off_policy"] for c in calls)
    assert any(c["images"] for c in calls)


@pytest.mark.slow
def test_rl_logs_metrics_per_step(rl_run):
    config, result, _ = rl_run
    lines = [json.loads(line) for line in Path(result.metrics_file).read_text().splitlines()]
    per_step = {m["step"]: m for m in lines if "loss" in m}
    assert sorted(per_step) == list(range(1, STEPS + 1))
    for step, m in per_step.items():
        assert m["clip_range/low"] == pytest.approx(config.clip().at(step - 1, STEPS)[0])
    generation_steps = [m for m in per_step.values() if "reward" in m]
    assert generation_steps  # reward parts and response length come with each generation batch
    for m in generation_steps:
        for key in (
            "rewards/format/mean",
            "rewards/accuracy/mean",
            "rewards/length_aware_safety/mean",
            "completions/mean_length",
        ):
            assert key in m and math.isfinite(m[key]), key
        assert m["reward"] == pytest.approx(
            m["rewards/length_aware_safety/mean"], abs=1e-4
        )  # weights 0, 0, 1


@pytest.mark.slow
def test_rl_model_loads_in_guard(rl_run):
    from guardrail import Guard

    config, result, _ = rl_run
    config_dir = Path(result.output_dir)
    info = json.loads((config_dir / "guardrail-training.json").read_text())
    assert info["stage"] == "rl" and info["global_step"] == STEPS
    guard = Guard.from_pretrained(config_dir, max_new_tokens=64, device="cpu")
    assert guard.profile.name == "guardreasoner-vl"
    from tests.training.conftest import TINY_DATA

    verdict = guard.moderate(
        prompt="What is in this picture?", images=[str(TINY_DATA.parent / "images" / "sky.png")]
    )
    assert verdict.model == str(config_dir) and verdict.raw_output
