"""Unusable model output is loud: parse rate and format reward of sampling and RL, warned and
reported per stage; `on_unusable_output: stop` stops the stage."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from guardrail.errors import TrainingError
from guardrail.training.rewards import format_reward, parsed_reward
from guardrail.training.rl import monitored_rewards
from tests.training.conftest import HANDFUL, tiny_rows, write_rows

OK = "<think>\nx\n</think>\n<result>\nRequest: harmful\nResponse: None\n</result>"


def test_parsed_reward_is_the_guards_parse_rate():
    none = OK.replace("Request: harmful", "Request: None")
    outs = [OK, none, "no answer", OK.replace("Response: None", "Response: harmful")]
    assert parsed_reward(outs, request_label=["harmful"] * 4, response_label=[None] * 4) == [1, 0, 0, 1]
    # with a response, its label is needed too
    assert parsed_reward([OK], request_label=["harmful"], response_label=["harmful"]) == [0.0]
    assert format_reward(outs) == [1.0, 1.0, 0.0, 1.0]
    assert monitored_rewards(["length_aware_safety"], None) == (
        ["length_aware_safety", "format", "parsed"],
        [1.0, 0.0, 0.0],
    )
    assert monitored_rewards(["format", "accuracy"], [0.5, 1.0]) == (
        ["format", "accuracy", "parsed"],
        [0.5, 1.0, 0.0],
    )


def _rl_config(base, data, out, **overrides):
    from guardrail.training import RLConfig

    settings = dict(
        model=str(base), data=[str(data)], output_dir=str(out), learning_rate=1e-5, max_steps=2,
        num_generations=4, per_device_train_batch_size=4, gradient_accumulation_steps=1,
        max_completion_length=16, bf16=False, logging_steps=1, save_steps=1000, disable_tqdm=True,
        num_threads=1, resume="never", seed=0, clip_schedule="constant", steps_per_generation=1,
    )  # fmt: skip
    settings.update(overrides)
    return RLConfig(**settings)


@pytest.mark.slow
def test_rl_on_an_untrained_model_warns_logs_the_parse_rate_and_can_stop(tiny_vl_path, tmp_path, caplog):
    """As met: RL from a model whose answers cannot be read. Every logged step carries the parse
    rate and format reward; the console says so loudly; `stop` saves no model."""
    from guardrail.training import train_rl
    from guardrail.training.cli import _describe

    data = write_rows(tmp_path / "d.jsonl", tiny_rows(HANDFUL))
    out = tmp_path / "rl"
    with caplog.at_level(logging.WARNING, logger="guardrail.training"):
        result = train_rl(_rl_config(tiny_vl_path, data, out))
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [m for m in steps if "rewards/parsed/mean" in m]
    assert len(logged) == 2 and all(m["rewards/parsed/mean"] == 0.0 for m in logged)
    assert all(m["rewards/format/mean"] == 0.0 for m in logged)
    assert result.parse_rate == 0.0 and result.format_reward == 0.0
    warnings = [r.getMessage() for r in caplog.records if "UNUSABLE MODEL OUTPUT" in r.getMessage()]
    assert any("at step 1" in w and "parse rate 0% < min_parse_rate 50%" in w for w in warnings)
    assert any("over the whole run" in w for w in warnings)
    assert "parse rate 0%, format reward 0.00" in _describe(result)

    stopped = tmp_path / "stopped"
    with pytest.raises(TrainingError, match="parse rate 0% .* no model saved"):
        train_rl(_rl_config(tiny_vl_path, data, stopped, on_unusable_output="stop", max_steps=4))
    assert not (stopped / "model.safetensors").exists()
    metrics = [json.loads(line) for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1]  # stopped after the first step


@pytest.mark.slow
def test_sampling_reports_its_parse_rate_and_can_stop(tiny_vl_path, tmp_path, caplog):
    from guardrail.training import RejectionConfig, rejection_sample
    from guardrail.training.cli import _describe

    data = write_rows(tmp_path / "d.jsonl", tiny_rows(HANDFUL))

    def config(out: Path, **kw):
        return RejectionConfig(
            model=str(tiny_vl_path), data=[str(data)], output_dir=str(out), k=2, max_new_tokens=8,
            batch_size=6, backend_options={"device": "cpu"}, disable_tqdm=True, num_threads=1, **kw,
        )  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="guardrail.training"):
        result = rejection_sample(config(tmp_path / "s"))
    assert result.stats.parse_rate == 0.0 and result.stats.parse_failures == 12
    assert json.loads((tmp_path / "s" / "stats.json").read_text())["parse_rate"] == 0.0
    assert "parse rate 0%: 12 of 12 answers unparsable" in _describe(result)
    assert any("sample: UNUSABLE MODEL OUTPUT over the stage" in r.getMessage() for r in caplog.records)
    with pytest.raises(TrainingError, match="parse rate 0%"):
        rejection_sample(config(tmp_path / "t", on_unusable_output="stop", resume=False))
