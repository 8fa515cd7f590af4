"""The recipe runner: R-SFT -> rejection sampling -> augmentation -> GRPO from one recipe.

A recipe is a YAML mapping (``training/*.yaml``): top-level settings (``model``, ``output_dir``,
``data``, ``stages``, and ``profile``, ``profile_options``, ``policy``, ``seed``, ``on_bad_row``,
``image_root``, ``num_threads`` for every stage that has the field) and one section per stage
with the fields of its config. Each stage reads the previous stage's output unless its section
says otherwise (:func:`resolve_stage`). A finished stage leaves ``.stage-done.json`` in its
directory with the fingerprint of its settings and inputs (:mod:`~guardrail.training.fingerprint`);
:func:`run_pipeline` skips it on a rerun only when the fingerprint is the same, and refuses,
naming the differences, when it is not (``redo`` redoes named stages and the ones after them,
``force`` every stage). ``push_to_hub: org/name`` uploads the final model with its card after
the last stage (:mod:`~guardrail.training.push`). The recipe format and the stages' outputs are described in
``docs/training.md`` (*Recipes*).
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail.errors import ConfigurationError
from guardrail.training.config import Config, option
from guardrail.training.fingerprint import DONE_FILE, differences, digest, stage_fingerprint

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
SHARED_KEYS = ("profile", "profile_options", "policy", "seed", "on_bad_row", "image_root", "num_threads",
               "min_parse_rate", "on_unusable_output")  # fmt: skip
RUN_FILE = ".stage-run.json"


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
    policy: str | None = option(
        None, "train on your own policy: a policy YAML file (or built-in name) for every stage"
    )
    seed: int = option(42, "random seed for every stage")
    on_bad_row: str | None = option(None, "skip or fail, for every stage")
    image_root: str | None = option(None, "image root for every stage")
    num_threads: int | None = option(None, "torch CPU threads for every training stage")
    min_parse_rate: float | None = option(
        None, "sample and rl: warn (or stop) when fewer answers than this share parse"
    )
    on_unusable_output: str | None = option(
        None, "sample and rl: warn or stop when answers are unusable", choices=("warn", "stop")
    )
    stages: list[str] = option(
        factory=lambda: list(STAGES), help="stages to run, in order: sft, sample, augment, rl"
    )
    validate_data: bool = option(
        True, "check every stage's data before the first stage runs (as the validate command does)"
    )
    force: bool = option(False, "redo every stage from scratch, even those already done")
    redo: list[str] = option(factory=list, help="redo these stages from scratch, and every stage after them")
    push_to_hub: str | None = option(
        None,
        "after the last stage, upload the final guard with its model card to this Hugging Face repo (org/name)",
    )
    hub_private: bool = option(False, "push_to_hub: create the repo private")
    hub_revision: str | None = option(
        None, "push_to_hub: branch to push to (created if missing; default main)"
    )
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
        if self.push_to_hub is not None:
            from guardrail.hub import looks_like_repo_id

            if not looks_like_repo_id(self.push_to_hub):
                raise ConfigurationError(
                    f"recipe.push_to_hub must be a Hugging Face repo id (org/name); got {self.push_to_hub!r}"
                )
            if not any(s in ("sft", "rl") for s in self.stages):
                raise ConfigurationError(
                    "recipe.push_to_hub: no stage of this recipe trains a model (sft or rl)"
                )
        unknown = [s for s in self.redo if s not in STAGES]
        if unknown:
            raise ConfigurationError(
                f"recipe.redo: unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}"
            )


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
    #: the commit URL when the recipe pushed the final model (``push_to_hub``)
    pushed: str | None = None


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
    if cfg.validate_data:
        check_data(raw, cfg.stages, configs)
    results: dict[str, Any] = {}
    skipped: list[str] = []
    final = None
    redo_from = min((cfg.stages.index(s) for s in cfg.redo if s in cfg.stages), default=None)
    for index, stage in enumerate(cfg.stages):
        config = configs[stage]
        out = Path(getattr(config, "output_dir", None) or ".")
        redo = cfg.force or (redo_from is not None and index >= redo_from)
        fingerprint = stage_fingerprint(config)
        key = digest(fingerprint)
        done = _read_record(out / DONE_FILE)
        if done is not None and not redo:
            if done.get("digest") != key:
                raise _stale(stage, out, "finished", done.get("fingerprint"), fingerprint)
            log.info("%s: already done with the same settings and data (%s); skipping", stage, out)
            skipped.append(stage)
            results[stage] = done.get("result")
        else:
            started = _read_record(out / RUN_FILE)
            leftovers = _resumable_state(out)
            if leftovers and started is not None and started.get("digest") != key and not redo:
                raise _stale(stage, out, "interrupted", started.get("fingerprint"), fingerprint)
            if redo and (done is not None or started is not None or leftovers):
                config = _start_over(stage, config, out)
            log.info("%s: starting", stage)
            _write_record(out / RUN_FILE, {"stage": stage, "digest": key, "fingerprint": fingerprint})
            kwargs = dict((stage_kwargs or {}).get(stage, {}))
            result = _on_main_process(stage, functools.partial(run_stage, stage, config, **kwargs))
            results[stage] = result
            _write_record(
                out / DONE_FILE,
                {
                    "stage": stage,
                    "digest": key,
                    "fingerprint": fingerprint,
                    "config": config.to_dict(),
                    "result": _summary(result),
                },
            )
        if stage in ("sft", "rl"):
            final = str(out)
    pushed = None
    if cfg.push_to_hub and final and _is_main_process():
        from guardrail.training.push import push_model

        log.info("pushing %s to %s", final, cfg.push_to_hub)
        pushed = push_model(
            final, cfg.push_to_hub, private=cfg.hub_private, revision=cfg.hub_revision
        ).commit_url
    return PipelineResult(results, tuple(skipped), final, pushed)


def check_data(raw: Mapping[str, Any], stages: list[str], configs: Mapping[str, Config]) -> list[Any]:
    """Validate the user data of ``stages`` (:mod:`~guardrail.training.validate`), log the
    summaries, and raise DataError for contradictions or bad rows under ``on_bad_row: fail``."""
    from guardrail.training.validate import check_summaries, validate_stages

    summaries = validate_stages(raw, stages)
    for summary in summaries:
        for line in summary.lines():
            log.info("%s", line)
        if summary.issues and not summary.contradictions:
            log.warning(
                "%s: %d of %d rows will be dropped (%s); set on_bad_row: fail to stop instead",
                summary.stage,
                len(summary.issues),
                summary.rows,
                ", ".join(f"{k} {v}" for k, v in summary.dropped.items()),
            )
    check_summaries(summaries, {s: getattr(configs[s], "on_bad_row", "skip") for s in stages})
    return summaries


def _stale(
    stage: str, out: Path, state: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> ConfigurationError:
    changes = differences(stage, old, new)
    shown = "\n".join(f"  {c}" for c in changes)
    what = (
        "finished with other settings or data"
        if state == "finished"
        else "was interrupted while running with other settings or data (resuming would mix them)"
    )
    return ConfigurationError(
        f"{stage}: the run in {out} {what}:\n{shown}\n"
        f"Its result is not reused. Redo it and the stages after it with --redo {stage} "
        f"(recipe: redo: [{stage}]), redo everything with --force true, or give another --output_dir."
    )


def _resumable_state(out: Path) -> bool:
    """Whether an earlier run left state a rerun would continue from (checkpoints, progress)."""
    if (out / "progress.jsonl").is_file():
        return True
    return any(p.is_dir() for p in out.glob("checkpoint-*")) if out.is_dir() else False


def _start_over(stage: str, config: Config, out: Path) -> Config:
    """Remove what an earlier run of ``stage`` left in ``out`` (its record, checkpoints, sampling
    progress) so the stage starts from scratch, not from the old run's state."""
    if _is_main_process():
        (out / DONE_FILE).unlink(missing_ok=True)
        (out / RUN_FILE).unlink(missing_ok=True)
        (out / "progress.jsonl").unlink(missing_ok=True)
        for checkpoint in out.glob("checkpoint-*"):
            if checkpoint.is_dir():
                shutil.rmtree(checkpoint)
        log.info("%s: starting over in %s (earlier run's record and checkpoints removed)", stage, out)
    _wait_for_everyone()
    if stage in ("sft", "rl") and getattr(config, "resume", "auto") == "auto":
        return config.replace(resume="never")
    if stage == "sample":
        return config.replace(resume=False)
    return config


def _read_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_record(path: Path, record: Mapping[str, Any]) -> None:
    if _is_main_process():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    _wait_for_everyone()


def _wait_for_everyone() -> None:
    if _world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


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
