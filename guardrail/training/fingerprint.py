"""What a recipe stage ran with: its settings and its inputs, hashed, so that a rerun reuses a
finished stage only when nothing that shapes its output has changed.

A stage's fingerprint is ``{"settings": ..., "inputs": ...}``:

- ``settings``: the stage config's fields, without the ones that do not change the result
  (:data:`IGNORED`: where progress goes, how often it is logged or saved, threads, resume);
- ``inputs``: the SHA-256 of every data file's bytes (and of the policy file, when training on
  one), and the model: for a directory another
  stage wrote, that stage's own fingerprint digest (so a redone SFT invalidates everything
  trained from it); for another directory, the digest of its ``config.json`` and the names and
  sizes of its files; for a hub id, the id.

Image files referenced by the rows are identified by their paths in the rows (hashed with the
data file), not by their bytes. :func:`differences` says, in words, what changed between two
fingerprints. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["IGNORED", "differences", "digest", "file_digest", "model_digest", "stage_fingerprint"]

#: Config fields that do not change what a stage produces.
IGNORED = frozenset(
    {
        "output_dir",
        "resume",
        "disable_tqdm",
        "report_to",
        "num_threads",
        "dataloader_num_workers",
        "logging_steps",
        "save_steps",
        "save_total_limit",
        "keep_checkpoints",
        "min_parse_rate",
        "min_format_reward",
        "on_unusable_output",
    }
)

#: What a finished stage leaves in its directory (also read here, to chain fingerprints).
DONE_FILE = ".stage-done.json"
_CHUNK = 1 << 20


def digest(value: Any) -> str:
    """SHA-256 of ``value`` as canonical JSON."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's bytes, or ``missing`` when there is no such file."""
    p = Path(path)
    if not p.is_file():
        return "missing"
    h = hashlib.sha256()
    with p.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def model_digest(model: str | None) -> str | None:
    """How the model a stage starts from is identified (see the module docstring)."""
    if not model:
        return None
    p = Path(model)
    if not p.is_dir():
        return f"hub:{model}"
    done = p / DONE_FILE
    if done.is_file():
        try:
            recorded = json.loads(done.read_text(encoding="utf-8")).get("digest")
        except (OSError, json.JSONDecodeError):
            recorded = None
        if recorded:
            return f"stage:{recorded}"
    files = sorted(
        (f.name, f.stat().st_size)
        for f in p.iterdir()
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".json", ".model", ".jinja", ".txt")
    )
    return "dir:" + digest({"config": file_digest(p / "config.json"), "files": files})


def stage_fingerprint(config: Any) -> dict[str, Any]:
    """The fingerprint of a stage config (see the module docstring)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in IGNORED}
    inputs: dict[str, Any] = {}
    for path in getattr(config, "data", None) or []:
        inputs[f"data file {path}"] = file_digest(path)
    policy = getattr(config, "policy", None)
    if policy and Path(policy).is_file():  # the policy's text shapes the prompts and targets
        inputs[f"policy file {policy}"] = file_digest(policy)
    model = model_digest(getattr(config, "model", None))
    if model is not None:
        inputs["model"] = model
    return {"settings": settings, "inputs": inputs}


def differences(section: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """What changed from ``old`` to ``new``, one line each (``sft.learning_rate: 0.003 -> 0.001``)."""
    if not old or "settings" not in old:
        return ["the earlier run recorded no fingerprint (an older guardrail version)"]
    out = []
    before, after = old.get("settings", {}), new.get("settings", {})
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            out.append(f"{section}.{key}: {_short(before.get(key))} -> {_short(after.get(key))}")
    before, after = old.get("inputs", {}), new.get("inputs", {})
    for key in sorted(set(before) | set(after)):
        if key not in before:
            out.append(f"{key}: new input")
        elif key not in after:
            out.append(f"{key}: no longer an input")
        elif before[key] != after[key]:
            if key == "model" and str(after[key]).startswith("stage:"):
                out.append("model: the stage it starts from was redone since")
            else:
                out.append(f"{key}: contents changed")
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
