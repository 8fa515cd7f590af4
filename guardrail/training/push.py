"""Upload a trained guard to the Hugging Face Hub with its model card.

``python -m guardrail.training push --model DIR --repo org/name [--private] [--revision BRANCH]``,
``push_to_hub: org/name`` in a recipe (after its last stage), or :func:`push_model`.

What goes up: the model directory as :func:`~guardrail.training.model.save_guard_model` and
:func:`~guardrail.training.card.finish_model_dir` left it (weights, configs, tokenizer or
processor, ``training_config.yaml``, ``guardrail-training.json``, ``guardrail_policy.yaml`` when
present), with ``README.md`` rendered for the repo: base model, stages and hyper-parameters,
data, profile and policy, and the evaluation found beside the model (``eval_report.json`` or
``eval/``, see :func:`~guardrail.training.card.find_evaluation`) as a table and ``model-index``
metadata. Left out: checkpoints, hidden files (the stage records), evaluation outputs (they hold
benchmark texts), ``training_args.bin``, ``runs/`` and anything matching ``exclude``. The local
directory is not changed.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail.errors import ConfigurationError
from guardrail.training.card import CARD_FILE, EVAL_DIRS, EVAL_REPORTS, find_evaluation, lineage, render_card

__all__ = ["PushResult", "model_files", "push_model"]

log = logging.getLogger("guardrail.training")

SKIP_DIRS = ("checkpoint-*", "runs", "__pycache__", *EVAL_DIRS)
SKIP_FILES = ("training_args.bin", "progress.jsonl", "*.pyc", *EVAL_REPORTS, CARD_FILE)


@dataclass(frozen=True)
class PushResult:
    """Where the guard went: the repo, the commit URL, the files uploaded (``README.md`` first)."""

    repo_id: str
    commit_url: str
    files: tuple[str, ...]
    evaluation: str | None = None


def model_files(model_dir: str | Path, exclude: Sequence[str] = ()) -> dict[str, Path]:
    """Path in the repo -> local file, for the files of ``model_dir`` that are uploaded."""
    root = Path(model_dir)
    files: dict[str, Path] = {}
    for dirpath, dirnames, names in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not any(fnmatch.fnmatch(d, p) for p in SKIP_DIRS)
        )
        for name in sorted(names):
            rel = (rel_dir / name).as_posix()
            if name.startswith(".") or any(fnmatch.fnmatch(name, p) for p in SKIP_FILES):
                continue
            if any(fnmatch.fnmatch(rel, p) for p in exclude):
                continue
            files[rel] = Path(dirpath) / name
    return files


def push_model(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    evaluation: str | Path | None = None,
    exclude: Sequence[str] = (),
    commit_message: str | None = None,
    token: str | bool | None = None,
) -> PushResult:
    """Upload the trained guard in ``model_dir`` to ``repo_id`` (created if missing) with a model
    card rendered for it. ``evaluation``: predictions (``guardrail eval run`` output) or a JSON
    report to put on the card instead of the one found beside the model."""
    from guardrail import hub
    from guardrail.training.card import evaluation_rows, report_rows

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigurationError(f"no model directory at {model_dir}: no such file or directory")
    chain = lineage(model_dir)
    if not chain:
        raise ConfigurationError(
            f"{model_dir} has no guardrail-training.json: not a guard trained by guardrail.training "
            "(upload other directories with `hf upload`)"
        )
    if not (model_dir / "config.json").is_file():
        raise ConfigurationError(f"{model_dir} has no config.json: not a saved model")
    if evaluation is not None:
        source: Path | None = Path(evaluation)
        if source.is_file() and source.suffix == ".json":
            rows: list[dict[str, Any]] | None = report_rows(source)
        else:
            rows = evaluation_rows(source)
    else:
        rows, source = find_evaluation(model_dir)
    if source is not None:
        log.info("model card: evaluation from %s", source)
    card = render_card(model_dir, chain, rows, repo_id=repo_id)
    files: dict[str, Any] = {CARD_FILE: card.encode("utf-8")}
    files.update(model_files(model_dir, exclude))
    stages = " -> ".join(str(i.get("stage")) for i in chain)
    url = hub.upload(
        repo_id, files, private=private, revision=revision, token=token,
        commit_message=commit_message or f"Upload guard trained with guardrail ({stages})",
    )  # fmt: skip
    log.info("pushed %d files of %s to %s", len(files), model_dir, repo_id)
    return PushResult(repo_id, url, tuple(files), str(source) if source else None)
