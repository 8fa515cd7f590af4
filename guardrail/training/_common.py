"""Pieces shared by the SFT and RL trainers: config fields, model loading, data sets, saving.

Heavy libraries (torch, transformers, trl, peft, datasets) are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail.errors import ConfigurationError, DataError
from guardrail.profiles import PROFILES, GuardReasonerVLProfile, Profile, get_profile
from guardrail.training._config import Config, option
from guardrail.training.data import DATA_FORMATS, Example, LoadedData, load_examples

__all__ = ["DataConfig", "TrainResult", "TrainingConfig"]

log = logging.getLogger("guardrail.training")

_EXTRA = "training"
#: Vision tokens a guard must never generate (as the transformers backend suppresses them).
VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
STAGE_FILE = "guardrail-training.json"


# ------------------------------------------------------------------------------------ configs
@dataclass
class DataConfig(Config):
    """Where the samples come from and how bad rows are treated."""

    data: list[str] = option(
        factory=list, help="data files (JSONL or a JSON list); formats in guardrail.training.data"
    )
    data_format: str = option(
        "auto", "row format: auto (per row), sharegpt, guardreasoner, guardrail", choices=DATA_FORMATS
    )
    image_root: str | None = option(
        None, "directory relative image paths start from (default: each data file's directory)"
    )
    on_bad_row: str = option(
        "skip",
        "a bad row is logged with its row number and skipped (skip) or fails the run (fail)",
        choices=("skip", "fail"),
    )
    max_samples: int | None = option(None, "use at most this many samples (quick runs)")
    profile: str = option(
        "guardreasoner-vl",
        "prompt/output profile the model is trained for (what Guard uses at inference)",
        choices=tuple(PROFILES),
    )
    profile_options: dict = option(factory=dict, help="options of the profile, e.g. {system_prompt: ...}")
    seed: int = option(42, "random seed")

    def validate(self) -> None:
        super().validate()
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigurationError(f"{self.section}.max_samples must be at least 1")
        try:
            get_profile(self.profile, **self.profile_options)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{self.section}.profile_options: {exc}") from None

    def require_data(self) -> None:
        if not self.data:
            raise ConfigurationError(f"{self.section}.data: give at least one data file")

    def get_profile(self) -> Profile:
        return get_profile(self.profile, **self.profile_options)

    def load(self, *, require_target: bool = False) -> LoadedData:
        """Read and validate the data files (bad rows per ``on_bad_row``)."""
        self.require_data()
        missing = [p for p in self.data if not Path(p).is_file()]
        if missing:
            raise DataError(f"{self.section}.data: file(s) not found: {', '.join(missing)}")
        loaded = load_examples(
            self.data,
            profile=self.get_profile(),
            data_format=self.data_format,
            image_root=self.image_root,
            on_bad_row=self.on_bad_row,
            require_target=require_target,
            max_samples=self.max_samples,
        )
        log.info("%s data: %s", self.section, loaded.summary())
        if not loaded.examples:
            raise DataError(
                f"{self.section}: no usable samples in {', '.join(self.data)} ({loaded.summary()})"
            )
        return loaded


@dataclass
class TrainingConfig(DataConfig):
    """Fields shared by the SFT and RL trainers (mapped onto TRL's configs)."""

    model: str | None = option(None, "base model: a local directory or a Hugging Face hub id")
    output_dir: str | None = option(
        None, "where checkpoints and the final model go (Guard.from_pretrained loads it)"
    )
    dtype: str = option(
        "auto",
        "dtype the weights load in (auto: float32; bf16 mixed precision is bf16)",
        choices=("auto", "float32", "bfloat16", "float16"),
    )
    trust_remote_code: bool = option(False, "allow model code from the hub (off by default)")
    finetune: str = option(
        "full", "full fine-tune or LoRA adapters (merged into the saved model)", choices=("full", "lora")
    )
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha")
    lora_dropout: float = option(0.05, "LoRA dropout")
    lora_target_modules: list[str] = option(
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        help="modules LoRA adapts (language model attention by default)",
    )
    freeze_vision_tower: bool = option(False, "do not train the vision encoder (full fine-tune)")
    learning_rate: float = option(5e-5, "peak learning rate")
    lr_scheduler_type: str = option(
        "cosine", "learning-rate schedule (transformers names: cosine, linear, constant, ...)"
    )
    warmup_ratio: float = option(0.0, "fraction of the steps spent warming up")
    weight_decay: float = option(0.0, "AdamW weight decay")
    num_train_epochs: float = option(3.0, "passes over the data (ignored when max_steps > 0)")
    max_steps: int = option(-1, "stop after this many optimizer steps (-1: by epochs)")
    per_device_train_batch_size: int = option(
        1, "samples (SFT) or completions (RL) per device per micro-batch"
    )
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step")
    bf16: bool | None = option(None, "bf16 mixed precision (default: on when a CUDA GPU supports it)")
    gradient_checkpointing: bool = option(False, "trade compute for memory (on for the 3B/7B recipes)")
    deepspeed: str | None = option(
        None,
        "DeepSpeed JSON config (e.g. training/accelerate/ds_zero3.json); or use accelerate launch --config_file",
    )
    logging_steps: float = option(1, "log metrics every N steps")
    save_steps: float = option(500, "save a checkpoint every N steps (resume continues from the last one)")
    save_total_limit: int | None = option(2, "keep at most this many checkpoints")
    report_to: list[str] = option(
        factory=lambda: ["none"],
        help="metric trackers (tensorboard, wandb, ...); metrics.jsonl is always written",
    )
    disable_tqdm: bool = option(False, "hide progress bars")
    dataloader_num_workers: int = option(0, "data loader worker processes")
    num_threads: int | None = option(
        None, "CPU threads for torch during the run (tiny models train fastest on 1; default: torch's)"
    )
    resume: str = option(
        "auto", "auto: continue from the last checkpoint in output_dir; never; or a checkpoint path"
    )
    trainer_args: dict = option(
        factory=dict, help="extra TRL config fields passed through as is (checked against TRL's config)"
    )

    def validate(self) -> None:
        super().validate()
        s = self.section
        if self.learning_rate <= 0:
            raise ConfigurationError(f"{s}.learning_rate must be positive")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigurationError(f"{s}.warmup_ratio must be in [0, 1)")
        if self.weight_decay < 0:
            raise ConfigurationError(f"{s}.weight_decay must be >= 0")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigurationError(f"{s}.max_steps must be positive or -1")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise ConfigurationError(f"{s}.num_train_epochs must be positive")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{s}.{name} must be at least 1")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigurationError(f"{s}.lora_dropout must be in [0, 1)")
        if self.finetune == "lora" and not self.lora_target_modules:
            raise ConfigurationError(f"{s}.lora_target_modules: LoRA needs at least one module name")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigurationError(f"{s}.num_threads must be at least 1")
        if self.logging_steps <= 0 or self.save_steps <= 0:
            raise ConfigurationError(f"{s}.logging_steps and save_steps must be positive")
        if self.deepspeed is not None and not Path(self.deepspeed).is_file():
            raise ConfigurationError(f"{s}.deepspeed: no such file {self.deepspeed}")
        if self.resume not in ("auto", "never") and not Path(self.resume).is_dir():
            raise ConfigurationError(
                f"{s}.resume must be auto, never or a checkpoint directory; got {self.resume!r}"
            )

    def require_model(self) -> None:
        if not self.model:
            raise ConfigurationError(f"{self.section}.model: give the base model (a directory or hub id)")
        if not self.output_dir:
            raise ConfigurationError(f"{self.section}.output_dir: give an output directory")

    def trl_kwargs(self) -> dict[str, Any]:
        """Fields every TRL trainer config takes (TrainingArguments)."""
        bf16 = self.bf16 if self.bf16 is not None else _cuda_bf16()
        kwargs: dict[str, Any] = {
            "output_dir": self.output_dir,
            "learning_rate": self.learning_rate,
            "lr_scheduler_type": self.lr_scheduler_type,
            "warmup_steps": self.warmup_ratio,  # a float below 1 is a ratio in transformers 5
            "weight_decay": self.weight_decay,
            "num_train_epochs": self.num_train_epochs,
            "max_steps": self.max_steps,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "bf16": bf16,
            "gradient_checkpointing": self.gradient_checkpointing,
            "logging_steps": self.logging_steps,
            "save_strategy": "steps",
            "save_steps": self.save_steps,
            "save_total_limit": self.save_total_limit,
            "seed": self.seed,
            "report_to": [r for r in self.report_to if r != "none"] or "none",
            "disable_tqdm": self.disable_tqdm,
            "dataloader_num_workers": self.dataloader_num_workers,
            "remove_unused_columns": False,  # image paths and labels travel with the rows
            "dataloader_pin_memory": _cuda_available(),
        }
        if self.deepspeed:
            kwargs["deepspeed"] = self.deepspeed
        return kwargs


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available())


def _cuda_bf16() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def build_trl_config(cls: type, kwargs: dict[str, Any], extra: Mapping[str, Any], section: str) -> Any:
    """Instantiate a TRL config class, with ``extra`` (``trainer_args``) checked against its fields."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ConfigurationError(
            f"{section}.trainer_args: {cls.__name__} has no field(s) {', '.join(unknown)}"
        )
    try:
        return cls(**{**kwargs, **extra})
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{section}: {cls.__name__} rejected the settings: {exc}") from exc


# -------------------------------------------------------------------------------- results
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


# ------------------------------------------------------------------------------ model + data
def load_model(cfg: TrainingConfig) -> tuple[Any, Any]:
    """Load the base model and its processor (VL) or tokenizer (text)."""
    torch = require("torch", extra=_EXTRA)
    transformers = require("transformers", extra=_EXTRA)
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
    is_vl = hasattr(processor, "image_processor")
    if cfg.profile == "guardreasoner-vl" and not is_vl:
        raise ConfigurationError(
            f"{cfg.section}: the guardreasoner-vl profile needs a vision-language model; {cfg.model} is text-only"
        )
    if cfg.profile != "guardreasoner-vl" and is_vl:
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


def prompt_messages(profile: Profile, example: Example) -> list[dict[str, Any]]:
    """The chat prompt of one sample, built by the profile exactly as Guard builds it.

    Content parts are uniform ``{"type", "text"}`` records (``text`` None for image parts) so
    that rows fit one Arrow schema; TRL puts the images into the ``image`` parts in order.
    """
    rendered = profile.render(example.moderation_input())
    if rendered.messages is None:
        raise ConfigurationError(f"the {profile.name} profile has no chat messages")
    out = []
    for message in rendered.messages:
        content = message["content"]
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        else:
            parts = [
                {"type": "text", "text": p["text"]}
                if p["type"] == "text"
                else {"type": "image", "text": None}
                for p in content
            ]
        out.append({"role": message["role"], "content": parts})
    return out


def is_chat_profile(profile: Profile) -> bool:
    return isinstance(profile, GuardReasonerVLProfile)


def load_images_transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Dataset transform: decode image paths the way Guard decodes images (RGB, EXIF, first frame)."""
    if "images" in batch:
        from guardrail.inputs import load_image

        batch = dict(batch)
        batch["images"] = [
            [load_image(p, index=i) for i, p in enumerate(paths or [])] for paths in batch["images"]
        ]
    return batch


def make_dataset(rows: Sequence[Mapping[str, Any]], *, images: bool) -> Any:
    datasets = require("datasets", extra=_EXTRA)
    ds = datasets.Dataset.from_list(list(rows))
    return ds.with_transform(load_images_transform) if images else ds


def check_chat_template(processor: Any, profile: Profile, examples: Sequence[Example]) -> None:
    """Fail early when the processor's chat template would not render the prompt Guard sends
    (checked on the first sample, and on the first one with images)."""
    if not is_chat_profile(profile) or not examples:
        return
    probes = [examples[0]] + [e for e in examples if e.images][:1]
    for example in probes:
        want = profile.render(example.moderation_input()).text
        messages = [
            {
                "role": m["role"],
                "content": [
                    {"type": p["type"], **({"text": p["text"]} if p["type"] == "text" else {})}
                    for p in m["content"]
                ],
            }
            for m in prompt_messages(profile, example)
        ]
        try:
            got = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # noqa: BLE001 - any template failure is a setup problem
            raise ConfigurationError(
                f"the model's chat template cannot render a guard prompt: {exc}"
            ) from exc
        if got != want:
            raise ConfigurationError(
                "the model's chat template renders the guard prompt differently from the "
                f"{profile.name} profile (so the trained model would not match what Guard sends). "
                f"Template:\n{got!r}\nProfile:\n{want!r}"
            )


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


# ----------------------------------------------------------------------------------- saving
def save_guard_model(
    trainer: Any, processor: Any, cfg: TrainingConfig, extra_info: Mapping[str, Any]
) -> Path:
    """Save the trained model so that ``Guard.from_pretrained(output_dir)`` loads it.

    Full fine-tunes are saved by the trainer (gathering ZeRO-3 shards). LoRA runs save the
    adapter under ``output_dir/adapter``; the main process then loads the base model on the CPU,
    merges the adapter and saves the merged model at ``output_dir``. The model config records
    the profile (``guardrail_profile``) so Guard picks the right one.
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
        info = {"stage": cfg.section, "profile": profile_name, "base_model": cfg.model, **dict(extra_info)}
        (out / STAGE_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
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


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch CPU threads (None: leave as is), restoring the previous count."""
    if n is None:
        yield
        return
    torch = require("torch", extra=_EXTRA)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def timer() -> functools.partial[float]:
    return functools.partial(lambda t0: time.perf_counter() - t0, time.perf_counter())


def sanitize_env() -> None:
    """Quiet defaults for library noise during training runs (never overrides the user's)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
