"""Online RL: GRPO with the guard rewards and a dynamic clip range, on TRL's ``GRPOTrainer``.

Each sample becomes a GRPO row: the prompt the profile builds (what ``Guard`` sends), the image
paths (decoded on the fly) and the gold labels ``request_label`` / ``response_label``, which TRL
hands to the reward functions (:mod:`guardrail.training.rewards`). The paper's settings (no KL,
16 rollouts at temperature 1.2, the length-aware reward, clipping with
:mod:`guardrail.training.clipping`), the batch sizes (in completions, as in TRL) and the logged
metrics are described in ``docs/training.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guardrail._deps import require
from guardrail.errors import ConfigurationError
from guardrail.profiles import Profile
from guardrail.samples import Sample
from guardrail.training.clipping import DEFAULT_SCHEDULE, SCHEDULES, ClipSchedule
from guardrail.training.config import TrainingConfig, option
from guardrail.training.dataset import check_chat_template, is_chat_profile, make_dataset, prompt_messages
from guardrail.training.health import RL_ADVICE, below_thresholds, health_callback, warn_unusable
from guardrail.training.model import load_model, peft_config, suppressed_token_ids
from guardrail.training.rewards import REWARDS, build_reward_funcs
from guardrail.training.rl_media import media_rl_rows, media_trainer_class, needs_media_rl
from guardrail.training.runtime import timer, torch_threads
from guardrail.training.trainer import TrainResult, metrics_callback, metrics_path, train_and_save

__all__ = ["RLConfig", "rl_rows", "train_rl"]

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")


@dataclass
class RLConfig(TrainingConfig):
    """Settings of ``python -m guardrail.training rl`` (recipe section ``rl``).

    Defaults follow the paper: lr 1e-6, weight decay 1e-2, 16 rollouts at temperature 1.2,
    clip epsilon 0.2, no KL.
    """

    section = "rl"

    learning_rate: float = option(1e-6, "learning rate")
    lr_scheduler_type: str = option("constant", "learning-rate schedule")
    weight_decay: float = option(1e-2, "AdamW weight decay")
    num_train_epochs: float = option(1.0, "passes over the RL data (ignored when max_steps > 0)")
    per_device_train_batch_size: int = option(16, "completions per device per micro-batch")
    num_generations: int = option(16, "rollouts per prompt (GRPO group size)")
    temperature: float = option(1.2, "sampling temperature of the rollouts")
    top_p: float = option(1.0, "nucleus sampling of the rollouts")
    max_completion_length: int = option(
        1024, "longest rollout in tokens; also the length that l_norm divides by"
    )
    steps_per_generation: int | None = option(
        None,
        "micro-batches per generation batch (default: 2 x gradient_accumulation_steps, two updates per rollout batch)",
    )
    num_iterations: int = option(1, "optimisation passes over each generation batch")
    beta: float = option(0.0, "KL coefficient (0: no KL term and no reference model, as in the paper)")
    loss_type: str = option("grpo", "TRL loss aggregation", choices=LOSS_TYPES)
    epsilon: float = option(0.2, "clip epsilon at the start of training")
    epsilon_high: float | None = option(
        None, "upper clip epsilon at the start (default: epsilon; DAPO's clip-higher)"
    )
    clip_schedule: str = option(
        DEFAULT_SCHEDULE, "how the clip range changes with the step", choices=tuple(SCHEDULES)
    )
    clip_epsilon_end: float | None = option(None, "clip epsilon at the last step (default: epsilon / 2)")
    rewards: list[str] = option(
        factory=lambda: ["format", "accuracy", "length_aware_safety"],
        help=f"reward functions, from: {', '.join(REWARDS)}",
    )
    reward_weights: list[float] | None = option(
        factory=lambda: [0.0, 0.0, 1.0],
        help="weight of each reward in the total (0: logged only); null: all 1",
    )
    length_beta: float = option(
        1.0, "cut-off beta of the length-aware reward (1: GuardReasoner-VL, 1/6: Eco)"
    )
    length_floor: float = option(
        0.05, "smallest l_norm used in the length term (guards the division for tiny outputs)"
    )
    use_vllm: bool = option(False, "generate rollouts with vLLM through TRL (GPU; untested here)")
    vllm_mode: str = option(
        "colocate",
        "vLLM in the training processes (colocate) or a separate trl vllm-serve (server)",
        choices=("colocate", "server"),
    )
    vllm_server_base_url: str | None = option(None, "URL of the trl vllm-serve server (server mode)")
    vllm_gpu_memory_utilization: float = option(0.3, "GPU memory share for colocated vLLM")
    log_completions: bool = option(False, "log sample completions (TRL's completions table)")
    min_parse_rate: float = option(
        0.5, "warn when fewer of a step's answers than this share can be parsed by the guard"
    )
    min_format_reward: float = option(
        0.5, "warn when a step's mean format reward (<think>...</think><result>...</result>) is below this"
    )
    on_unusable_output: str = option(
        "warn",
        "below min_parse_rate/min_format_reward: warn, or stop the run (no model saved)",
        choices=("warn", "stop"),
    )

    def validate(self) -> None:
        super().validate()
        if self.num_generations < 2:
            raise ConfigurationError(
                "rl.num_generations must be at least 2 (GRPO compares rollouts of a prompt)"
            )
        if self.temperature <= 0:
            raise ConfigurationError("rl.temperature must be positive (rollouts are sampled)")
        if not 0 < self.top_p <= 1:
            raise ConfigurationError("rl.top_p must be in (0, 1]")
        if self.max_completion_length < 8:
            raise ConfigurationError("rl.max_completion_length must be at least 8")
        if self.num_iterations < 1:
            raise ConfigurationError("rl.num_iterations must be at least 1")
        if self.steps_per_generation is not None and self.steps_per_generation < 1:
            raise ConfigurationError("rl.steps_per_generation must be at least 1")
        if self.beta < 0:
            raise ConfigurationError("rl.beta must be >= 0")
        try:
            self.clip()
        except ValueError as exc:
            raise ConfigurationError(f"rl: {exc}") from None
        if not self.rewards:
            raise ConfigurationError("rl.rewards: give at least one reward function")
        unknown = [r for r in self.rewards if r not in REWARDS]
        if unknown:
            raise ConfigurationError(f"rl.rewards: unknown {', '.join(unknown)}; known: {', '.join(REWARDS)}")
        if self.reward_weights is not None:
            if len(self.reward_weights) != len(self.rewards):
                raise ConfigurationError(
                    f"rl.reward_weights has {len(self.reward_weights)} values for {len(self.rewards)} rewards"
                )
            if not any(w != 0 for w in self.reward_weights):
                raise ConfigurationError("rl.reward_weights: at least one weight must be non-zero")
        if not 0 < self.length_beta <= 1:
            raise ConfigurationError("rl.length_beta must be in (0, 1]")
        if not 0 < self.length_floor <= self.length_beta:
            raise ConfigurationError("rl.length_floor must be in (0, length_beta]")
        if self.clip_schedule != "constant" and self.updates_per_generation() < 2:
            raise ConfigurationError(
                "rl: a dynamic clip schedule needs several optimizer updates per generation batch "
                "(num_iterations > 1 or steps_per_generation > gradient_accumulation_steps); with one "
                "update the policy ratio is 1 and clipping does nothing. Use clip_schedule: constant "
                "for on-policy training."
            )
        if not (0 <= self.min_parse_rate <= 1 and 0 <= self.min_format_reward <= 1):
            raise ConfigurationError("rl.min_parse_rate and rl.min_format_reward must be in [0, 1]")
        if self.use_vllm and self.vllm_mode == "server" and not self.vllm_server_base_url:
            raise ConfigurationError("rl.vllm_server_base_url is needed with vllm_mode: server")

    def clip(self) -> ClipSchedule:
        return ClipSchedule(self.clip_schedule, self.epsilon, self.clip_epsilon_end, self.epsilon_high)

    def effective_steps_per_generation(self) -> int:
        return self.steps_per_generation or 2 * self.gradient_accumulation_steps

    def updates_per_generation(self) -> int:
        """Optimizer updates made with each generation batch."""
        spg = self.effective_steps_per_generation()
        return self.num_iterations * max(spg // self.gradient_accumulation_steps, 1)


def rl_rows(examples: Sequence[Sample], profile: Profile) -> list[dict[str, Any]]:
    """GRPO rows (prompt, images, request_label, response_label, id; ``categories``, the gold
    codes, for a profile trained on a policy), prompts built by ``profile``. Rows with videos or
    audios, and every row of a profile with a media layout (GuardReasoner-Omni), are
    :func:`~guardrail.training.rl_media.media_rl_rows`: the trainer encodes their prompts as a
    check does."""
    if is_chat_profile(profile) and needs_media_rl(profile, examples):
        return media_rl_rows(examples, profile)
    rows = []
    for ex in examples:
        if ex.request_label is None:
            raise ConfigurationError(f"sample {ex.id} has no request label")
        prompt: Any = (
            prompt_messages(profile, ex)
            if is_chat_profile(profile)
            else profile.render(ex.moderation_input()).text
        )
        row = {
            "id": ex.id,
            "prompt": prompt,
            "request_label": ex.request_label,
            "response_label": ex.response_label,
        }
        if is_chat_profile(profile):
            row["images"] = list(ex.images)
        if profile.trained_policy is not None:  # the rewards score the categories too
            row["categories"] = list(ex.categories or ())
        rows.append(row)
    return rows


def _trainer_class(trl: Any) -> type:
    """TRL's GRPOTrainer, plus one fix for batches that mix text-only and image prompts.

    TRL 1.16 records a text-only prompt's images as ``None``; when a generation batch also holds
    image prompts it then calls the processor with that ``None`` in the image lists, which the
    Qwen2.5-VL processor rejects ("only a single or a list of entries is supported"). An empty
    list is what the processor expects for "no image", so the generated batch's image lists are
    normalised after generation; generation itself is untouched.
    """

    class GuardGRPOTrainer(trl.GRPOTrainer):
        def _generate(self, prompts: list) -> Any:
            out = super()._generate(prompts)
            if isinstance(out, tuple) and len(out) == 8 and out[6] is not None:
                images = [imgs if imgs is not None else [] for imgs in out[6]]
                out = (*out[:6], images, out[7])
            return out

    return GuardGRPOTrainer


def _skip_empty_image_chunks(model: Any) -> None:
    """Let the model take a chunk of rows without images in a batch that has some.

    TRL 1.16 computes log-probabilities of a generation batch in chunks of
    ``per_device_train_batch_size`` rows and hands each chunk its slice of ``pixel_values`` /
    ``image_grid_thw``: a chunk of text-only prompts gets empty tensors, on which the vision
    encoder fails. Such a chunk has no image tokens, so the empty inputs are dropped before the
    multimodal model runs (a forward pre-hook on it; every wrapper - PEFT, DDP, DeepSpeed -
    calls it through ``__call__``).
    """
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "get_image_features"):
        return

    def drop_empty(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        pixels = kwargs.get("pixel_values")
        if pixels is not None and getattr(pixels, "shape", (1,))[0] == 0:
            kwargs = {**kwargs, "pixel_values": None, "image_grid_thw": None}
            return args, kwargs
        return None

    inner.register_forward_pre_hook(drop_empty, with_kwargs=True)


def train_rl(config: RLConfig, *, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Run GRPO as ``config`` says and save a model ``Guard.from_pretrained`` loads.

    Resumes from the last checkpoint in ``output_dir`` unless ``resume="never"``. The returned
    result's ``log_history`` holds the logged metrics (also in ``metrics.jsonl``).
    """
    with torch_threads(config.num_threads):
        return _train_rl(config, callbacks)


def _train_rl(config: RLConfig, callbacks: Sequence[Any]) -> TrainResult:
    elapsed = timer()
    config.require_model()
    trl = require("trl", extra="training")
    from guardrail.training.clipping import DynamicClippingCallback

    data = config.load(require_target=False)
    profile = config.get_profile()
    rows = rl_rows(data.examples, profile)  # before the model loads: rows it cannot take fail here
    media = bool(rows) and "video_files" in rows[0]  # prompts encoded by the inference path
    if media and config.use_vllm:
        raise ConfigurationError(
            "rl.use_vllm: vLLM rollouts get token ids only, not the clips of video/audio rows (or "
            f"the {profile.name} profile's media layout); train them without vLLM"
        )
    names, weights = monitored_rewards(
        config.rewards, config.reward_weights, categories=profile.trained_policy is not None
    )
    kwargs: dict[str, Any] = dict(
        num_generations=config.num_generations,
        temperature=config.temperature,
        top_p=config.top_p,
        max_completion_length=config.max_completion_length,
        steps_per_generation=config.effective_steps_per_generation(),
        num_iterations=config.num_iterations,
        beta=config.beta,
        loss_type=config.loss_type,
        epsilon=config.epsilon,
        epsilon_high=config.epsilon_high,
        reward_weights=weights,
        use_vllm=config.use_vllm,
        vllm_mode=config.vllm_mode,
        vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
        log_completions=config.log_completions,
    )
    if config.vllm_server_base_url:
        kwargs["vllm_server_base_url"] = config.vllm_server_base_url
    trl_args = config.trl_config(trl.GRPOConfig, **kwargs)
    model, processor = load_model(config)
    _skip_empty_image_chunks(model)
    trl_args.generation_kwargs = {
        "suppress_tokens": suppressed_token_ids(processor),
        **(trl_args.generation_kwargs or {}),
    }
    check_chat_template(processor, profile, data.examples)
    dataset = make_dataset(rows, images=is_chat_profile(profile) and not media)
    rewards = build_reward_funcs(
        names,
        beta=config.length_beta,
        max_length=config.max_completion_length,
        floor=config.length_floor,
        profile=None if is_chat_profile(profile) and profile.trained_policy is None else profile,
    )
    clipping = DynamicClippingCallback(config.clip())
    health = health_callback(
        config.min_parse_rate, config.min_format_reward, stop=config.on_unusable_output == "stop"
    )
    trainer_class = _trainer_class(trl)
    if media:
        from guardrail.training.media import MediaCollator

        trainer_class = media_trainer_class(trainer_class, MediaCollator(model, processor, profile))
    trainer = trainer_class(
        model=model,
        reward_funcs=rewards,
        args=trl_args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config(config),
        callbacks=[clipping, health, metrics_callback(metrics_path(config)), *callbacks],
    )
    clipping.attach(trainer)
    result = train_and_save(trainer, processor, config, data, elapsed, before_save=health.raise_if_stopped)
    problems = below_thresholds(
        result.parse_rate,
        result.format_reward,
        min_parse_rate=config.min_parse_rate,
        min_format_reward=config.min_format_reward,
    )
    if problems:
        warn_unusable("rl", "over the whole run", problems, RL_ADVICE)
    return result


def monitored_rewards(
    names: Sequence[str], weights: Sequence[float] | None, *, categories: bool = False
) -> tuple[list[str], list[float]]:
    """The rewards TRL computes: the configured ones, plus ``format`` and ``parsed`` (and, when
    training on a policy, ``category``) with weight 0 when missing, so every run logs its format
    reward and parse rate (and category score)."""
    names = list(names)
    weights = list(weights) if weights is not None else [1.0] * len(names)
    for extra in ("format", "parsed", *(("category",) if categories else ())):
        if extra not in names:
            names.append(extra)
            weights.append(0.0)
    return names, weights
