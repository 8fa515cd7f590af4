"""The configs of the training commands (trl style, without the weight): one dataclass each.

Every config is a dataclass whose fields carry their help text (``metadata["help"]``) and, where
the value is one of a few names, their ``choices``. ``__post_init__`` coerces values that come as
text (YAML scalars, command-line flags) to the field's type, checks choices, then calls
:meth:`Config.validate`: every mistake is a :class:`~guardrail.errors.ConfigurationError` raised
before any model or data set loads. Nothing here imports torch or TRL.

- :class:`Config`: the base (typed fields, ``from_dict``, ``options`` for the command line);
- :class:`DataConfig`: the data files and the profile, shared by every stage;
- :class:`TrainingConfig`: what the SFT and RL trainers share, mapped onto TRL's configs
  (:meth:`TrainingConfig.trl_kwargs`, :func:`build_trl_config`).

Each stage adds its own fields beside its runner: ``SFTConfig`` (:mod:`~guardrail.training.sft`),
``RejectionConfig``, ``AugmentConfig``, ``RLConfig``, and ``RecipeConfig``
(:mod:`~guardrail.training.recipe`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

from guardrail.errors import ConfigurationError, DataError
from guardrail.policies import Policy, PolicyError, get_policy
from guardrail.profiles import PROFILES, Profile, get_profile
from guardrail.training.data import DATA_FORMATS, LoadedData, load_examples
from guardrail.training.runtime import cuda_available, cuda_bf16

__all__ = ["Config", "DataConfig", "TrainingConfig", "build_trl_config", "coerce", "load_policy", "option"]

log = logging.getLogger("guardrail.training")


C = TypeVar("C", bound="Config")


def option(
    default: Any = MISSING, help: str = "", *, choices: tuple[str, ...] | None = None, factory: Any = MISSING
) -> Any:  # noqa: A002
    """A dataclass field with help text (and the names it may take)."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Config:
    """Base of the training configs: typed fields, checked when the object is built."""

    #: Name of the recipe section this config reads (``sft``, ``sample``...); used in messages.
    section: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            value = coerce(value, hints[f.name], f"{self.section}.{f.name}")
            choices = f.metadata.get("choices")
            if choices is not None and value is not None and value not in choices:
                raise ConfigurationError(
                    f"{self.section}.{f.name} must be one of {', '.join(map(str, choices))}; got {value!r}"
                )
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Check values together; subclasses raise ConfigurationError. Runs in ``__post_init__``."""

    # ------------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None) -> C:
        """Build from a mapping (a YAML section); unknown keys are an error, not ignored."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) for {cls.section}: {', '.join(unknown)}. Known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)

    @classmethod
    def options(cls) -> list[tuple[str, Any, str, tuple[str, ...] | None, Any]]:
        """``(name, type, help, choices, default)`` of every field, in order (for CLIs and docs)."""
        hints = _hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            default = (
                f.default
                if f.default is not MISSING
                else (
                    f.default_factory() if f.default_factory is not MISSING else None  # type: ignore[misc]
                )
            )
            out.append(
                (f.name, hints[f.name], f.metadata.get("help", ""), f.metadata.get("choices"), default)
            )
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return tp, optional
    return tp, False


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (possibly text from a flag) to type ``tp``; raise ConfigurationError."""
    inner, optional = _unwrap_optional(tp)
    if value is None:
        return None  # required values are checked by validate(), with a better message
    if isinstance(value, str) and optional and value.strip().lower() in ("none", "null") and inner is not str:
        return None
    origin = typing.get_origin(inner)
    try:
        if inner is Any:
            return value
        if inner is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise TypeError
        if inner in (int, float):
            if isinstance(value, str):
                return inner(value.strip())
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            if inner is int and isinstance(value, float) and not value.is_integer():
                raise TypeError
            return inner(value)
        if inner is str:
            if isinstance(value, str):
                return value
            if isinstance(value, os.PathLike):
                return os.fspath(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise TypeError
        if origin is list or inner is list:
            (item_tp,) = typing.get_args(inner) or (Any,)
            if isinstance(value, str):
                value = _parse_list_text(value)
            if not isinstance(value, (list, tuple)):
                value = [value]
            return [coerce(v, item_tp, where) for v in value]
        if origin is dict or inner is dict:
            if isinstance(value, str):
                value = json.loads(value) if value.strip() else {}
            if not isinstance(value, Mapping):
                raise TypeError
            return dict(value)
        if origin in (Union, types.UnionType):  # e.g. float | str: keep what was given
            return value
    except (TypeError, ValueError, json.JSONDecodeError):
        raise ConfigurationError(f"{where}: expected {_type_name(tp)}, got {value!r}") from None
    return value


def _parse_list_text(text: str) -> list[Any]:
    text = text.strip()
    if text.startswith("["):
        return list(json.loads(text))
    return [part.strip() for part in text.split(",") if part.strip()] if "," in text else [text]


def _type_name(tp: Any) -> str:
    inner, optional = _unwrap_optional(tp)
    name = getattr(inner, "__name__", None) or str(inner).replace("typing.", "")
    if typing.get_origin(inner) is list:
        name = f"a list of {_type_name(typing.get_args(inner)[0])}"
    return f"{name} or null" if optional else name


def load_policy(spec: str | None, where: str = "policy") -> Policy | None:
    """The policy of a training config: a YAML file (``guardrail.Policy.from_yaml``), else a
    built-in policy name (``mlcommons``...); None for none. Raises ConfigurationError."""
    if spec is None or not str(spec).strip():
        return None
    path = Path(spec)
    try:
        if path.is_file():
            return Policy.from_yaml(path)
        if path.suffix.lower() in (".yaml", ".yml", ".json") or os.sep in str(spec):
            raise ConfigurationError(f"{where}: policy file {spec} not found")
        return get_policy(str(spec))
    except PolicyError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


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
    policy: str | None = option(
        None,
        "train on your own policy: a policy file (YAML, guardrail.Policy) or a built-in policy name; "
        "rows name the categories they violate ('categories': [codes])",
    )
    seed: int = option(42, "random seed")

    def validate(self) -> None:
        super().validate()
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigurationError(f"{self.section}.max_samples must be at least 1")
        policy = self.get_policy()
        if policy is not None and self.profile != "guardreasoner-vl":
            raise ConfigurationError(
                f"{self.section}.policy: training on a policy needs the guardreasoner-vl profile "
                f"(its answer carries the Categories: line), not {self.profile}"
            )
        try:
            get_profile(self.profile, **self.profile_options)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{self.section}.profile_options: {exc}") from None

    def require_data(self) -> None:
        if not self.data:
            raise ConfigurationError(f"{self.section}.data: give at least one data file")

    def get_policy(self) -> Policy | None:
        """The policy the guard is trained on (``policy``: a YAML file, else a built-in name), or None."""
        return load_policy(self.policy, f"{self.section}.policy")

    def get_profile(self) -> Profile:
        """The profile the guard is trained for; with a policy, it renders the policy in the
        prompt and writes and reads the ``Categories:`` line (``trained_policy``)."""
        options = dict(self.profile_options)
        policy = self.get_policy()
        if policy is not None:
            options["trained_policy"] = policy
        return get_profile(self.profile, **options)

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
        from guardrail.training.validate import format_balance, label_balance

        balance = "; ".join(format_balance(label_balance(loaded.examples)))
        log.info("%s data: %s; %s", self.section, loaded.summary(), balance)
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
    allow_untested_model: bool = option(
        False,
        "train a base model whose family (model_type) the profile's recipe has not been checked on",
    )
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
    keep_checkpoints: bool = option(
        False, "keep checkpoint-* directories after a successful run (they only serve resuming)"
    )
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

    def trl_config(self, cls: type, **fields: Any) -> Any:
        """TRL's config ``cls`` for this run: :meth:`trl_kwargs`, the stage's own ``fields``, then
        ``trainer_args`` (checked against ``cls``, see :func:`build_trl_config`)."""
        return build_trl_config(cls, {**self.trl_kwargs(), **fields}, self.trainer_args, self.section)

    def trl_kwargs(self) -> dict[str, Any]:
        """Fields every TRL trainer config takes (TrainingArguments)."""
        bf16 = self.bf16 if self.bf16 is not None else cuda_bf16()
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
            "dataloader_pin_memory": cuda_available(),
        }
        if self.deepspeed:
            kwargs["deepspeed"] = self.deepspeed
        return kwargs


#: transformers 5 renamed these TrainingArguments fields; the old names warn on every stage.
_RENAMED = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def _current_names(known: set[str], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pass renamed fields under their new name when the TRL config has it (the old one set to
    None: TRL defaults gradient_checkpointing to True, which would warn and override)."""
    out = dict(kwargs)
    for old, new in _RENAMED.items():
        if new in known and old in out:
            value = out.pop(old)
            out.setdefault(new, value)
            out[old] = None
    return out


def build_trl_config(cls: type, kwargs: dict[str, Any], extra: Mapping[str, Any], section: str) -> Any:
    """Instantiate a TRL config class, with ``extra`` (``trainer_args``) checked against its fields."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ConfigurationError(
            f"{section}.trainer_args: {cls.__name__} has no field(s) {', '.join(unknown)}"
        )
    merged = _current_names(known, {**kwargs, **extra})
    try:
        return cls(**merged)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{section}: {cls.__name__} rejected the settings: {exc}") from exc
