"""SFT rows with video and audio (GuardReasoner-Omni, and GuardReasoner-VL on video).

TRL's vision collator only knows images, so rows with clips - and every row of a profile whose
prompts carry a media layout (GuardReasoner-Omni: its image cap, its media tokens) - are
collated here, with the inference path itself: :func:`guardrail.inputs.prepare` decodes and
samples the clips with the profile's ``VideoSampling`` (under ``InputLimits``, as a check does)
and renders the prompt, and :meth:`TransformersBackend.encode` turns it into token ids and the
processor's tensors. A trained guard thus sees in training exactly what ``Guard`` sends.

The completion is the target followed by ``<|im_end|>\\n`` (what the chat template puts after
an assistant turn, and what TRL's collator trains on); the loss covers the completion only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from guardrail.errors import ConfigurationError, DataError
from guardrail.profiles import Profile
from guardrail.samples import Sample

__all__ = ["MediaCollator", "media_sft_rows", "needs_media_collator", "row_media"]

#: What follows an assistant turn in the Qwen chat templates (the guards' families that take media).
TURN_END = "<|im_end|>\n"


def row_media(raw: Mapping[str, Any], base: Any, profile: Profile) -> dict[str, tuple[str, ...]]:
    """A ``guardrail`` row's ``videos`` and ``audios``: lists of file paths, relative to the
    data file like images (checked to exist; decoded, under the limits, when a batch is built);
    a profile that takes none of them makes the row bad."""
    from guardrail.training.data import _BadRow, _resolve_image

    out: dict[str, tuple[str, ...]] = {}
    for kind, supported in (("videos", "supports_video"), ("audios", "supports_audio")):
        value = raw.get(kind)
        if value is None or value == []:
            continue
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise _BadRow(f"'{kind}' must be a list of file paths")
        if not getattr(profile, supported, False):
            raise _BadRow(f"the {profile.name} profile takes no {kind}")
        try:
            out[kind] = tuple(_resolve_image(p, base, False) for p in value)
        except _BadRow as exc:
            raise _BadRow(str(exc).replace("image file", f"{kind[:-1]} file")) from None
    return out


def needs_media_collator(profile: Profile, examples: Sequence[Sample]) -> bool:
    """Rows with videos or audios, or a profile whose prompts carry a media layout."""
    if any(e.videos or e.audios for e in examples):
        return True
    return bool(getattr(profile, "supports_audio", False))


def media_sft_rows(examples: Sequence[Sample]) -> list[dict[str, Any]]:
    """Rows the :class:`MediaCollator` takes: the request and its media paths, the target."""
    rows = []
    for ex in examples:
        if ex.target is None:
            raise ConfigurationError(f"sample {ex.id} has no target text")
        rows.append({
            "id": ex.id, "prompt": ex.prompt, "response": ex.response, "images": list(ex.images),
            "videos": list(ex.videos), "audios": list(ex.audios), "completion": ex.target,
        })  # fmt: skip
    return rows


@dataclass
class MediaCollator:
    """Batches :func:`media_sft_rows` rows for the model: right-padded ids, completion-only
    labels, and the media tensors of the batch in order."""

    model: Any
    processor: Any
    profile: Profile
    max_length: int | None = None
    limits: Any = None
    _backend: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        from guardrail.backends.transformers import TransformersBackend
        from guardrail.inputs import InputLimits

        self._backend = TransformersBackend(self.model, self.processor)
        self.limits = self.limits or InputLimits()

    def encode_prompt(self, item: Mapping[str, Any], sample_id: Any = None) -> tuple[list[int], Any, Any]:
        """(prompt ids, media, grid) of one request (``prompt``, ``response``, ``images``,
        ``videos``, ``audios``): decoded, sampled and rendered by :func:`guardrail.inputs.prepare`
        and tokenized by the transformers backend, exactly as a check does (RL uses it too)."""
        from guardrail.errors import InputError
        from guardrail.inputs import prepare

        request = {"prompt": item.get("prompt"), "response": item.get("response")}
        for kind in ("images", "videos", "audios"):
            if item.get(kind):
                request[kind] = list(item[kind])
        try:
            prepared = prepare(self.profile, request, self.limits)
        except InputError as exc:
            raise DataError(f"sample {sample_id}: {exc}") from exc
        return self._backend.encode(prepared.prompt)

    def encode(self, row: Mapping[str, Any]) -> tuple[list[int], list[int], Any, Any]:
        """(prompt ids, completion ids, media, grid) of one row, as a check encodes its prompt."""
        ids, media, grid = self.encode_prompt(row, row.get("id"))
        tok = self._backend.tokenizer
        completion = tok.encode(row["completion"], add_special_tokens=False, split_special_tokens=True)
        completion += tok.encode(TURN_END, add_special_tokens=False)
        if self.max_length is not None:
            if len(ids) >= self.max_length:
                raise DataError(
                    f"sample {row.get('id')}: its prompt is {len(ids)} tokens (media included), over "
                    f"max_length {self.max_length}; raise sft.max_length or send shorter clips"
                )
            completion = completion[: self.max_length - len(ids)]
        return ids, completion, media, grid

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        from guardrail.backends import transformers_media

        torch = self._backend._torch
        encoded = [self.encode(r) for r in rows]
        width = max(len(p) + len(c) for p, c, _, _ in encoded)
        pad = self._backend._pad_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (prompt, completion, _, _) in enumerate(encoded):
            ids = prompt + completion
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[i, : len(ids)] = 1
            labels[i, len(prompt) : len(ids)] = torch.tensor(completion, dtype=torch.long)
        batch = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
        triples = [(p, media, grid) for p, _, media, grid in encoded]
        if any(media is not None for _, media, _ in triples):
            batch.update(transformers_media.media_batch(self._backend, triples, input_ids))
        return batch
