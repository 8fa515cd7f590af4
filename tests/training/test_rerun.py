"""Rerunning a recipe into the same output_dir: a finished stage is reused only for the very
settings and data it ran with; anything else is refused with the differences and the flags
that redo it (real runs of the tiny SFT stage through the command line)."""

from __future__ import annotations

import json

import pytest

from guardrail.training.cli import main
from tests.training.conftest import HANDFUL, tiny_rows, write_rows

pytestmark = pytest.mark.slow


def _run(model, data, out, *extra):
    return main(
        [
            "run", "--model", str(model), "--data", str(data), "--output_dir", str(out),
            "--stages", "sft", "--seed", "0", "--num_threads", "1",
            "--sft.max_steps", "2", "--sft.per_device_train_batch_size", "2", "--sft.learning_rate", "1e-3",
            "--sft.bf16", "false", "--sft.disable_tqdm", "true", "--sft.save_steps", "1",
            *extra,
        ]
    )  # fmt: skip


def _weights(path):
    return (path / "model.safetensors").read_bytes()


def test_changed_settings_or_data_are_refused_until_redone(tiny_vl_path, tmp_path, capsys):
    data = write_rows(tmp_path / "data.jsonl", tiny_rows(HANDFUL))
    out = tmp_path / "run"
    assert _run(tiny_vl_path, data, out) == 0
    first = _weights(out / "sft")
    record = json.loads((out / "sft" / ".stage-done.json").read_text())
    assert record["fingerprint"]["inputs"][f"data file {data}"].startswith("sha256:")
    capsys.readouterr()

    # the same command again: reused (settings that do not shape the result may differ)
    assert _run(tiny_vl_path, data, out, "--sft.logging_steps", "5", "--num_threads", "2") == 0
    assert "(already done)" in capsys.readouterr().out

    # another learning rate: refused, naming the change and the way out; nothing is touched
    assert _run(tiny_vl_path, data, out, "--sft.learning_rate", "1e-2") == 2
    err = capsys.readouterr().err
    assert "sft.learning_rate: 0.001 -> 0.01" in err
    assert "--redo sft" in err and "--force true" in err
    assert _weights(out / "sft") == first

    # the data file edited in place: refused too
    write_rows(data, tiny_rows(HANDFUL[:4]))
    assert _run(tiny_vl_path, data, out) == 2
    assert f"data file {data}: contents changed" in capsys.readouterr().err

    # --redo sft trains from scratch with the new settings (not from the old checkpoints)
    assert _run(tiny_vl_path, data, out, "--sft.learning_rate", "1e-2", "--redo", "sft") == 0
    captured = capsys.readouterr()
    assert "(already done)" not in captured.out and "2 steps" in captured.out
    assert _weights(out / "sft") != first
    record = json.loads((out / "sft" / ".stage-done.json").read_text())
    assert record["config"]["learning_rate"] == 0.01 and record["result"]["resumed_from"] is None
    assert _run(tiny_vl_path, data, out, "--sft.learning_rate", "1e-2") == 0  # now that is done


def test_an_interrupted_stage_is_not_resumed_with_other_settings(tiny_vl_path, tmp_path, capsys):
    import transformers

    from guardrail.training.recipe import run_pipeline

    data = write_rows(tmp_path / "data.jsonl", tiny_rows(HANDFUL))
    out = tmp_path / "run"

    class Crash(RuntimeError):
        pass

    class CrashAfterSave(transformers.TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise Crash("power cut")

    recipe = {
        "model": str(tiny_vl_path), "data": [str(data)], "output_dir": str(out), "stages": ["sft"],
        "num_threads": 1, "seed": 0,
        "sft": {"max_steps": 2, "per_device_train_batch_size": 2, "save_steps": 1, "bf16": False,
                "disable_tqdm": True, "learning_rate": 1e-3},
    }  # fmt: skip
    with pytest.raises(Crash):
        run_pipeline(recipe, stage_kwargs={"sft": {"callbacks": [CrashAfterSave()]}})
    assert (out / "sft" / "checkpoint-1").is_dir()
    assert _run(tiny_vl_path, data, out, "--sft.learning_rate", "1e-2") == 2
    err = capsys.readouterr().err
    assert "was interrupted" in err and "sft.learning_rate: 0.001 -> 0.01" in err
    # with the same settings it resumes from the checkpoint
    assert _run(tiny_vl_path, data, out) == 0
    record = json.loads((out / "sft" / ".stage-done.json").read_text())
    assert record["result"]["resumed_from"].endswith("checkpoint-1")
