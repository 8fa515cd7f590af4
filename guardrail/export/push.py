"""Upload exported GGUF files to the Hugging Face Hub with a model card.

``python -m guardrail export gguf --model DIR --out gguf/ --quant q4_k_m --push org/name-GGUF`` or
:func:`push_gguf`. What goes up: the language-model GGUF, its mmproj, ``guardrail_policy.yaml``
when the source directory has one, and ``README.md``: how to load the files with
``Guard.from_gguf("org/name-GGUF", filename=..., mmproj=...)``, the table of the repo's GGUF files
(earlier pushes of other quantisations are kept and listed), the quantisation caveat, and what
the source guard was trained from (its ``guardrail-training.json``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail.errors import HubError
from guardrail.export.gguf import QUANT_TYPES, GGUFFiles, parity_note

__all__ = ["GGUFPushResult", "push_gguf", "render_gguf_card"]

log = logging.getLogger("guardrail.export")

POLICY_FILE = "guardrail_policy.yaml"


@dataclass(frozen=True)
class GGUFPushResult:
    repo_id: str
    commit_url: str
    files: tuple[str, ...]


def push_gguf(
    files: GGUFFiles,
    repo_id: str,
    *,
    source_model: str | Path | None = None,
    base_model: str | None = None,
    private: bool = False,
    revision: str | None = None,
    token: str | bool | None = None,
) -> GGUFPushResult:
    """Upload ``files`` (what :func:`~guardrail.export.export_gguf` returned) to ``repo_id``.
    ``source_model``: the exported directory (profile, training lineage, policy file);
    ``base_model``: the Hub id of the model the GGUF files quantise, for the card's metadata."""
    from guardrail import hub

    upload: dict[str, Any] = {files.model.name: files.model}
    if files.mmproj is not None:
        upload[files.mmproj.name] = files.mmproj
    source = Path(source_model) if source_model is not None else None
    if source is not None and (source / POLICY_FILE).is_file():
        upload[POLICY_FILE] = source / POLICY_FILE
    existing: tuple[str, ...] = ()
    try:
        existing = hub.list_repo(repo_id, revision, token=token).files
    except HubError as exc:
        if exc.reason != "not_found":
            raise
    ggufs = sorted(
        {f for f in existing if f.lower().endswith(".gguf")} | {n for n in upload if n.endswith(".gguf")}
    )
    card = render_gguf_card(repo_id, files, ggufs, source=source, base_model=base_model)
    upload["README.md"] = card.encode("utf-8")
    url = hub.upload(
        repo_id, upload, private=private, revision=revision, token=token,
        commit_message=f"Upload {files.quant} GGUF exported with guardrail",
    )  # fmt: skip
    log.info("pushed %s to %s", ", ".join(sorted(upload)), repo_id)
    return GGUFPushResult(repo_id, url, tuple(sorted(upload)))


def _profile(source: Path | None) -> str | None:
    if source is None:
        return None
    from guardrail.profiles import profile_for_model_type
    from guardrail.training.card import lineage

    chain = lineage(source)
    if chain and chain[-1].get("profile"):
        return str(chain[-1]["profile"])
    try:
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return profile_for_model_type(config.get("model_type"), config)


def render_gguf_card(
    repo_id: str,
    files: GGUFFiles,
    ggufs: list[str],
    *,
    source: Path | None = None,
    base_model: str | None = None,
) -> str:
    """The README of a GGUF repo (see the module docstring)."""
    from guardrail.training.card import lineage

    profile = _profile(source) or "guardreasoner-vl"
    models = [g for g in ggufs if "mmproj" not in g.lower()]
    projs = [g for g in ggufs if "mmproj" in g.lower()]
    quant = files.quant
    pattern = f"*{quant}.gguf"
    mm_arg = ""
    if files.mmproj is not None:
        mm_arg = ', mmproj="*mmproj*"' if len(projs) == 1 else f', mmproj="{files.mmproj.name}"'
    header = ["---", "library_name: gguf"]
    if base_model:
        header += [f"base_model: {json.dumps(base_model)}", "base_model_relation: quantized"]
    header += [f"tags: [gguf, llama.cpp, guardrail, guard-model, content-moderation, {profile}]", "---", ""]
    name = repo_id.rsplit("/", 1)[-1]
    lines = [
        *header,
        f"# {name}",
        "",
        f"GGUF files of a `{profile}` guard model for llama.cpp (CPU, on-device moderation), "
        "converted with llama.cpp's own converter by `python -m guardrail export gguf`"
        + (f" from [`{base_model}`](https://huggingface.co/{base_model})." if base_model else "."),
        "",
        "## Use it",
        "",
        "```python",
        "from guardrail import Guard   # pip install 'guardrail-vl[llamacpp,hub]'",
        "",
        f'guard = Guard.from_gguf("{repo_id}", filename="{pattern}"{mm_arg})',
        'verdict = guard.moderate(prompt="How do I bake bread?")',
        "print(verdict.allowed, verdict.reasoning)",
        "```",
        "",
        f'or `python -m guardrail check --backend llamacpp --model {repo_id} --prompt "..."` '
        "(with one model file in the repo). Offline (`HF_HUB_OFFLINE=1`), the files come from the "
        "Hugging Face cache.",
        "",
        "## Files",
        "",
        "| file | kind |",
        "|---|---|",
    ]
    for g in models:
        q = g[: -len(".gguf")].rsplit("-", 1)[-1].lower()
        lines.append(
            f"| `{g}` | language model, {q}" + (f": {QUANT_TYPES[q].note}" if q in QUANT_TYPES else "") + " |"
        )
    for g in projs:
        lines.append(f"| `{g}` | vision projector (mmproj), needed for images |")
    lines += ["", f"Caveat: {parity_note(quant)}", ""]
    chain = lineage(source) if source is not None else []
    if chain:
        base = chain[0].get("base_model") or "unknown"
        stages = " -> ".join(str(i.get("stage")) for i in chain)
        lines += ["## Source", "", f"Trained by `python -m guardrail.training` ({stages}) from `{base}`.", ""]
    if source is not None and (source / POLICY_FILE).is_file():
        lines += [f"The guard's policy is in `{POLICY_FILE}`.", ""]
    return "\n".join(lines)
