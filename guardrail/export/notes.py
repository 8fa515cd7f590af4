"""What an export says about itself: the file's name, the tokenizer's pre-tokenizer, what
quantisation did to the weights, and how far the export agreed with the original model.

Used by :mod:`guardrail.export.gguf`; reads files only (``tensor_types`` needs the ``gguf``
package of the ``llamacpp`` extra).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guardrail._deps import require

__all__ = ["PARITY", "PRE_TOKENIZERS", "detect_pre_tokenizer", "fallback_note", "model_name", "tensor_types"]

#: Label agreement with the original transformers model on the demo held-out set (12 labels),
#: measured on the demo's tiny trained guard (issue 17; docs/backends/llamacpp.md). A tiny model is
#: far more sensitive to rounding than a real 3B/7B guard, but the order holds: check your own.
PARITY = {"f32": "12/12", "q8_0": "9/12", "q4_k_m": "7/12"}

#: Split regexes of the BPE pre-tokenizers llama.cpp knows -> its name for them. A tokenizer the
#: converter does not recognise by its hash (a retrained vocabulary) is declared by its regex.
PRE_TOKENIZERS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
    # o200k (gpt-4o, gpt-oss)
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+": "gpt-4o",
}
#: Names of recipe stage directories: a model saved in one is named after the run instead.
_STAGE_DIRS = ("sft", "rl")


def model_name(model_dir: str | os.PathLike[str]) -> str:
    """The default file stem of an export: the directory's name, or - for a model a recipe stage
    saved in ``runs/NAME/sft`` or ``runs/NAME/rl`` - ``NAME`` (``NAME-sft`` for the SFT model)."""
    path = Path(model_dir).resolve()
    if path.name in _STAGE_DIRS and (path / "guardrail-training.json").is_file() and path.parent.name:
        return path.parent.name if path.name == "rl" else f"{path.parent.name}-{path.name}"
    return path.name


def detect_pre_tokenizer(model_dir: str | os.PathLike[str]) -> str | None:
    """The llama.cpp pre-tokenizer name for the split regex of ``model_dir/tokenizer.json``
    (:data:`PRE_TOKENIZERS`), or None when there is none or it is not one llama.cpp knows."""
    try:
        data = json.loads((Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            if node.get("type") == "Split" and isinstance(node.get("pattern"), Mapping):
                regex = node["pattern"].get("Regex")
                if isinstance(regex, str):
                    found.append(regex)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data.get("pre_tokenizer"))
    names = {PRE_TOKENIZERS[r] for r in found if r in PRE_TOKENIZERS}
    return names.pop() if len(names) == 1 else None


def tensor_types(path: str | os.PathLike[str]) -> dict[str, int]:
    """How many tensors of a GGUF file have each type (``Q4_K``, ``Q8_0``, ``F32``...)."""
    gguf = require("gguf", extra="llamacpp")
    reader = gguf.GGUFReader(os.fspath(path), "r")
    counts: dict[str, int] = {}
    for tensor in reader.tensors:
        if len(tensor.shape) < 2:
            continue  # norms and biases stay f32 in every type
        name = getattr(tensor.tensor_type, "name", str(tensor.tensor_type))
        counts[name] = counts.get(name, 0) + 1
    return counts


#: The tensor types a quantisation aims at (a k-quant mixes its own levels).
_TARGET_TYPES = {"q8_0": {"Q8_0"}, "q6_k": {"Q6_K"}, "q5_k_m": {"Q5_K", "Q6_K"}, "q4_k_m": {"Q4_K", "Q6_K"}}


def fallback_note(path: str | os.PathLike[str], quant: str) -> str | None:
    """What llama.cpp's fallback did to a quantised file, and what it means for quality (None when
    every weight matrix got the requested type)."""
    target = _TARGET_TYPES.get(quant)
    if not target:
        return None
    try:
        counts = tensor_types(path)
    except Exception:  # noqa: BLE001 - a note must never fail an export
        return None
    total = sum(counts.values())
    other = {t: n for t, n in counts.items() if t not in target}
    if not other:
        return None
    kept = ", ".join(f"{n} as {t}" for t, n in sorted(other.items()))
    n = sum(other.values())
    rest = f"; the other {total - n} carry {quant}'s loss" if total > n else ""
    return (
        f"note: {n} of {total} weight matrices could not take {quant} (k-quants need rows that are a "
        f"multiple of 256 values) and llama.cpp stored them at a fallback type: {kept}. Those keep more "
        f"precision than {quant}, so this file is larger and closer to the original than a {quant} "
        f"file usually is{rest}. Check the export on held-out data (python -m guardrail eval run "
        "--backend llamacpp ...)."
    )
