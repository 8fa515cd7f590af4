"""Part 1 of the main job without ``GUARDRAIL_MODEL``: build the tiny demo guard offline with the
project's own recipe (``training/tiny.yaml`` on ``examples/demo_data/``; with ``--policy`` its
policy variant ``training/tiny-policy.yaml``, trained on the demo policy
``training/policies/demo.yaml``, whose guard names the policy's categories), cached under a key
that hashes the recipe, the policy, the data and the library."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from demo_common import DEMO_DATA, HELDOUT, POLICY_RECIPE, RECIPE, REPO, TRAIN, Console, write_json
from demo_guard import (
    DEMO_MAX_NEW_TOKENS,
    GGUF_QUANT_TINY,
    DemoGuard,
    evaluate_heldout,
    export_gguf,
    load_guard,
)

import guardrail

#: Recipe changes for the demo set (longer answers than the recipe's own corpus).
DEMO_OVERRIDES: dict[str, dict[str, Any]] = {
    "sft": {"disable_tqdm": True},  # progress: one line per tenth of the steps (ProgressLines)
    "sample": {"max_new_tokens": DEMO_MAX_NEW_TOKENS, "disable_tqdm": True},
    "rl": {"max_completion_length": DEMO_MAX_NEW_TOKENS, "disable_tqdm": True},
}
#: ``--quick``: the same stages with a fraction of the budget (a worse guard, in a minute).
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "sft": {"max_steps": 120, "save_steps": 60},
    "sample": {"k": 2, "max_samples": 24, "min_keep": 4},
    "rl": {"max_steps": 1, "save_steps": 1},
}
#: The tiny builder scales some weights so that a *random* model's answers depend on its input
#: (for tests); a model that is going to be trained generalises better from the ordinary
#: initialisation (held-out request F1 62-86 over seeds and builder versions, against 43-65).
BASE_INIT = {"logit_scale": 1.0, "qk_scale": 1.0, "vo_scale": 1.0, "embedding_scale": 1.0}
#: Library code whose changes make a cached demo guard stale (besides the version number).
LIBRARY_SOURCES = (
    "guardrail/testing/tiny.py",
    "guardrail/training",
    "guardrail/profiles",
    "guardrail/backends/transformers.py",  # the held-out scores are cached too
    "guardrail/eval",
    "guardrail/export",  # and the GGUF files
    "guardrail/samples.py",
)


def _hash_path(h: Any, path: Path) -> None:
    """Add the names (relative to ``path``) and contents of a file or of a folder's files."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if "__pycache__" in f.parts:
            continue
        name = f.relative_to(path).as_posix() if path.is_dir() else f.name
        h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")


def demo_recipe(quick: bool, policy: bool = False) -> dict[str, Any]:
    """The tiny recipe (its policy variant with ``policy``) with the demo's overrides (model,
    data and output paths are set when training, so that the cache key does not depend on where
    the cache is)."""
    from guardrail.training import load_recipe

    recipe = load_recipe(POLICY_RECIPE if policy else RECIPE)
    for overrides in (DEMO_OVERRIDES, QUICK_OVERRIDES if quick else {}):
        for stage, values in overrides.items():
            recipe[stage] = {**(recipe.get(stage) or {}), **values}
    return recipe


def policy_path(recipe: dict[str, Any]) -> Path:
    """The recipe's policy file (relative paths are relative to the repository root)."""
    path = Path(recipe["policy"])
    return path if path.is_absolute() else REPO / path


def cache_key(recipe: dict[str, Any]) -> str:
    """Hash of what the demo guard depends on: recipe, data, library version and sources,
    and the versions of the training stack."""
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256()
    h.update(json.dumps(recipe, sort_keys=True, default=str).encode())
    _hash_path(h, DEMO_DATA)
    if recipe.get("policy"):
        _hash_path(h, policy_path(recipe))
    for source in LIBRARY_SOURCES:
        _hash_path(h, REPO / source)
    h.update(f"guardrail {guardrail.__version__}".encode())
    for dist in ("torch", "transformers", "trl", "peft"):
        with contextlib.suppress(PackageNotFoundError):
            h.update(f"{dist} {version(dist)}".encode())
    h.update(f"base {BASE_INIT}; max_new_tokens {DEMO_MAX_NEW_TOKENS}; quant {GGUF_QUANT_TINY}".encode())
    return h.hexdigest()[:16]


def progress_lines(console: Console, stage: str) -> Any:
    """A ``TrainerCallback`` printing the step and loss (SFT) or reward (RL) about ten times."""
    from transformers import TrainerCallback

    class ProgressLines(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = time.perf_counter()
            self.shown = 0

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            step, total = state.global_step, state.max_steps
            metrics = {k: v for k, v in (logs or {}).items() if k in ("loss", "reward")}
            if not metrics or (step - self.shown < max(1, total // 10) and step != total):
                return
            self.shown = step
            shown = "  ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            console.say(
                f"{'':11}{stage}: step {step}/{total}  {shown}  ({time.perf_counter() - self.t0:.0f}s)"
            )

    return ProgressLines()


class TrainerPrintFilter(io.StringIO):
    """Standard output during training: drops the trainers' raw metric dicts (shown as progress
    lines instead) and passes anything else through."""

    def __init__(self, out: Any) -> None:
        super().__init__()
        self.out = out

    def write(self, text: str) -> int:
        self.pending = getattr(self, "pending", "") + text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if not line.startswith("{'"):
                self.out.write(line + "\n")
        return len(text)


def build_demo_guard(
    console: Console, cache_root: Path, *, quick: bool, retrain: bool, policy: bool = False
) -> DemoGuard:
    """Train (or find in the cache) the tiny demo guard, measure it on the held-out set, export it."""
    recipe = demo_recipe(quick, policy)
    recipe_file = POLICY_RECIPE if policy else RECIPE
    key = cache_key(recipe)
    root = cache_root / key
    if retrain and root.exists():
        console.step(f"--retrain: removing the cached demo guard {root}")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    console.step(f"demo guard cache: {root}{'  (quick: reduced training budget)' if quick else ''}")
    summary_file = root / "demo.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.exists() else {}

    # 1. the base model: a tiny random Qwen2.5-VL with a real tokenizer and processor
    base = root / "base"
    if (base / "config.json").exists():
        console.step("tiny base model: cached")
    else:
        from guardrail.testing import build_tiny_model

        with console.timed("building the tiny Qwen2.5-VL base model offline (guardrail.testing)"):
            tmp = root / "base.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            build_tiny_model(tmp, "guardreasoner-vl", seed=0, **BASE_INIT)
            tmp.rename(base)

    # 2. training: the tiny CPU recipe on the demo set
    runs = root / "runs"
    final = runs / "rl"
    trained_now = False
    if (final / ".stage-done.json").exists() and "training_seconds" in summary:
        console.step(f"training: cached (trained in {summary['training_seconds']:.0f}s on a previous run)")
    else:
        from guardrail.training import run_pipeline
        from guardrail.training.data import load_examples

        rows = load_examples(TRAIN, on_bad_row="fail").examples
        stages = " -> ".join(recipe["stages"])
        console.step(
            f"training the demo guard: {stages} with {recipe_file.relative_to(REPO)} on "
            f"{TRAIN.relative_to(REPO)} ({len(rows)} examples)"
            + (f", policy {Path(recipe['policy']).as_posix()}" if recipe.get("policy") else "")
            + "; the first run takes a few minutes"
        )
        recipe.update(model=str(base), output_dir=str(runs), data=[str(TRAIN)])
        if recipe.get("policy"):
            recipe["policy"] = str(policy_path(recipe))  # the working directory may be anywhere
        t0 = time.perf_counter()
        progress = {stage: {"callbacks": [progress_lines(console, stage)]} for stage in ("sft", "rl")}
        with contextlib.redirect_stdout(TrainerPrintFilter(sys.stdout)):
            result = run_pipeline(recipe, stage_kwargs=progress)
        summary["training_seconds"] = time.perf_counter() - t0
        summary["training"] = {k: v for k, v in result.stages.items() if k != "sft"}
        write_json(summary_file, summary)
        trained_now = True
        console.step(f"training done in {summary['training_seconds']:.0f}s: {final}")

    guard = DemoGuard(
        model=str(final),
        description="tiny demo guard (~0.2M parameters) trained here on the demo set"
        + (" and policy" if policy else ""),
        tiny=True,
        cache_dir=root,
        trained_now=trained_now,
        training_seconds=summary.get("training_seconds"),
    )

    # 3. held-out F1, with the evaluation harness
    if "heldout" in summary:
        console.step("held-out evaluation: cached")
    else:
        with console.timed(f"scoring the demo guard on {HELDOUT.relative_to(REPO)} (guardrail.eval)"):
            scorer = load_guard(guard)
            try:
                summary["heldout"] = evaluate_heldout(scorer, root / "heldout")
            finally:
                scorer.close()
        write_json(summary_file, summary)
    guard.heldout = summary["heldout"]

    # 4. GGUF for llama.cpp
    if summary.get("gguf"):
        console.step(f"GGUF export: cached ({summary['gguf']['model']})")
        guard.gguf = summary["gguf"]
    else:
        guard.gguf, guard.gguf_note = export_gguf(console, final, root / "gguf", tiny=True)
        if guard.gguf:
            summary["gguf"] = guard.gguf
            write_json(summary_file, summary)
    return guard
