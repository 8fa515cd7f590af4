"""What a trained guard directory carries besides its weights: a model card, the resolved config.

After a training stage saves its model (:func:`~guardrail.training.model.save_guard_model`),
:func:`finish_model_dir` writes

- ``README.md``: the model card - base model, the stages that made it and their
  hyper-parameters, the data (samples, label balance, modalities, categories), the guard profile,
  the harm policy it was trained on (``guardrail_policy.yaml``) and the failure policy ``Guard`` applies, the training metrics, an evaluation table (from
  ``python -m guardrail.training card --model DIR --eval PREDICTIONS``), and how to load it;
- ``training_config.yaml``: the resolved settings of every stage that made the model (the
  same as ``guardrail-training.json``, readable);

and removes what only served training: ``checkpoint-*`` (unless ``keep_checkpoints``) and
TRL's ``training_args.bin`` (a pickle). TRL's stock card is replaced. Nothing here imports torch.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "POLICY_FILE",
    "STAGE_FILE",
    "find_evaluation",
    "finish_model_dir",
    "lineage",
    "model_index",
    "render_card",
    "write_card",
]

log = logging.getLogger("guardrail.training")

#: What a saved stage writes beside the model: the stage, its config, data and metrics.
STAGE_FILE = "guardrail-training.json"
CONFIG_FILE = "training_config.yaml"
CARD_FILE = "README.md"
#: A guard's policy, when its directory ships one: shown on the card and uploaded with the model.
POLICY_FILE = "guardrail_policy.yaml"
#: Where an evaluation beside the model is looked for (:func:`find_evaluation`), in this order.
EVAL_REPORTS = ("eval_report.json", "eval.json")
EVAL_DIRS = ("eval",)
_TASK_NAMES = {
    "request": "request harmfulness",
    "response": "response harmfulness",
    "refusal": "response refusal",
}

# Settings worth a line in the card (the rest is in training_config.yaml).
_CARD_FIELDS = {
    "sft": ("finetune", "learning_rate", "lr_scheduler_type", "num_train_epochs", "max_steps",
            "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "bf16", "seed"),
    "rl": ("finetune", "learning_rate", "lr_scheduler_type", "max_steps", "num_generations",
           "temperature", "max_completion_length", "rewards", "reward_weights", "length_beta", "beta",
           "clip_schedule", "epsilon", "per_device_train_batch_size", "gradient_accumulation_steps", "seed"),
}  # fmt: skip


def read_stage_file(model_dir: str | Path) -> dict[str, Any] | None:
    path = Path(model_dir) / STAGE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def lineage(model_dir: str | Path) -> list[dict[str, Any]]:
    """The training stages that made the model in ``model_dir``, oldest first (each stage's
    ``guardrail-training.json``, following ``base_model`` while it is a trained directory)."""
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    current: str | None = str(model_dir)
    while current and current not in seen:
        seen.add(current)
        info = read_stage_file(current)
        if info is None:
            break
        chain.append(info)
        current = info.get("base_model")
    return chain[::-1]


def finish_model_dir(out: str | Path, *, keep_checkpoints: bool = False) -> None:
    """Write the card and the visible config of a freshly saved model; remove training leftovers."""
    out = Path(out)
    chain = lineage(out)
    if not chain:
        return
    write_config(out, chain)
    write_card(out)
    (out / "training_args.bin").unlink(missing_ok=True)
    if not keep_checkpoints:
        for checkpoint in sorted(out.glob("checkpoint-*")):
            if checkpoint.is_dir():
                shutil.rmtree(checkpoint)
                log.info("removed %s (training finished; keep_checkpoints: true keeps them)", checkpoint)


def write_config(out: Path, chain: Sequence[Mapping[str, Any]]) -> Path:
    import yaml

    stages = {info.get("stage", f"stage{i}"): info.get("config", {}) for i, info in enumerate(chain)}
    text = (
        "# The resolved settings of every stage that made this model (oldest first).\n"
        "# Machine-readable copy with data and metrics: guardrail-training.json.\n"
        + yaml.safe_dump(stages, sort_keys=False, allow_unicode=True)
    )
    path = out / CONFIG_FILE
    path.write_text(text, encoding="utf-8")
    return path


def write_card(
    out: str | Path, evaluation: Sequence[Mapping[str, Any]] | None = None, *, repo_id: str | None = None
) -> Path:
    """(Re)write ``README.md`` of a trained guard directory; ``evaluation`` rows (``benchmark``,
    ``task``, ``n``, ``f1``, ``precision``, ``recall``, ``parse_failures``) fill its table."""
    out = Path(out)
    chain = lineage(out)
    if not chain:
        from guardrail.errors import ConfigurationError

        raise ConfigurationError(f"{out} has no {STAGE_FILE}: not a model trained by guardrail.training")
    path = out / CARD_FILE
    path.write_text(render_card(out, chain, evaluation, repo_id=repo_id), encoding="utf-8")
    return path


def render_card(
    out: Path,
    chain: Sequence[Mapping[str, Any]],
    evaluation: Sequence[Mapping[str, Any]] | None = None,
    *,
    repo_id: str | None = None,
) -> str:
    """The card's text. ``repo_id``: the card is for that Hub repo (snippets load it by id; a
    base model that is a local path is left out of the metadata, which takes hub ids only).
    Evaluation rows also become ``model-index`` metadata (:func:`model_index`); a
    ``guardrail_policy.yaml`` beside the model is shown."""
    last = chain[-1]
    base = chain[0].get("base_model") or "unknown"
    profile = last.get("profile", "guardreasoner-vl")
    stages = " -> ".join(str(i.get("stage")) for i in chain)
    name = repo_id.rsplit("/", 1)[-1] if repo_id else out.name
    where = repo_id or str(out)
    header = ["---", "library_name: transformers"]
    if repo_id is None or _is_hub_id(str(base)):
        header.append(f"base_model: {json.dumps(str(base))}")
    header.append("tags: [guardrail, guard-model, content-moderation, " + profile + "]")
    if evaluation:
        import yaml

        header.append(
            yaml.safe_dump({"model-index": model_index(name, evaluation)}, sort_keys=False).rstrip()
        )
    lines = [
        *header,
        "---",
        "",
        f"# {name}: a guard model trained with guardrail",
        "",
        f"A `{profile}` guard fine-tuned from `{base}` by `python -m guardrail.training` "
        f"({stages}). It reasons, then answers whether the user's request is harmful and, when an "
        "AI response is given, whether the response is harmful.",
        "",
        "## Use it",
        "",
        "```python",
        "from guardrail import Guard",
        "",
        f'guard = Guard.from_pretrained("{where}")   # profile {profile}, read from the config',
        'verdict = guard.moderate(prompt="How do I bake bread?", response="Mix flour and water.")',
        "print(verdict.allowed, verdict.request_harmful, verdict.response_harmful, verdict.reasoning)",
        "```",
        "",
        f'or `python -m guardrail check --model {where} --prompt "..."`. Policy: a check whose output '
        "cannot be parsed (no label for a task the request needs, `None` included) follows "
        "`on_parse_error` (default **block**); a backend failure follows `on_error` (default "
        "block). Export to GGUF for llama.cpp with `python -m guardrail export gguf --model "
        + (
            f"{out} --out gguf/`."
            if repo_id is None
            else f"DIR --out gguf/` (`hf download {repo_id} --local-dir DIR` first)."
        ),
        "",
        "## Training",
        "",
        f"- base model: `{base}`",
        f"- profile: `{profile}` (prompt and output format of GuardReasoner-VL"
        + (")" if profile == "guardreasoner-vl" else "; text only)"),
    ]
    for info in chain:
        lines.append(_stage_lines(info))
    lines += _policy_lines(out)
    lines += ["", "## Data", ""]
    for info in chain:
        lines.append(_data_lines(info))
    lines += ["", "## Training metrics", "", "| stage | steps | train loss | parse rate | format reward |",
              "|---|---|---|---|---|"]  # fmt: skip
    for info in chain:
        lines.append(
            f"| {info.get('stage')} | {info.get('global_step', '-')} | {_num(info.get('train_loss'))} | "
            f"{_pct(info.get('parse_rate'))} | {_num(info.get('format_reward'), 2)} |"
        )
    lines += ["", "## Evaluation", ""]
    if evaluation:
        lines += ["| benchmark | task | samples | F1 | precision | recall | parse failures |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in evaluation:
            lines.append(
                f"| {row['benchmark']} | {row['task']} | {row['n']} | {row['f1']:.2f} | "
                f"{row['precision']:.2f} | {row['recall']:.2f} | {row['parse_failures']} |"
            )
        protocol = evaluation[0].get("protocol", "strict")
        lines += [
            "",
            f"Scores in percent (`{protocol}` protocol"
            + (": a parse failure counts as a wrong answer)." if protocol == "strict" else ")."),
        ]
    else:
        lines.append(
            "Not evaluated yet. Run `python -m guardrail eval run --model DIR --benchmarks ... --out "
            "runs/eval`, then `python -m guardrail.training card --model DIR --eval runs/eval` to put "
            "the scores here."
        )
    lines += ["", "The full settings of every stage are in `training_config.yaml`.", ""]
    return "\n".join(lines)


def _is_hub_id(value: str) -> bool:
    from guardrail.hub import looks_like_repo_id

    return looks_like_repo_id(value) and not Path(value).exists()


def model_index(name: str, evaluation: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Evaluation rows as the Hub's ``model-index`` metadata: one result per benchmark and task,
    with F1, precision and recall in percent (the positive class: harmful, or refusal)."""
    results = []
    for row in evaluation:
        task = str(row["task"])
        protocol = row.get("protocol", "strict")
        positive = row.get("positive") or ("refusal" if task == "refusal" else "harmful")
        modality = row.get("modality")
        task_name = _TASK_NAMES.get(task, task) + (
            f" ({modality})" if modality and modality != "text" else ""
        )
        metrics = [
            {
                "type": key,
                "value": round(float(row[key]), 2),
                "name": f"{label} ({positive}, {protocol} protocol)",
            }
            for key, label in (("f1", "F1"), ("precision", "Precision"), ("recall", "Recall"))
            if row.get(key) is not None
        ]
        results.append({
            "task": {"type": "text-classification", "name": task_name},
            "dataset": {"type": str(row["benchmark"]), "name": str(row["benchmark"]), "split": "test"},
            "metrics": metrics,
        })  # fmt: skip
    return [{"name": name, "results": results}]


def find_evaluation(model_dir: str | Path) -> tuple[list[dict[str, Any]] | None, Path | None]:
    """The evaluation saved beside a model: ``eval_report.json`` (``python -m guardrail eval
    report ... --out DIR/eval_report.json``) or ``eval/`` (``python -m guardrail eval run ...
    --out DIR/eval``). Returns its rows and where they came from, or ``(None, None)``."""
    model_dir = Path(model_dir)
    for name in EVAL_REPORTS:
        if (model_dir / name).is_file():
            return report_rows(model_dir / name), model_dir / name
    for name in EVAL_DIRS:
        if (model_dir / name).is_dir():
            return evaluation_rows(model_dir / name), model_dir / name
    return None, None


def report_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSON report of ``python -m guardrail eval report`` (its first guard)."""
    from guardrail.errors import PredictionsError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        guard = data["guards"][0]
        return [
            dict(r, protocol=guard.get("protocol", data.get("protocol", "strict"))) for r in guard["results"]
        ]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise PredictionsError(
            f"not a JSON report of `guardrail eval report`: {exc}", path=str(path)
        ) from exc


def _policy_lines(out: Path) -> list[str]:
    """The policy section of a guard trained on a policy (``guardrail_policy.yaml``)."""
    from guardrail.policies.trained import POLICY_FILE, read_trained_policy

    policy = read_trained_policy(out)
    if policy is None:
        return []
    lines = [
        "",
        "## Policy",
        "",
        f"Trained on the policy {('`' + policy.name + '` ') if policy.name else ''}in `{POLICY_FILE}` "
        "(beside the weights; `Guard.from_pretrained` reads it). The prompt lists these categories "
        "and the answer ends its result block with `Categories: CODE, ...` (`None` when safe); "
        "`verdict.categories` holds the codes. Only the actions may be changed at run time "
        "(`Guard(..., policy=policy.with_actions(...))`).",
        "",
        "| code | name | action | description |",
        "|---|---|---|---|",
    ]
    for c in policy.categories:
        description = " ".join(c.description.split()).replace("|", "\\|")
        lines.append(f"| `{c.code}` | {c.name} | {c.action} | {description} |")
    return lines


def _stage_lines(info: Mapping[str, Any]) -> str:
    stage = str(info.get("stage"))
    config = info.get("config") or {}
    shown = [f"{k}={config[k]}" for k in _CARD_FIELDS.get(stage, ()) if k in config]
    return f"- {stage}: " + (", ".join(shown) if shown else "(settings in training_config.yaml)")


def _data_lines(info: Mapping[str, Any]) -> str:
    data = info.get("data") or {}
    files = ", ".join(f"`{f}`" for f in data.get("files", [])) or "-"
    text = f"- {info.get('stage')}: {info.get('samples', '-')} samples from {files}"
    if info.get("skipped_rows"):
        text += f" ({info['skipped_rows']} bad rows skipped)"
    balance = data.get("labels") or {}
    parts = [
        f"{task} " + ", ".join(f"{k} {v}" for k, v in counts.items()) for task, counts in balance.items()
    ]
    if parts:
        text += "; " + "; ".join(parts)
    modalities = data.get("modalities") or {}
    if modalities:
        text += "; modality " + ", ".join(f"{k} {v}" for k, v in modalities.items())
    categories = data.get("categories") or {}
    if categories:
        text += "; categories " + ", ".join(f"{k} {v}" for k, v in categories.items())
    return text


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0%}"


def evaluation_rows(predictions: str | Path) -> list[dict[str, Any]]:
    """Strict-protocol scores of a predictions file or directory (``guardrail eval run`` output)."""
    from guardrail.eval.predictions import discover, read_predictions
    from guardrail.eval.score import score_sets

    report = score_sets([read_predictions(p) for p in discover(predictions)], "strict")
    return [
        {
            "benchmark": r.benchmark,
            "task": r.task,
            "n": r.n,
            "f1": r.f1,
            "precision": r.precision,
            "recall": r.recall,
            "parse_failures": r.parse_failures,
            "positive": r.positive,
            "modality": r.modality,
            "protocol": "strict",
        }  # fmt: skip
        for r in report.results
    ]
