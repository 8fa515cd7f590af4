"""Reasoning SFT (R-SFT): teach a base model to reason and answer in the guard's format.

Built on TRL's ``SFTTrainer``. Each sample becomes a prompt-completion row in TRL's
conversational form:

- ``prompt``: ``[system, user]`` messages built by the profile (``Guard``'s own prompt: the
  GuardReasoner-VL instruction and ``Human user:\\n<image>...\\n{prompt}\\n\\nAI assistant:\\n...``
  with the images where the profile puts them), rendered by the model's chat template (checked
  against the profile before training starts);
- ``completion``: the assistant message (``<think>...</think>\\n<result>...</result>``), which
  the template closes with ``<|im_end|>``;
- ``images``: the sample's image paths, decoded on the fly.

TRL's completion-only loss (the default for prompt-completion data) masks everything but the
completion, so the loss falls on the assistant turn only, end-of-turn token included. Text-only
profiles (``guardreasoner``) use TRL's plain prompt-completion text form instead.

>>> cfg = SFTConfig(model="path/to/Qwen2.5-VL-3B-Instruct", data=["train.jsonl"], output_dir="out")
>>> cfg.learning_rate, cfg.lr_scheduler_type, cfg.num_train_epochs
(5e-05, 'cosine', 3.0)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail.errors import ConfigurationError
from guardrail.profiles import Profile
from guardrail.training._common import (
    TrainingConfig,
    TrainResult,
    build_trl_config,
    check_chat_template,
    is_chat_profile,
    load_model,
    make_dataset,
    metrics_callback,
    peft_config,
    prompt_messages,
    resolve_resume,
    save_guard_model,
    timer,
    torch_threads,
)
from guardrail.training._config import option
from guardrail.training.data import Example

__all__ = ["SFTConfig", "sft_rows", "train_sft"]

log = logging.getLogger("guardrail.training")


@dataclass
class SFTConfig(TrainingConfig):
    """Settings of ``python -m guardrail.training sft`` (recipe section ``sft``).

    Defaults follow the paper's R-SFT: lr 5e-5, cosine, 3 epochs, cutoff 2048 tokens.
    """

    section = "sft"

    max_length: int | None = option(
        2048, "cutoff: sequences are truncated to this many tokens (null: no cut)"
    )

    def validate(self) -> None:
        super().validate()
        if self.max_length is not None and self.max_length < 16:
            raise ConfigurationError("sft.max_length must be at least 16 (or null)")


def sft_rows(examples: Sequence[Example], profile: Profile) -> list[dict[str, Any]]:
    """TRL rows (prompt, completion, images, id) for the samples, prompts built by ``profile``."""
    rows = []
    for ex in examples:
        if ex.target is None:
            raise ConfigurationError(f"sample {ex.id} has no target text")
        if is_chat_profile(profile):
            rows.append(
                {
                    "id": ex.id,
                    "prompt": prompt_messages(profile, ex),
                    "completion": [{"role": "assistant", "content": [{"type": "text", "text": ex.target}]}],
                    "images": list(ex.images),
                }
            )
        else:
            rows.append(
                {"id": ex.id, "prompt": profile.render(ex.moderation_input()).text, "completion": ex.target}
            )
    return rows


def train_sft(config: SFTConfig, *, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Run R-SFT as ``config`` says and save a model ``Guard.from_pretrained`` loads.

    Resumes from the last checkpoint in ``output_dir`` unless ``resume="never"``; extra
    ``callbacks`` (``transformers.TrainerCallback``) are passed to the trainer.
    """
    with torch_threads(config.num_threads):
        return _train_sft(config, callbacks)


def _train_sft(config: SFTConfig, callbacks: Sequence[Any]) -> TrainResult:
    elapsed = timer()
    config.require_model()
    trl = require("trl", extra="training")
    data = config.load(require_target=True)
    profile = config.get_profile()
    kwargs = config.trl_kwargs()
    kwargs.update(max_length=config.max_length, completion_only_loss=True)
    trl_args = build_trl_config(trl.SFTConfig, kwargs, config.trainer_args, config.section)
    model, processor = load_model(config)
    check_chat_template(processor, profile, data.examples)
    chat = is_chat_profile(profile)
    dataset = make_dataset(sft_rows(data.examples, profile), images=chat)
    metrics_file = Path(config.output_dir or ".") / "metrics.jsonl"
    trainer = trl.SFTTrainer(
        model=model,
        args=trl_args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config(config),
        callbacks=[metrics_callback(metrics_file), *callbacks],
    )
    resume = resolve_resume(config)
    if resume:
        log.info("sft: resuming from %s", resume)
    output = trainer.train(resume_from_checkpoint=resume)
    save_guard_model(
        trainer,
        processor,
        config,
        {
            "global_step": trainer.state.global_step,
            "samples": len(data.examples),
            "skipped_rows": data.skipped,
        },
    )
    return TrainResult(
        output_dir=str(config.output_dir),
        global_step=trainer.state.global_step,
        train_loss=getattr(output, "training_loss", None),
        metrics_file=str(metrics_file),
        resumed_from=resume,
        samples=len(data.examples),
        skipped_rows=data.skipped,
        seconds=elapsed(),
        log_history=tuple(trainer.state.log_history),
    )
