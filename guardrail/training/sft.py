"""Reasoning SFT (R-SFT): teach a base model to reason and answer in the guard's format.

Built on TRL's ``SFTTrainer``: each sample becomes a prompt-completion row (TRL's conversational
form for chat profiles; plain text for ``guardreasoner``) whose prompt the profile builds
(``Guard``'s own prompt) and whose completion is the target; TRL's completion-only loss trains
the assistant turn only. See ``docs/training.md`` (*Stages in detail*).

>>> cfg = SFTConfig(model="path/to/Qwen2.5-VL-3B-Instruct", data=["train.jsonl"], output_dir="out")
>>> cfg.learning_rate, cfg.lr_scheduler_type, cfg.num_train_epochs
(5e-05, 'cosine', 3.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guardrail._deps import require
from guardrail.errors import ConfigurationError
from guardrail.profiles import Profile
from guardrail.samples import Sample
from guardrail.training.config import TrainingConfig, option
from guardrail.training.dataset import check_chat_template, is_chat_profile, make_dataset, prompt_messages
from guardrail.training.media import MediaCollator, media_sft_rows, needs_media_collator
from guardrail.training.model import load_model, peft_config
from guardrail.training.runtime import timer, torch_threads
from guardrail.training.trainer import TrainResult, metrics_callback, metrics_path, train_and_save

__all__ = ["SFTConfig", "sft_rows", "train_sft"]


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


def sft_rows(examples: Sequence[Sample], profile: Profile) -> list[dict[str, Any]]:
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
    trl_args = config.trl_config(trl.SFTConfig, max_length=config.max_length, completion_only_loss=True)
    model, processor = load_model(config)
    check_chat_template(processor, profile, data.examples)
    chat = is_chat_profile(profile)
    collator = None
    if chat and needs_media_collator(profile, data.examples):  # clips: the inference encoding
        collator = MediaCollator(model, processor, profile, max_length=config.max_length)
        dataset = make_dataset(media_sft_rows(data.examples), images=False)
    else:
        dataset = make_dataset(sft_rows(data.examples, profile), images=chat)
    trainer = trl.SFTTrainer(
        model=model,
        args=trl_args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=processor,
        peft_config=peft_config(config),
        callbacks=[metrics_callback(metrics_path(config)), *callbacks],
    )
    return train_and_save(trainer, processor, config, data, elapsed)
