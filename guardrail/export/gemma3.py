"""ShieldGemma 2 re-packed as the Gemma 3 it is, for llama.cpp's converter.

``ShieldGemma2ForImageClassification`` is a ``Gemma3ForConditionalGeneration`` (kept whole, LM
head included) plus a read-out of two logits (``Yes``, ``No``) of the next token. llama.cpp's
converter has no ShieldGemma 2 class but converts Gemma 3 (language model + ``gemma3`` mmproj),
and scoring ``Yes``/``No`` as continuations *is* the classifier. :func:`repack_shieldgemma2`
writes the same weights under Gemma 3's names and configuration into a new directory:

- ``config.json``: ``model_type`` ``gemma3``, ``Gemma3ForConditionalGeneration``, the same
  ``text_config`` / ``vision_config`` and image token ids (the two classifier indices dropped);
- weights, shard by shard (no shard is held twice): ``model.model.language_model.*`` ->
  ``language_model.*``, ``model.lm_head.*`` -> ``language_model.lm_head.*``,
  ``model.model.vision_tower.*`` -> ``vision_tower.vision_model.*`` (SigLIP's own layout),
  ``model.model.multi_modal_projector.*`` -> ``multi_modal_projector.*``; tensors are copied
  unchanged (same dtype);
- tokenizer and processor files as they are, and ``preprocessor_config.json`` from the
  processor's image processor with its ``image_seq_length`` (the mmproj's pooling reads it).

No transformers model is built; only ``safetensors`` (with torch, which the converter needs
anyway) is used.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail.errors import ConfigurationError

__all__ = ["gguf_model_name", "repack_shieldgemma2"]

_RENAMES = (
    ("model.model.language_model.", "language_model."),
    ("model.lm_head.", "language_model.lm_head."),
    ("model.model.vision_tower.vision_model.", "vision_tower.vision_model."),
    ("model.model.vision_tower.", "vision_tower.vision_model."),
    ("model.model.multi_modal_projector.", "multi_modal_projector."),
)
_COPIED = (
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
    "added_tokens.json", "chat_template.jinja", "chat_template.json", "processor_config.json",
    "generation_config.json",
)  # fmt: skip
_CLASSIFIER_KEYS = ("yes_token_index", "no_token_index", "guardrail_profile")


def gemma3_tensor_name(name: str) -> str:
    """ShieldGemma 2's checkpoint name of a tensor -> Gemma 3's (see the module docstring)."""
    for old, new in _RENAMES:
        if name.startswith(old):
            return new + name[len(old) :]
    raise ConfigurationError(
        f"unexpected ShieldGemma 2 tensor {name!r}: not a ShieldGemma2ForImageClassification"
    )


def gguf_model_name(name: str) -> str:
    """The GGUF's ``general.name``: the family must be readable from it (the file's architecture
    is a plain ``gemma3``), so a name without ``shieldgemma`` in it gets the prefix."""
    low = name.lower().replace("_", "-")
    return name if ("shieldgemma-2" in low or "shieldgemma2" in low) else f"shieldgemma-2-{name}"


def repack_shieldgemma2(model_dir: str | Path, out_dir: str | Path) -> Path:
    """Write ``model_dir`` (a ShieldGemma 2 checkpoint) as a Gemma 3 checkpoint in ``out_dir``."""
    st = require("safetensors.torch", extra="transformers", package="safetensors", feature="GGUF export")
    from safetensors import safe_open

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    config: dict[str, Any] = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "shieldgemma2":
        raise ConfigurationError(f"{model_dir} is not a ShieldGemma 2 checkpoint")
    out_dir.mkdir(parents=True, exist_ok=True)
    gemma = {k: v for k, v in config.items() if k not in _CLASSIFIER_KEYS}
    gemma.update(model_type="gemma3", architectures=["Gemma3ForConditionalGeneration"])
    (out_dir / "config.json").write_text(json.dumps(gemma, indent=2) + "\n", encoding="utf-8")

    shards = sorted(model_dir.glob("*.safetensors"))
    if not shards:
        raise ConfigurationError(f"{model_dir} has no *.safetensors weights (re-packing needs them)")
    weight_map: dict[str, str] = {}
    for shard in shards:
        tensors = {}
        with safe_open(str(shard), "pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                tensors[gemma3_tensor_name(key)] = f.get_tensor(key)
        st.save_file(tensors, str(out_dir / shard.name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, shard.name))
        del tensors
    if len(shards) > 1:
        index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")

    for fname in _COPIED:
        if (model_dir / fname).is_file():
            shutil.copyfile(model_dir / fname, out_dir / fname)
    processor = _read_json(model_dir / "processor_config.json")
    pre = _read_json(model_dir / "preprocessor_config.json") or dict(processor.get("image_processor") or {})
    if "image_seq_length" in processor:
        pre.setdefault("image_seq_length", processor["image_seq_length"])
    pre.setdefault("image_seq_length", config.get("mm_tokens_per_image", 256))
    (out_dir / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}
