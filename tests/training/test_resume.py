"""Resume after a real interruption: a training command in a subprocess gets SIGINT after a
checkpoint; the rerun must end with exactly the weights of a run that was never interrupted
(weights, optimizer, scheduler, RNG and data order all restored), full fine-tune and LoRA."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.training.conftest import HANDFUL, tiny_rows, write_rows

pytestmark = pytest.mark.slow

# The child runs the real command line; after the checkpoint of step 4 is complete it says so
# (a marker file) and waits, so the parent's SIGINT lands mid-run at a known step.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import transformers
    from guardrail.training.cli import main

    marker = Path(sys.argv[1])
    original = transformers.Trainer._save_checkpoint

    def save_then_wait(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.state.global_step == 4:
            marker.write_text("saved")
            time.sleep(300)

    transformers.Trainer._save_checkpoint = save_then_wait
    sys.exit(main(sys.argv[2:]))
    """
)


def _flags(command, model, data, out, finetune, resume):
    flags = [command, "--model", str(model), "--data", str(data), "--output_dir", str(out)]
    settings = dict(
        finetune=finetune, learning_rate=1e-3, lr_scheduler_type="cosine", max_steps=6,
        save_steps=2, save_total_limit=None, logging_steps=1, bf16=False, disable_tqdm=True,
        num_threads=1, seed=0, resume=resume, lora_r=4, lora_alpha=8,
    )  # fmt: skip
    if command == "sft":
        settings.update(per_device_train_batch_size=2, max_length=1024)
    else:
        settings.update(
            per_device_train_batch_size=4, num_generations=4, max_completion_length=24,
            gradient_accumulation_steps=1,
        )  # fmt: skip
    for key, value in settings.items():
        flags += [
            f"--{key}",
            "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value),
        ]
    return flags


def _interrupt(flags: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    marker = tmp_path / "checkpoint-saved"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker), *flags],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the child ended before its checkpoint (rc {proc.returncode}):\n{err[-3000:]}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _losses(path: Path) -> list[tuple[int, float]]:
    lines = (path / "metrics.jsonl").read_text().splitlines()
    return [(m["step"], m["loss"]) for m in map(json.loads, lines) if "loss" in m]


@pytest.mark.parametrize(("command", "finetune"), [("sft", "full"), ("sft", "lora"), ("rl", "full")])
def test_sigint_then_rerun_ends_with_the_uninterrupted_weights(command, finetune, tiny_vl_path, tmp_path):
    import torch

    from guardrail.training.cli import main

    data = write_rows(tmp_path / "data.jsonl", tiny_rows(HANDFUL))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(_flags(command, tiny_vl_path, data, straight, finetune, "never")) == 0

    done = _interrupt(_flags(command, tiny_vl_path, data, resumed, finetune, "auto"), tmp_path)
    assert done.returncode == 130, done.stderr[-3000:]
    assert "rerun the same command to continue" in done.stderr
    assert (resumed / "checkpoint-4").is_dir() and not (resumed / "model.safetensors").exists()

    assert main(_flags(command, tiny_vl_path, data, resumed, finetune, "auto")) == 0
    info = json.loads((resumed / "guardrail-training.json").read_text())
    assert info["global_step"] == 6
    a, b = _weights(straight), _weights(resumed)
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    # the loss curve continues where it stopped (no jump back to the base model's loss)
    got, want = _losses(resumed), _losses(straight)
    assert [s for s, _ in got] == [s for s, _ in want] == [1, 2, 3, 4, 5, 6]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-4)
    # the base model's weights are not what the resumed run ended with
    base = _weights(tiny_vl_path)
    assert any(not torch.equal(base[k], b[k]) for k in base)


def test_a_checkpoint_of_another_model_is_refused(tiny_vl_path, tiny_text_path, tmp_path):
    """Resuming a full fine-tune from a checkpoint whose weights do not fit the model is an error,
    not a run that silently goes on from other weights."""
    import transformers

    from guardrail.errors import ConfigurationError
    from guardrail.training.trainer import load_checkpoint_weights

    model = transformers.AutoModelForImageTextToText.from_pretrained(tiny_vl_path)
    with pytest.raises(ConfigurationError, match="cannot resume from .*missing"):
        load_checkpoint_weights(model, tiny_text_path)
