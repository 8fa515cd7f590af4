"""The recipe runner: R-SFT -> rejection sampling -> augmentation -> GRPO from one recipe.

A recipe is a YAML mapping (``training/*.yaml``): top-level settings (``model``, ``output_dir``,
``data``, ``stages``, and ``profile``, ``profile_options``, ``seed``, ``on_bad_row``,
``image_root``, ``num_threads`` for every stage that has the field) and one section per stage
with the fields of its config. Each stage reads the previous stage's output unless its section
says otherwise (:func:`resolve_stage`). A finished stage leaves ``.stage-done.json`` in its
directory and :func:`run_pipeline` skips it on a rerun (``force`` redoes everything). The recipe
format and the stages' outputs are described in ``docs/training.md`` (*Recipes*).
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail.errors import ConfigurationError
from guardrail.training.config import Config, option

__all__ = [
    "STAGES",
    "STAGE_RUNNERS",
    "PipelineResult",
    "RecipeConfig",
    "load_recipe",
    "resolve_stage",
    "run_pipeline",
    "stage_config",
]

log = logging.getLogger("guardrail.training")

STAGES = ("sft", "sample", "augment", "rl")
SHARED_KEYS = ("profile", "profile_options", "seed", "on_bad_row", "image_root", "num_threads")
DONE_FILE = ".stage-done.json"


@dataclass
class RecipeConfig(Config):
    """The top level of a recipe (``python -m guardrail.training run``)."""

    section = "recipe"

    model: str | None = option(None, "the base model (directory or hub id)")
    output_dir: str | None = option(
        None, "root of every stage's output (stage outputs go in sub-directories)"
    )
    data: list[str] = option(factory=list, help="the training corpus (SFT and rejection sampling)")
    profile: str = option("guardreasoner-vl", "profile the guard is trained for")
    profile_options: dict = option(factory=dict, help="profile options")
    seed: int = option(42, "random seed for every stage")
    on_bad_row: str | None = option(None, "skip or fail, for every stage")
    image_root: str | None = option(None, "image root for every stage")
    num_threads: int | None = option(None, "torch CPU threads for every training stage")
    stages: list[str] = option(
        factory=lambda: list(STAGES), help="stages to run, in order: sft, sample, augment, rl"
    )
    force: bool = option(False, "redo stages that are already done")
    sft: dict = option(factory=dict, help="SFT settings (SFTConfig fields)")
    sample: dict = option(factory=dict, help="rejection sampling settings (RejectionConfig fields)")
    augment: dict = option(factory=dict, help="augmentation settings (AugmentConfig fields)")
    rl: dict = option(factory=dict, help="RL settings (RLConfig fields)")

    def validate(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ConfigurationError(
                f"recipe.stages: unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}"
            )
        if not self.stages:
            raise ConfigurationError("recipe.stages: give at least one stage")


def _config_classes() -> dict[str, type[Config]]:
    from guardrail.training.augment import AugmentConfig
    from guardrail.training.rejection import RejectionConfig
    from guardrail.training.rl import RLConfig
    from guardrail.training.sft import SFTConfig

    return {"sft": SFTConfig, "sample": RejectionConfig, "augment": AugmentConfig, "rl": RLConfig}


def load_recipe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML recipe into a dict (empty file: empty recipe)."""
    from guardrail._deps import require

    yaml = require("yaml", extra="training", package="pyyaml")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read recipe {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"recipe {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"recipe {path} must be a mapping of options")
    return data


def _stage_dir(recipe: Mapping[str, Any], stage: str) -> str | None:
    section = recipe.get(stage) or {}
    if section.get("output_dir"):
        return str(section["output_dir"])
    root = recipe.get("output_dir")
    return str(Path(root) / stage) if root else None


def resolve_stage(recipe: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """The settings of one stage: its section plus what it inherits (see the module docstring)."""
    if stage not in STAGES:
        raise ConfigurationError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    section = recipe.get(stage) or {}
    if not isinstance(section, Mapping):
        raise ConfigurationError(f"recipe section {stage!r} must be a mapping")
    resolved: dict[str, Any] = dict(section)
    cls = _config_classes()[stage]
    names = {f[0] for f in cls.options()}
    for key in SHARED_KEYS:
        if key in names and key not in resolved and recipe.get(key) is not None:
            resolved[key] = recipe[key]
    out = _stage_dir(recipe, stage)
    if out is not None:
        resolved.setdefault("output_dir", out)
    sft_dir = _stage_dir(recipe, "sft")
    corpus = recipe.get("data")
    if stage == "sft":
        if recipe.get("model") is not None:
            resolved.setdefault("model", recipe["model"])
        if corpus:
            resolved.setdefault("data", corpus)
    elif stage == "sample":
        if sft_dir:
            resolved.setdefault("model", sft_dir)
        if corpus:
            resolved.setdefault("data", corpus)
    elif stage == "augment":
        sample_dir = _stage_dir(recipe, "sample")
        if sample_dir:
            resolved.setdefault("data", [str(Path(sample_dir) / "hard.jsonl")])
    elif stage == "rl":
        if sft_dir:
            resolved.setdefault("model", sft_dir)
        augment_dir = _stage_dir(recipe, "augment")
        if augment_dir:
            resolved.setdefault("data", [str(Path(augment_dir) / "augmented.jsonl")])
    return resolved


def stage_config(recipe: Mapping[str, Any], stage: str, overrides: Mapping[str, Any] | None = None) -> Config:
    """The validated config object of one stage (overrides win over the recipe)."""
    settings = {**resolve_stage(recipe, stage), **dict(overrides or {})}
    return _config_classes()[stage].from_dict(settings)


@dataclass(frozen=True)
class PipelineResult:
    """Outputs of each stage that ran (or was found done), and the final model directory."""

    stages: dict[str, Any] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    final_model: str | None = None


#: Stage name -> "module:function" running it with its config object.
STAGE_RUNNERS: dict[str, str] = {
    "sft": "guardrail.training.sft:train_sft",
    "sample": "guardrail.training.rejection:rejection_sample",
    "augment": "guardrail.training.augment:augment_dataset",
    "rl": "guardrail.training.rl:train_rl",
}


def run_stage(stage: str, config: Config, **kwargs: Any) -> Any:
    """Run one stage with its config object."""
    module, _, func = STAGE_RUNNERS[stage].partition(":")
    return getattr(importlib.import_module(module), func)(config, **kwargs)


def run_pipeline(
    recipe: RecipeConfig | Mapping[str, Any], *, stage_kwargs: Mapping[str, Mapping[str, Any]] | None = None
) -> PipelineResult:
    """Run the recipe's stages in order; every stage config is validated before the first runs.

    ``stage_kwargs`` passes keyword arguments to a stage's runner (``{"sft": {"callbacks": [...]}}``,
    ``{"sample": {"backend": ...}}``).
    """
    cfg = recipe if isinstance(recipe, RecipeConfig) else RecipeConfig.from_dict(recipe)
    raw = cfg.to_dict()
    configs = {stage: stage_config(raw, stage) for stage in cfg.stages}  # all checked up front
    results: dict[str, Any] = {}
    skipped: list[str] = []
    final = None
    for stage in cfg.stages:
        config = configs[stage]
        out = Path(getattr(config, "output_dir", None) or ".")
        done = out / DONE_FILE
        if done.exists() and not cfg.force:
            log.info("%s: already done (%s); skipping (force: true redoes it)", stage, done)
            skipped.append(stage)
            results[stage] = json.loads(done.read_text(encoding="utf-8")).get("result")
        else:
            log.info("%s: starting", stage)
            kwargs = dict((stage_kwargs or {}).get(stage, {}))
            result = _on_main_process(stage, functools.partial(run_stage, stage, config, **kwargs))
            results[stage] = result
            if _is_main_process():
                out.mkdir(parents=True, exist_ok=True)
                done.write_text(
                    json.dumps(
                        {"stage": stage, "config": config.to_dict(), "result": _summary(result)},
                        indent=2,
                        default=str,
                    )
                    + "\n",
                    encoding="utf-8",
                )
        if stage in ("sft", "rl"):
            final = str(out)
    return PipelineResult(results, tuple(skipped), final)


def _summary(result: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(result):
        data = asdict(result)
        data.pop("log_history", None)
        data.pop("kept", None)
        return data
    return result


def _world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def _on_main_process(stage: str, fn: Callable[[], Any]) -> Any:
    """Training stages run in every process (accelerate launch); the others on the main one."""
    if stage in ("sft", "rl") or _world_size() == 1:
        return fn()
    from accelerate import PartialState

    state = PartialState()
    result = fn() if state.is_main_process else None
    state.wait_for_everyone()
    return result
