"""GRPO on rows with video and audio (GuardReasoner-Omni, and GuardReasoner-VL on video).

TRL's ``GRPOTrainer`` hands the model images only: it renders chat prompts with the processor
and calls it with ``images=``. Clips need the processor's video and audio outputs
(``pixel_values_videos``/``video_grid_thw``/``video_second_per_grid``,
``input_features``/``feature_attention_mask``) both when the rollouts are generated and in
every forward pass that computes per-token log-probabilities. So, as SFT does
(:mod:`guardrail.training.media`), every prompt of such a run is encoded by the inference path
itself - :meth:`MediaCollator.encode_prompt`: :func:`guardrail.inputs.prepare` decodes and
samples the clips with the profile's ``VideoSampling`` under ``InputLimits`` and renders the
prompt, and the transformers backend tokenizes it and runs the processor - and the trainer is
told about it at three narrow points:

- ``_generate_and_score_completions``: encodes the generation batch (each distinct sample once;
  GRPO repeats a prompt ``num_generations`` times) and keeps each row's media tensors with the
  batch under :data:`MEDIA_KEY`, a per-row list that TRL shuffles and splits with the rest;
- ``_tokenize_prompts``: the prompt ids and the generation batch's media tensors (the model's
  ``generate`` merges them as a check does);
- ``_get_per_token_logps_and_entropies``: per chunk of rows, the chunk's media tensors are
  added to TRL's own forward call (a forward pre-hook for that call only), for the rollouts'
  old log-probabilities and for the loss (``_compute_loss`` names the rows' media).

TRL's prompt column holds the rendered prompt text (what completions are logged against); the
request itself travels in ``request``/``response``/``image_files``/``video_files``/
``audio_files``. vLLM rollouts see token ids only, so clip rows refuse ``use_vllm``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from guardrail.errors import ConfigurationError
from guardrail.profiles import Profile
from guardrail.samples import Sample

__all__ = ["MEDIA_KEY", "media_rl_rows", "media_trainer_class", "needs_media_rl"]

#: The generation batch's key holding each row's ``(media, grid)`` as the backend encoded it.
MEDIA_KEY = "guard_media"


def needs_media_rl(profile: Profile, examples: Sequence[Sample]) -> bool:
    """Rows with videos or audios, or a profile whose prompts carry a media layout (its media
    tokens and image cap are the backend's, not the chat template's)."""
    from guardrail.training.media import needs_media_collator

    return needs_media_collator(profile, examples)


def media_rl_rows(examples: Sequence[Sample], profile: Profile) -> list[dict[str, Any]]:
    """GRPO rows whose prompts the trainer encodes through the inference path."""
    rows = []
    for ex in examples:
        if ex.request_label is None:
            raise ConfigurationError(f"sample {ex.id} has no request label")
        row = {
            "id": ex.id,
            "prompt": profile.render(ex.moderation_input()).text,
            "request": ex.prompt,
            "response": ex.response,
            "image_files": list(ex.images),
            "video_files": list(ex.videos),
            "audio_files": list(ex.audios),
            "request_label": ex.request_label,
            "response_label": ex.response_label,
        }
        if profile.trained_policy is not None:
            row["categories"] = list(ex.categories or ())
        rows.append(row)
    return rows


def _request(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "prompt": row.get("request"),
        "response": row.get("response"),
        "images": row.get("image_files") or [],
        "videos": row.get("video_files") or [],
        "audios": row.get("audio_files") or [],
    }


@contextmanager
def _extra_forward_kwargs(model: Any, extra: Mapping[str, Any]) -> Iterator[None]:
    """Add ``extra`` to the keyword arguments of ``model``'s forward calls inside the block."""
    if not extra:
        yield
        return

    def add(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, **extra}

    handle = model.register_forward_pre_hook(add, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def media_trainer_class(base: type, encoder: Any) -> type:
    """``base`` (a ``GRPOTrainer``) taking every prompt's ids and media from ``encoder`` (a
    :class:`~guardrail.training.media.MediaCollator` on the model being trained)."""
    from guardrail.backends import transformers_media

    backend = encoder._backend

    def media_kwargs(media: Sequence[tuple[Any, Any]], input_ids: Any) -> dict[str, Any]:
        """The model's media keywords for these rows (in order), marks from ``input_ids``."""
        if all(m is None for m, _ in media):
            return {}
        out = transformers_media.media_batch(backend, [(None, m, g) for m, g in media], input_ids)
        return {k: v.to(input_ids.device) for k, v in out.items()}

    class MediaGRPOTrainer(base):
        _guard_rollout: list | None = None  # (ids, media, grid) per row of the batch being generated
        _guard_media: list | None = None  # (media, grid) per row of the forward pass being made

        def _guard_encode(self, inputs: Sequence[Mapping[str, Any]]) -> list[tuple[list[int], Any, Any]]:
            done: dict[Any, tuple[list[int], Any, Any]] = {}
            out = []
            for row in inputs:
                key = row.get("id")
                if key not in done:
                    done[key] = encoder.encode_prompt(_request(row), key)
                out.append(done[key])
            return out

        def _generate_and_score_completions(self, inputs: list) -> dict[str, Any]:
            encoded = self._guard_encode(inputs)
            media = [(m, g) for _, m, g in encoded]
            self._guard_rollout, self._guard_media = encoded, media
            try:
                out = super()._generate_and_score_completions(inputs)
            finally:
                self._guard_rollout = self._guard_media = None
            out[MEDIA_KEY] = media
            return out

        def _tokenize_prompts(self, prompts: list) -> tuple[list, Any, dict]:
            encoded = self._guard_rollout
            if encoded is None:
                return super()._tokenize_prompts(prompts)
            if len(encoded) != len(prompts):
                raise RuntimeError("media rows and prompts out of step")  # pragma: no cover
            import torch
            from trl.trainer.utils import pad

            ids = [list(e[0]) for e in encoded]
            padded = pad(
                [torch.tensor(i) for i in ids],
                padding_value=self._tokenizer.pad_token_id,
                padding_side="left",
                pad_to_multiple_of=self.pad_to_multiple_of,
            )  # as TRL pads them for generate, so that per-token marks line up
            return ids, None, media_kwargs([(m, g) for _, m, g in encoded], padded)

        def _get_per_token_logps_and_entropies(
            self, model: Any, input_ids: Any, attention_mask: Any, logits_to_keep: int,
            batch_size: int | None = None, **kwargs: Any,
        ) -> tuple[Any, Any, Any]:  # fmt: skip
            media = self._guard_media
            parent = super()._get_per_token_logps_and_entropies
            if media is None:
                return parent(model, input_ids, attention_mask, logits_to_keep, batch_size, **kwargs)
            import torch

            n = input_ids.size(0)
            if len(media) != n:
                raise RuntimeError("media rows and the forward batch out of step")  # pragma: no cover
            size = batch_size or n
            logps, entropies, aux = [], [], []
            for start in range(0, n, size):
                end = min(start + size, n)
                extra = media_kwargs(media[start:end], input_ids[start:end])
                with _extra_forward_kwargs(model, extra):
                    lp, ent, ax = parent(
                        model, input_ids[start:end], attention_mask[start:end], logits_to_keep,
                        end - start, **kwargs,
                    )  # fmt: skip
                logps.append(lp)
                entropies.append(ent)
                aux.append(ax)
            return (
                torch.cat(logps, dim=0),
                torch.cat(entropies, dim=0) if entropies[0] is not None else None,
                torch.stack(aux).mean() if aux[0] is not None else None,
            )

        def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> Any:
            self._guard_media = inputs.get(MEDIA_KEY)
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self._guard_media = None

    return MediaGRPOTrainer
