"""Running a TRL trainer the same way for SFT and RL: resume, metrics file, train, save.

:func:`train_and_save` is the shared tail of :func:`~guardrail.training.sft.train_sft` and
:func:`~guardrail.training.rl.train_rl`: it resumes from the last checkpoint, trains, saves a
model :meth:`guardrail.Guard.from_pretrained` loads and returns a :class:`TrainResult`.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail.training.config import TrainingConfig
from guardrail.training.data import LoadedData
from guardrail.training.model import save_guard_model

__all__ = [
    "TrainResult",
    "load_checkpoint_weights",
    "load_weights_exactly",
    "metrics_callback",
    "metrics_path",
    "resolve_resume",
    "train_and_save",
]

log = logging.getLogger("guardrail.training")

_EXTRA = "training"


@dataclass(frozen=True)
class TrainResult:
    """What a training command produced."""

    output_dir: str
    global_step: int
    train_loss: float | None
    metrics_file: str
    resumed_from: str | None
    samples: int
    skipped_rows: int
    seconds: float
    log_history: tuple[Mapping[str, Any], ...] = ()
    #: RL: mean share of answers the guard's parser reads, and mean format reward, over the run.
    parse_rate: float | None = None
    format_reward: float | None = None


def metrics_path(cfg: TrainingConfig) -> Path:
    """Where the logged metrics go: ``output_dir/metrics.jsonl``."""
    return Path(cfg.output_dir or ".") / "metrics.jsonl"


def train_and_save(
    trainer: Any,
    processor: Any,
    cfg: TrainingConfig,
    data: LoadedData,
    elapsed: Callable[[], float],
    *,
    before_save: Callable[[], None] | None = None,
) -> TrainResult:
    """Train (from the last checkpoint, see :func:`resolve_resume`), save the guard model and
    say what was done. ``trainer`` was built with :func:`metrics_callback` on :func:`metrics_path`;
    ``before_save`` runs after training and may raise to keep the model from being saved."""
    from guardrail.training.health import run_means

    resume = resolve_resume(cfg)
    if resume:
        log.info("%s: resuming from %s", cfg.section, resume)
        load_weights_exactly(trainer)
    with warnings.catch_warnings():
        # TRL reads transformers' deprecated is_gradient_checkpointing alias on every generation
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        output = trainer.train(resume_from_checkpoint=resume)
    if before_save is not None:
        before_save()
    counts = {"samples": len(data.examples), "skipped_rows": data.skipped}
    means = run_means(trainer.state.log_history)
    train_loss = getattr(output, "training_loss", None)
    save_guard_model(
        trainer,
        processor,
        cfg,
        {
            "global_step": trainer.state.global_step,
            **counts,
            "train_loss": train_loss,
            **means,
            "data": _data_info(cfg, data),
        },
    )
    return TrainResult(
        output_dir=str(cfg.output_dir),
        global_step=trainer.state.global_step,
        train_loss=train_loss,
        metrics_file=str(metrics_path(cfg)),
        resumed_from=resume,
        seconds=elapsed(),
        log_history=tuple(trainer.state.log_history),
        **means,
        **counts,
    )


def _data_info(cfg: TrainingConfig, data: LoadedData) -> dict[str, Any]:
    """The data summary recorded with a trained model (model card, guardrail-training.json)."""
    from collections import Counter

    from guardrail.training.validate import category_balance, label_balance

    modalities = Counter(s.modality for s in data.examples)
    info = {
        "files": list(cfg.data),
        "rows": data.rows,
        "labels": label_balance(data.examples),
        "modalities": dict(modalities),
    }
    if cfg.policy:
        info["categories"] = category_balance(data.examples)
    return info


# ---------------------------------------------------------------------------- checkpoints
def resolve_resume(cfg: TrainingConfig) -> str | None:
    if cfg.resume == "never":
        return None
    if cfg.resume != "auto":
        return cfg.resume
    transformers = require("transformers", extra=_EXTRA)
    out = Path(cfg.output_dir or ".")
    if not out.is_dir():
        return None
    return transformers.trainer_utils.get_last_checkpoint(str(out))


def load_weights_exactly(trainer: Any) -> None:
    """Make ``trainer`` restore a full fine-tune's weights from a checkpoint exactly.

    transformers 5 writes checkpoints in the model's original (hub) key layout - Qwen2.5-VL's
    ``visual.*`` and ``model.layers.*`` - while the loaded model names them ``model.visual.*`` and
    ``model.language_model.*``. ``Trainer._load_from_checkpoint`` feeds the file to
    ``load_state_dict(strict=False)`` without mapping the names back, so every weight is reported
    missing and unexpected and training continues from the *base* weights. Here the weights are
    read through ``from_pretrained`` (which maps the names) and copied in, and any weight still
    missing is an error. LoRA checkpoints (adapters, loaded by PEFT) and DeepSpeed/FSDP ones (their
    own loaders) keep transformers' path.
    """
    original = trainer._load_from_checkpoint

    def load(resume_from_checkpoint: str, model: Any = None) -> None:
        target = model if model is not None else trainer.model
        if not _plain_pretrained(target) or not _has_full_weights(resume_from_checkpoint):
            original(resume_from_checkpoint, model)
            return
        load_checkpoint_weights(target, resume_from_checkpoint)

    trainer._load_from_checkpoint = load


def _plain_pretrained(model: Any) -> bool:
    transformers = require("transformers", extra=_EXTRA)
    if not isinstance(model, transformers.PreTrainedModel):
        return False
    return not getattr(model, "_hf_peft_config_loaded", False)


def _has_full_weights(checkpoint: str) -> bool:
    names = ("model.safetensors", "model.safetensors.index.json")
    return any((Path(checkpoint) / n).is_file() for n in names)


def load_checkpoint_weights(model: Any, checkpoint: str | Path) -> None:
    """Copy the weights saved in ``checkpoint`` (``save_pretrained`` layout) into ``model``.

    Raises :class:`~guardrail.errors.ConfigurationError` naming the weights the checkpoint does
    not hold (or holds in another shape), rather than training on from other weights.
    """
    import torch

    from guardrail.errors import ConfigurationError

    dtype = next(model.parameters()).dtype
    saved = type(model).from_pretrained(str(checkpoint), dtype=dtype, use_safetensors=True)
    state = saved.state_dict()
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    wrong = sorted(k for k in own if k in state and state[k].shape != own[k].shape)
    if missing or wrong:
        shown = ", ".join((missing + wrong)[:5])
        raise ConfigurationError(
            f"cannot resume from {checkpoint}: {len(missing)} weight(s) missing and {len(wrong)} of "
            f"another shape ({shown}...); it was saved from another model. Remove the checkpoint "
            "or set resume: never to start over"
        )
    with torch.no_grad():
        for name, tensor in own.items():
            tensor.copy_(state[name].to(device=tensor.device, dtype=tensor.dtype))
    del saved, state
    log.info("restored %d weights from %s", len(own), checkpoint)


def metrics_callback(path: Path) -> Any:
    """A TrainerCallback appending every log entry (with its step) to ``path`` as JSON lines.

    On resume, entries after the checkpoint's step are dropped first, so the file holds each
    step once.
    """
    transformers = require("transformers", extra=_EXTRA)

    class MetricsFile(transformers.TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                kept = []
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        if json.loads(line).get("step", 0) <= state.global_step:
                            kept.append(line)
                    except json.JSONDecodeError:
                        continue
                path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            entry = {"step": state.global_step, "time": round(time.time(), 3), **_jsonable(logs)}
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")

    return MetricsFile()


def _jsonable(logs: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in logs.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
        else:
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                continue
    return out
