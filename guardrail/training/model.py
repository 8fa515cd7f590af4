"""The model side of training: load the base model, LoRA adapters, save the trained guard.

Heavy libraries (torch, transformers, peft) are imported inside the functions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail.errors import ConfigurationError
from guardrail.profiles import NEVER_GENERATED
from guardrail.training.card import STAGE_FILE
from guardrail.training.config import TrainingConfig

__all__ = ["STAGE_FILE", "load_model", "peft_config", "save_guard_model", "suppressed_token_ids"]

_EXTRA = "training"
log = logging.getLogger("guardrail.training")
#: Vision tokens a guard must never generate (the profiles' table, as the backends ban them).
VISION_TOKENS = NEVER_GENERATED


# ---------------------------------------------------------------------------------- loading
def check_model_family(cfg: TrainingConfig, model_config: Mapping[str, Any]) -> str:
    """Say which profile trains ``cfg.model`` and why; refuse a family the recipe has not been
    checked on (its ``model_type`` maps to no profile) unless ``allow_untested_model``.

    Returns the line logged. The checked families are those :func:`guardrail.profiles.
    profile_for_model_type` knows (Qwen2/2.5-VL for ``guardreasoner-vl``, Llama for
    ``guardreasoner``): their chat template, vision tokens, loss mask and GGUF export are tested.
    """
    from guardrail.profiles import _MODEL_TYPES as checked
    from guardrail.profiles import DEFAULT_PROFILE, profile_for_model_type

    model_type = model_config.get("model_type")
    family = profile_for_model_type(model_type, model_config)
    why = "the default: no profile set" if cfg.profile == DEFAULT_PROFILE else f"set by {cfg.section}.profile"
    line = f"{cfg.section}: profile {cfg.profile} ({why}) for {cfg.model} (model_type {model_type!r})"
    if family is None:
        families = ", ".join(t for t, p in checked.items() if p == cfg.profile) or "none"
        message = (
            f"{line}: the {cfg.profile} recipe has not been checked on the {model_type!r} family "
            f"(checked: {families}); its chat template, vision tokens, loss mask and GGUF export may "
            "differ from what the profile renders and parses"
        )
        if not cfg.allow_untested_model:
            raise ConfigurationError(
                message + f". Set {cfg.section}.allow_untested_model: true to train it anyway."
            )
        log.warning("%s; training anyway (allow_untested_model: true)", message)
        return message
    if family != cfg.profile:
        raise ConfigurationError(
            f"{line}: a {model_type!r} model is a {family} guard, not a {cfg.profile} one; set "
            f"{cfg.section}.profile: {family}"
        )
    log.info("%s", line)
    return line


def load_model(cfg: TrainingConfig) -> tuple[Any, Any]:
    """Load the base model and its processor (VL) or tokenizer (text)."""
    torch = require("torch", extra=_EXTRA)
    transformers = require("transformers", extra=_EXTRA)
    local = Path(str(cfg.model)) / "config.json"
    if local.is_file():  # a local model: its family is checked before any weight loads
        try:
            model_config = json.loads(local.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{cfg.section}.model: cannot read {local}: {exc}") from exc
        check_model_family(cfg, model_config)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        cfg.dtype, torch.float32
    )
    common = {"trust_remote_code": cfg.trust_remote_code}
    try:
        config = transformers.AutoConfig.from_pretrained(cfg.model, **common)
        if getattr(config, "vision_config", None) is not None:
            model = transformers.AutoModelForImageTextToText.from_pretrained(
                cfg.model, dtype=dtype, use_safetensors=True, **common
            )
            processor = transformers.AutoProcessor.from_pretrained(cfg.model, **common)
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                cfg.model, dtype=dtype, use_safetensors=True, **common
            )
            processor = transformers.AutoTokenizer.from_pretrained(cfg.model, **common)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{cfg.section}.model: cannot load {cfg.model!r}: {exc}") from exc
    if not local.is_file():
        check_model_family(cfg, config.to_dict())
    is_vl = hasattr(processor, "image_processor")
    vision_profile = cfg.profile in ("guardreasoner-vl", "guardreasoner-omni")
    if vision_profile and not is_vl:
        raise ConfigurationError(
            f"{cfg.section}: the {cfg.profile} profile needs a vision-language model; {cfg.model} is text-only"
        )
    if not vision_profile and is_vl:
        raise ConfigurationError(
            f"{cfg.section}: the {cfg.profile} profile is text-only; {cfg.model} is a vision-language model"
        )
    tok = getattr(processor, "tokenizer", processor)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if cfg.freeze_vision_tower:
        visual = _vision_tower(model)
        if visual is None:
            raise ConfigurationError(f"{cfg.section}.freeze_vision_tower: the model has no vision tower")
        for p in visual.parameters():
            p.requires_grad_(False)
    return model, processor


def _vision_tower(model: Any) -> Any:
    for path in ("model.visual", "visual", "vision_tower", "model.vision_tower"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


def peft_config(cfg: TrainingConfig) -> Any:
    if cfg.finetune != "lora":
        return None
    peft = require("peft", extra=_EXTRA)
    return peft.LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
        task_type="CAUSAL_LM",
    )


def suppressed_token_ids(processor: Any) -> list[int]:
    tok = getattr(processor, "tokenizer", processor)
    vocab = tok.get_vocab()
    return [vocab[t] for t in VISION_TOKENS if t in vocab]


# ---------------------------------------------------------------------------------- saving
def save_guard_model(
    trainer: Any, processor: Any, cfg: TrainingConfig, extra_info: Mapping[str, Any]
) -> Path:
    """Save the trained model so that ``Guard.from_pretrained(output_dir)`` loads it.

    Full fine-tunes are saved by the trainer (gathering ZeRO-3 shards). LoRA runs save the
    adapter under ``output_dir/adapter``; the main process then loads the base model on the CPU,
    merges the adapter and saves the merged model at ``output_dir``. The model config records
    the profile (``guardrail_profile``) so Guard picks the right one; a guard trained on a
    policy gets ``guardrail_policy.yaml`` beside its weights (:mod:`guardrail.policies.trained`).
    """
    out = Path(cfg.output_dir or ".")
    profile_name = cfg.profile
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if cfg.finetune == "lora":
        trainer.save_model(str(out / "adapter"))
        trainer.accelerator.wait_for_everyone()
        if trainer.accelerator.is_main_process:
            _merge_adapter(cfg, out / "adapter", out, processor, profile_name)
    else:
        unwrapped.config.guardrail_profile = profile_name
        _clean_generation_config(unwrapped)
        trainer.save_model(str(out))
        if trainer.accelerator.is_main_process:
            processor.save_pretrained(str(out))
    if trainer.accelerator.is_main_process:
        from guardrail.policies.trained import POLICY_FILE, write_trained_policy
        from guardrail.training.card import finish_model_dir

        policy = cfg.get_policy()
        if policy is not None:  # travels with the weights: Guard.from_pretrained reads it
            write_trained_policy(out, policy)
        else:
            (out / POLICY_FILE).unlink(missing_ok=True)

        info = {
            "stage": cfg.section,
            "profile": profile_name,
            "base_model": cfg.model,
            **dict(extra_info),
            "config": cfg.to_dict(),
        }
        (out / STAGE_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
        finish_model_dir(out, keep_checkpoints=cfg.keep_checkpoints)
    trainer.accelerator.wait_for_everyone()
    return out


def _clean_generation_config(model: Any) -> None:
    """Guard passes its own generation settings; keep the saved defaults greedy and plain."""
    gen = getattr(model, "generation_config", None)
    if gen is None:
        return
    for name, value in (("do_sample", False), ("temperature", None), ("top_p", None), ("top_k", None)):
        if hasattr(gen, name):
            setattr(gen, name, value)


def _merge_adapter(cfg: TrainingConfig, adapter: Path, out: Path, processor: Any, profile_name: str) -> None:
    peft = require("peft", extra=_EXTRA)
    torch = require("torch", extra=_EXTRA)
    transformers = require("transformers", extra=_EXTRA)
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.dtype, torch.float32)
    config = transformers.AutoConfig.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
    cls = (
        transformers.AutoModelForImageTextToText
        if getattr(config, "vision_config", None) is not None
        else transformers.AutoModelForCausalLM
    )
    base = cls.from_pretrained(
        cfg.model, dtype=dtype, trust_remote_code=cfg.trust_remote_code, use_safetensors=True
    )
    merged = peft.PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged.config.guardrail_profile = profile_name
    _clean_generation_config(merged)
    merged.save_pretrained(str(out), safe_serialization=True)
    processor.save_pretrained(str(out))
