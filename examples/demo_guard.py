"""Part 1 of the main job, the guard: what the demo knows about it, loading it (transformers
and llama.cpp), its held-out F1 and its GGUF export; :func:`given_guard` for ``GUARDRAIL_MODEL``
(the tiny guard trained here is built by ``demo_train.py``)."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo_common import HELDOUT, REPO, Console, write_json

from guardrail import Guard
from guardrail.errors import GuardrailError

#: Generation budget of the demo guard: its reasoning plus labels take at most ~110 tokens.
DEMO_MAX_NEW_TOKENS = 128
#: GGUF precision: q8_0 for real guards; f32 for the tiny one, whose 64-wide layers quantised to
#: 8 bits give different answers (measured: same labels on 19 of the 30 held-out rows; f32: 30).
GGUF_QUANT = "q8_0"
GGUF_QUANT_TINY = "f32"
HELDOUT_NAME = "demo-heldout"


@dataclass
class DemoGuard:
    """The guard model the demo runs, and what is known about it."""

    model: str  # a directory or hub id for the transformers backend
    description: str
    tiny: bool
    cache_dir: Path | None = None
    trained_now: bool = False
    training_seconds: float | None = None
    heldout: dict[str, Any] | None = None
    gguf: dict[str, str | None] | None = None
    gguf_note: str | None = None
    max_new_tokens: int | None = None  # None: the tiny guard's budget, or the profile's default
    mode: str = "reasoning"  # for the traffic; the held-out F1 is measured in reasoning mode


def given_guard(
    console: Console,
    model: str,
    cache_root: Path,
    *,
    export: bool,
    max_new_tokens: int | None,
    evaluate: bool,
) -> DemoGuard:
    """``GUARDRAIL_MODEL``: no training; a GGUF export only when asked for and possible."""
    guard = DemoGuard(
        model=model, description=f"GUARDRAIL_MODEL={model}", tiny=False, max_new_tokens=max_new_tokens
    )
    console.step(f"guard model: {model} (GUARDRAIL_MODEL is set: no training)")
    if evaluate:
        with console.timed(f"scoring {model} on {HELDOUT.relative_to(REPO)} (guardrail.eval)"):
            out = cache_root / "heldout" / hashlib.sha256(model.encode()).hexdigest()[:16]
            loaded = load_guard(guard)
            try:
                guard.heldout = evaluate_heldout(loaded, out)
            finally:
                loaded.close()
        console.step(f"held-out: {describe_heldout(guard.heldout)}")
    local = Path(model).expanduser()
    if not export:
        guard.gguf_note = "no GGUF of GUARDRAIL_MODEL: pass --export-gguf (local model directory) to make one"
    elif not local.is_dir():
        guard.gguf_note = f"--export-gguf needs a local model directory; {model!r} is not one"
    else:
        digest = hashlib.sha256(str(local.resolve()).encode())
        for f in sorted(local.glob("*")):
            if f.is_file():
                digest.update(f"{f.name} {f.stat().st_size} {f.stat().st_mtime_ns}".encode())
        out = cache_root / "gguf" / digest.hexdigest()[:16]
        marker = out / "gguf.json"
        if marker.exists():
            guard.gguf = json.loads(marker.read_text(encoding="utf-8"))
            console.step(f"GGUF export: cached ({guard.gguf['model']})")
        else:
            guard.gguf, guard.gguf_note = export_gguf(console, local, out, tiny=False)
            if guard.gguf:
                write_json(marker, guard.gguf)
    return guard


def export_gguf(
    console: Console, model_dir: Path, out: Path, *, tiny: bool
) -> tuple[dict[str, str | None] | None, str | None]:
    """GGUF files (model + mmproj) for the llama.cpp channel, or ``(None, why not)``.

    A home-made BPE tokenizer (the tiny models') is unknown to llama.cpp's converter; for
    Qwen-family models it is declared ``qwen2`` (the same split regex). That is only a fallback:
    tokenizers the converter recognises, such as the real Qwen2.5-VL one, are unaffected."""
    from guardrail.export import export_gguf as export

    quant = GGUF_QUANT_TINY if tiny else GGUF_QUANT
    try:
        with console.timed(f"exporting to GGUF ({quant}) for llama.cpp"):
            files = export(
                model_dir,
                out,
                quant=quant,
                name="demo-guard" if tiny else None,
                assume_pre_tokenizer=_pre_tokenizer_fallback(model_dir),
                progress=lambda m: console.say(f"{'':11}{m}"),
            )
    except GuardrailError as exc:  # MissingDependencyError, ExportError...
        note = f"GGUF export failed ({type(exc).__name__}: {exc}): llama.cpp channel skipped"
        console.step(note)
        return None, note
    return {"model": str(files.model), "mmproj": str(files.mmproj) if files.mmproj else None}, None


def _pre_tokenizer_fallback(model_dir: Path) -> str | None:
    try:
        model_type = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return None
    return "qwen2" if model_type in ("qwen2_5_vl", "qwen2_vl", "qwen2") else None


def evaluate_heldout(guard: Guard, out_dir: Path) -> dict[str, Any]:
    """F1 on the held-out set (harmful = positive), as ``python -m guardrail.eval`` scores it, and
    per-category precision/recall when the guard names categories (a guard trained on a policy;
    the held-out rows carry the demo policy's codes, ``[]`` when safe)."""
    from guardrail.eval import Benchmark, read_predictions, run_benchmark, score_sets
    from guardrail.training.data import load_examples

    samples = load_examples(HELDOUT, on_bad_row="fail").examples  # labelled samples, as eval reads them
    shutil.rmtree(out_dir, ignore_errors=True)  # a fresh run: never resume another model's predictions
    run = run_benchmark(guard, Benchmark(HELDOUT_NAME, tuple(samples), source=str(HELDOUT)), out_dir)
    # per category only for a guard trained on a policy (a guard without one names no codes)
    report = score_sets([read_predictions(run.path)], policy=guard.profile.trained_policy)
    scores: dict[str, Any] = {"benchmark": str(HELDOUT.relative_to(REPO)), "samples": len(samples)}
    for task in ("request", "response"):
        s = report.get(HELDOUT_NAME, task)
        if s is not None:
            scores[task] = {
                "f1": round(s.f1, 1),
                "precision": round(s.precision, 1),
                "recall": round(s.recall, 1),
                "accuracy": round(s.confusion.accuracy, 1),
                "n": s.n,
                "parse_failures": s.parse_failures,
            }
    for c in report.categories:  # per category, where the guard names a policy's categories
        scores["categories"] = {
            "policy": c.policy,
            "scores": [
                {"category": x.category, "support": x.support, "predicted": x.predicted,
                 "precision": round(x.precision, 1), "recall": round(x.recall, 1), "f1": round(x.f1, 1)}
                for x in (*c.scores, *((c.micro,) if c.micro else ()))
            ],
            "unknown_codes": c.unknown_codes,
        }  # fmt: skip
    return scores


def load_guard(demo: DemoGuard, mode: str = "reasoning") -> Guard:
    """The transformers guard used by the decorator, LangChain and server channels."""
    if demo.tiny:
        import torch

        torch.set_num_threads(1)  # a tiny model: one thread is as fast and immune to a busy machine
        return Guard.from_pretrained(demo.model, max_new_tokens=DEMO_MAX_NEW_TOKENS, device="cpu", mode=mode)
    return Guard.from_pretrained(demo.model, max_new_tokens=demo.max_new_tokens, mode=mode)


def load_gguf_guard(demo: DemoGuard) -> tuple[Guard | None, str | None]:
    """The llama.cpp guard on the GGUF files, or ``(None, why not)`` (e.g. no ``llamacpp`` extra)."""
    if demo.gguf is None:
        return None, demo.gguf_note or "no GGUF files"
    options: dict[str, Any] = {"mode": demo.mode}
    if demo.tiny:  # one thread is as fast for a tiny model; its context is 4096 tokens
        options.update(n_threads=1, n_ctx=4096, max_new_tokens=DEMO_MAX_NEW_TOKENS)
    if demo.max_new_tokens is not None:
        options["max_new_tokens"] = demo.max_new_tokens
    try:
        return Guard.from_gguf(demo.gguf["model"], demo.gguf.get("mmproj"), **options), None
    except GuardrailError as exc:  # MissingDependencyError without llama-cpp-python, BackendError
        return None, f"cannot load the GGUF guard ({type(exc).__name__}: {exc}): llama.cpp channel skipped"


def describe_categories(heldout: dict[str, Any]) -> list[str]:
    """One line per category of the held-out per-category scores (none for a guard without them)."""
    cats = heldout.get("categories")
    if not cats:
        return []
    lines = [f"per category (policy {cats['policy']}; precision / recall / F1, percent):"]
    for x in cats["scores"]:
        name = "all (micro)" if x["category"] == "micro" else x["category"]
        lines.append(f"  {name:<12} P {x['precision']:5.1f}  R {x['recall']:5.1f}  F1 {x['f1']:5.1f}  "
                     f"(support {x['support']}, named {x['predicted']})")  # fmt: skip
    return lines


def describe_heldout(heldout: dict[str, Any]) -> str:
    parts = []
    for task in ("request", "response"):
        s = heldout.get(task)
        if s:
            parts.append(f"{task} F1 {s['f1']:.1f} (n={s['n']}, accuracy {s['accuracy']:.1f}%)")
    return "; ".join(parts)
