"""The main job: a guard, trained here or given, moderating an app's traffic every way it plugs in.

    scripts/demo.sh [options]          # sets up .venv first, then runs this file
    python examples/demo.py [options]

1. **The guard.** With ``GUARDRAIL_MODEL`` unset, a small demo guard is built offline with the
   project's own recipe: a tiny Qwen2.5-VL base from :mod:`guardrail.testing`, trained with the
   tiny CPU recipe ``training/tiny.yaml`` (R-SFT, rejection sampling, augmentation, a few GRPO
   steps) on the demo set in ``examples/demo_data/`` (written for this project: short prompts,
   prompt+response pairs, a few pictures; mild content). Its F1 on the held-out part is measured
   with :mod:`guardrail.eval`, and it is exported to GGUF for llama.cpp. Everything is cached
   under ``$GUARDRAIL_CACHE_DIR/demo/<key>`` (default ``~/.cache/guardrail/demo``), the key
   hashing the recipe, the data and the library, so later runs skip straight to part 2.
   With ``GUARDRAIL_MODEL`` set (a local directory or a hub id such as
   ``yueliu1999/GuardReasoner-VL-Eco-3B``) that model is used everywhere instead; it is exported to
   GGUF for the llama.cpp channel only with ``--export-gguf`` and a local directory.
2. **The traffic.** The samples in ``examples/samples.jsonl`` (text, image, text+image,
   prompt+response) go through four channels: an app handler guarded by ``@guard.check``, a
   LangChain chain (``guard.wrap`` around a chat model), the llama.cpp backend on the GGUF file,
   and the moderation server (``create_app`` on 127.0.0.1) called with the OpenAI client.
3. **The table.** One row per channel and sample: the verdict, the guard's latency, how many
   checks ran, what decided (``model``, or ``policy`` when the output could not be read) and
   which path (``reasoning``, or ``fast`` for label probabilities; ``-`` where the API, such as
   OpenAI's moderation result, does not report it).

Options: ``--quick`` (a much shorter training run, for tests and CI), ``--cache-dir DIR``,
``--retrain`` (ignore the cache), ``--mode reasoning|fast|cascade`` (how the traffic is decided;
the table's ``path`` column says which path decided each check), ``--json FILE`` (everything
shown, machine-readable); with ``GUARDRAIL_MODEL``: ``--export-gguf`` (or
``GUARDRAIL_DEMO_GGUF=1``), ``--max-new-tokens N``, ``--eval`` (score it on the held-out demo
set). Exit status: 0 when every channel ran, 1 when one failed, 2 when the guard cannot be loaded.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import guardrail  # noqa: E402
from guardrail import Guard, Verdict  # noqa: E402
from guardrail.errors import GuardrailError  # noqa: E402

DEMO_DATA = HERE / "demo_data"
TRAIN = DEMO_DATA / "train.jsonl"
HELDOUT = DEMO_DATA / "heldout.jsonl"
SAMPLES = HERE / "samples.jsonl"
RECIPE = REPO / "training" / "tiny.yaml"

#: Generation budget of the demo guard: its reasoning plus labels take at most ~110 tokens.
DEMO_MAX_NEW_TOKENS = 128
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
)
#: GGUF precision: q8_0 for real guards; f32 for the tiny one, whose 64-wide layers quantised to
#: 8 bits give different answers (measured: same labels on 19 of the 30 held-out rows; f32: 30).
GGUF_QUANT = "q8_0"
GGUF_QUANT_TINY = "f32"
REFUSAL = "Sorry, I can't help with that."
DEFAULT_REPLY = "Sure! Here is a short, friendly answer."
HELDOUT_NAME = "demo-heldout"


# =============================================================================== output
class Console:
    """Progress lines on standard output, with the time since the start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def say(self, message: str = "") -> None:
        print(message, flush=True)

    def step(self, message: str) -> None:
        self.say(f"[{self.elapsed():6.1f}s] {message}")

    @contextlib.contextmanager
    def timed(self, message: str) -> Iterator[None]:
        self.step(message + " ...")
        t0 = time.perf_counter()
        yield
        self.say(f"{'':10} done in {time.perf_counter() - t0:.1f}s")


def quiet_third_party() -> None:
    """Keep the output to what the demo says: no deprecation notices, no weight-loading bars."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("           %(name)s: %(message)s"))
    for name in ("guardrail.training", "guardrail.export"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False
    # policy decisions are shown in the table (decided_by); no need for a warning per verdict
    logging.getLogger("guardrail").setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


# =========================================================================== the guard
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


def _hash_path(h: Any, path: Path) -> None:
    """Add the names (relative to ``path``) and contents of a file or of a folder's files."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if "__pycache__" in f.parts:
            continue
        name = f.relative_to(path).as_posix() if path.is_dir() else f.name
        h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")


def demo_recipe(quick: bool) -> dict[str, Any]:
    """The tiny recipe with the demo's overrides (model, data and output paths are set when
    training, so that the cache key does not depend on where the cache is)."""
    from guardrail.training import load_recipe

    recipe = load_recipe(RECIPE)
    for overrides in (DEMO_OVERRIDES, QUICK_OVERRIDES if quick else {}):
        for stage, values in overrides.items():
            recipe[stage] = {**(recipe.get(stage) or {}), **values}
    return recipe


def cache_key(recipe: dict[str, Any]) -> str:
    """Hash of what the demo guard depends on: recipe, data, library version and sources,
    and the versions of the training stack."""
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256()
    h.update(json.dumps(recipe, sort_keys=True, default=str).encode())
    _hash_path(h, DEMO_DATA)
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


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def build_demo_guard(console: Console, cache_root: Path, *, quick: bool, retrain: bool) -> DemoGuard:
    """Train (or find in the cache) the tiny demo guard, measure it on the held-out set, export it."""
    recipe = demo_recipe(quick)
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
            f"training the demo guard: {stages} with {RECIPE.relative_to(REPO)} on "
            f"{TRAIN.relative_to(REPO)} ({len(rows)} examples); the first run takes a few minutes"
        )
        recipe.update(model=str(base), output_dir=str(runs), data=[str(TRAIN)])
        t0 = time.perf_counter()
        progress = {stage: {"callbacks": [progress_lines(console, stage)]} for stage in ("sft", "rl")}
        with contextlib.redirect_stdout(TrainerPrintFilter(sys.stdout)):
            result = run_pipeline(recipe, stage_kwargs=progress)
        summary["training_seconds"] = time.perf_counter() - t0
        summary["training"] = {k: v for k, v in result.stages.items() if k != "sft"}
        _write_json(summary_file, summary)
        trained_now = True
        console.step(f"training done in {summary['training_seconds']:.0f}s: {final}")

    guard = DemoGuard(
        model=str(final),
        description="tiny demo guard (~0.2M parameters) trained here on the demo set",
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
        _write_json(summary_file, summary)
    guard.heldout = summary["heldout"]

    # 4. GGUF for llama.cpp
    if summary.get("gguf"):
        console.step(f"GGUF export: cached ({summary['gguf']['model']})")
        guard.gguf = summary["gguf"]
    else:
        guard.gguf, guard.gguf_note = export_gguf(console, final, root / "gguf", tiny=True)
        if guard.gguf:
            summary["gguf"] = guard.gguf
            _write_json(summary_file, summary)
    return guard


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
                _write_json(marker, guard.gguf)
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
    """F1 on the held-out set (harmful = positive), as ``python -m guardrail.eval`` scores it."""
    from guardrail.eval import Benchmark, Sample, read_predictions, run_benchmark, score_sets
    from guardrail.training.data import load_examples

    samples = []
    for ex in load_examples(HELDOUT, on_bad_row="fail").examples:
        labels = {"request": ex.request_label}
        if ex.response_label is not None:
            labels["response"] = ex.response_label
        samples.append(
            Sample(id=ex.id, labels=labels, prompt=ex.prompt, response=ex.response, images=ex.images)
        )
    shutil.rmtree(out_dir, ignore_errors=True)  # a fresh run: never resume another model's predictions
    run = run_benchmark(guard, Benchmark(HELDOUT_NAME, tuple(samples), source=str(HELDOUT)), out_dir)
    report = score_sets([read_predictions(run.path)])
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


# ============================================================================ the traffic
@dataclass(frozen=True)
class Traffic:
    """One request of the sample app traffic; ``response`` is what the app's model answers."""

    name: str
    prompt: str | None
    images: tuple[Path, ...] = ()
    response: str | None = None

    @property
    def kind(self) -> str:
        kind = ("text+image" if self.prompt else "image") if self.images else "text"
        if self.response is None:
            return kind
        return "prompt+response" if kind == "text" else f"{kind}+response"

    def data_urls(self) -> list[str]:
        return [f"data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" for p in self.images]

    def openai_messages(self) -> list[dict[str, Any]]:
        """The request as an OpenAI-style chat turn (text and image_url parts)."""
        parts: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": u}} for u in self.data_urls()
        ]
        if self.prompt:
            parts.append({"type": "text", "text": self.prompt})
        return [{"role": "user", "content": parts if self.images else self.prompt}]


def load_traffic(path: Path = SAMPLES) -> list[Traffic]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            s = json.loads(line)
            out.append(
                Traffic(
                    name=s["name"],
                    prompt=s.get("prompt"),
                    images=tuple(path.parent / p for p in s.get("images", [])),
                    response=s.get("response"),
                )
            )
    return out


@dataclass
class Row:
    """One line of the table."""

    channel: str
    sample: str
    kind: str
    verdict: str = "ERROR"  # allow | BLOCK | BLOCK (input) | BLOCK (output) | ERROR | skipped
    checks: int = 0
    latency_ms: float = 0.0
    decided_by: str = "-"
    path: str | None = None
    error: str | None = None
    reply: str | None = None


def row_from_checks(channel: str, t: Traffic, checks: list[tuple[str, Verdict]]) -> Row:
    """Summarise the checks one call made: the blocking one decides, else the last one."""
    from guardrail.integrations.policy import blocks

    row = Row(channel, t.name, t.kind, checks=len(checks))
    if not checks:
        row.error = "no guard check was recorded"
        return row
    row.latency_ms = sum(v.latency_ms for _, v in checks)
    deciding = next(((s, v) for s, v in checks if blocks(v, s)), None)
    stage, verdict = deciding or checks[-1]
    row.verdict = f"BLOCK ({stage})" if deciding else "allow"
    row.decided_by = verdict.decided_by
    row.path = getattr(verdict, "path", None)  # fast/reasoning, where the guard has speed modes
    return row


def row_from_verdict(channel: str, t: Traffic, verdict: Verdict | dict[str, Any]) -> Row:
    v = verdict if isinstance(verdict, dict) else verdict.model_dump()
    return Row(
        channel, t.name, t.kind, verdict="allow" if v["allowed"] else "BLOCK", checks=1,
        latency_ms=v["latency_ms"], decided_by=v["decided_by"], path=v.get("path"),
    )  # fmt: skip


class RecordingGuard(Guard):
    """The same guard (backend, profile, policies), also keeping every verdict it returns so the
    table can show what ``@guard.check`` decided. An app does not need this."""

    def __init__(self, guard: Guard):  # noqa: D107 - shares the guard's state, loads nothing
        self.__dict__.update(vars(guard))
        self.verdicts: list[Verdict] = []

    def moderate(self, prompt: Any = None, response: Any = None, images: Any = None, **kw: Any) -> Verdict:
        verdict = super().moderate(prompt, response, images, **kw)
        self.verdicts.append(verdict)
        return verdict

    async def amoderate(
        self, prompt: Any = None, response: Any = None, images: Any = None, **kw: Any
    ) -> Verdict:
        verdict = await super().amoderate(prompt, response, images, **kw)
        self.verdicts.append(verdict)
        return verdict


class StandInLLM:
    """The app's model, scripted: answers with the sample's response (or a friendly default)."""

    def __init__(self) -> None:
        self.reply = DEFAULT_REPLY

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        return self.reply


# ============================================================================= channels
def channel_decorator(guard: Guard, traffic: list[Traffic]) -> list[Row]:
    """An app handler guarded by ``@guard.check``: the request is checked before the handler
    runs, the reply with the request after it; a blocked one is replaced by a refusal."""
    recorder = RecordingGuard(guard)
    llm = StandInLLM()

    @recorder.check(message=REFUSAL)
    def chat(messages: list[dict[str, Any]]) -> str:
        """The app's chat endpoint (OpenAI-style messages, images as data URLs)."""
        return llm(messages)

    rows = []
    for t in traffic:
        llm.reply = t.response or DEFAULT_REPLY
        recorder.verdicts.clear()
        answer = chat(t.openai_messages())
        stages = ["input", "output"][: len(recorder.verdicts)]
        row = row_from_checks("@guard.check", t, list(zip(stages, recorder.verdicts, strict=True)))
        row.reply = answer
        rows.append(row)
    return rows


def channel_langchain(guard: Guard, traffic: list[Traffic]) -> list[Row]:
    """A LangChain chain: prompt | guard.wrap(chat model) | parser. The guard's checks are read
    from the chain's callbacks (the ``guardrail_verdict`` event), as an app's tracing would."""
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

    class Verdicts(BaseCallbackHandler):
        def __init__(self) -> None:
            self.checks: list[tuple[str, Verdict]] = []

        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            if name == "guardrail_verdict":
                self.checks.append((data["stage"], Verdict.model_validate(data["verdict"])))

    prompt = ChatPromptTemplate.from_messages(
        [("system", "You answer briefly and kindly."), MessagesPlaceholder("messages")]
    )
    rows = []
    for t in traffic:
        llm = GenericFakeChatModel(messages=iter([AIMessage(t.response or DEFAULT_REPLY)]))
        chain = prompt | guard.wrap(llm, fallback=AIMessage(REFUSAL)) | StrOutputParser()
        content: list[Any] = [{"type": "image", "base64": u.split(",", 1)[1], "mime_type": "image/png"}
                              for u in t.data_urls()]  # fmt: skip
        if t.prompt:
            content.append({"type": "text", "text": t.prompt})
        handler = Verdicts()
        answer = chain.invoke({"messages": [HumanMessage(content=content)]}, {"callbacks": [handler]})
        row = row_from_checks("LangChain", t, handler.checks)
        row.reply = answer
        rows.append(row)
    return rows


def channel_llamacpp(guard: Guard, traffic: list[Traffic]) -> list[Row]:
    """The llama.cpp backend on the exported GGUF: one check of each request (and response)."""
    rows = []
    for t in traffic:
        verdict = guard.moderate(
            prompt=t.prompt, response=t.response, images=[str(p) for p in t.images] or None
        )
        rows.append(row_from_verdict("llama.cpp", t, verdict))
    return rows


def channel_server(guard: Guard, traffic: list[Traffic]) -> list[Row]:
    """The moderation server on 127.0.0.1, called with the OpenAI client: ``/v1/moderations``
    for requests, the native ``/v1/guard`` for prompt+response (OpenAI's API has no response)."""
    from openai import OpenAI

    from guardrail.server import ServerSettings, create_app
    from guardrail.testing import serve_app

    key = secrets.token_urlsafe(16)
    rows = []
    with serve_app(create_app(guard, ServerSettings(api_key=key))) as base_url:
        client = OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=600)
        for t in traffic:
            if t.response is not None:
                body = {"prompt": t.prompt, "response": t.response, "images": t.data_urls() or None}
                verdict: dict[str, Any] = client.post("/guard", body=body, cast_to=object)  # type: ignore[arg-type]
            else:
                parts: Any = [{"type": "image_url", "image_url": {"url": u}} for u in t.data_urls()]
                if t.prompt:
                    parts.append({"type": "text", "text": t.prompt})
                result = client.moderations.create(model="guard", input=parts if t.images else t.prompt)
                verdict = result.results[0].model_dump()["guardrail"]
            rows.append(row_from_verdict("server + OpenAI client", t, verdict))
    return rows


CHANNELS: dict[str, Callable[[Guard, list[Traffic]], list[Row]]] = {
    "@guard.check": channel_decorator,
    "LangChain": channel_langchain,
    "llama.cpp": channel_llamacpp,
    "server + OpenAI client": channel_server,
}


def run_channels(console: Console, guard: Guard, gguf_guard: Guard | None, gguf_note: str | None,
                 traffic: list[Traffic]) -> tuple[list[Row], list[str]]:  # fmt: skip
    rows: list[Row] = []
    problems: list[str] = []
    for name, run in CHANNELS.items():
        target = gguf_guard if name == "llama.cpp" else guard
        if target is None:
            console.step(f"{name}: skipped - {gguf_note}")
            rows.extend(Row(name, t.name, t.kind, verdict="skipped", error=gguf_note) for t in traffic)
            continue
        t0 = time.perf_counter()
        try:
            got = run(target, traffic)
        except Exception as exc:  # noqa: BLE001 - a broken channel is reported, the others still run
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            console.step(f"{name}: FAILED - {type(exc).__name__}: {exc}")
            rows.extend(Row(name, t.name, t.kind, error=str(exc)) for t in traffic)
            continue
        problems.extend(f"{name} / {r.sample}: {r.error}" for r in got if r.error)
        console.step(f"{name}: {len(got)} requests in {time.perf_counter() - t0:.1f}s")
        rows.extend(got)
    return rows, problems


# ================================================================================ report
def print_table(console: Console, rows: list[Row]) -> None:
    show_path = any(r.path for r in rows)
    header = ["channel", "sample", "input kind", "verdict", "checks", "guard ms", "decided by"]
    if show_path:
        header.append("path")
    table = [header]
    for r in rows:
        line = [r.channel, r.sample, r.kind, r.verdict, str(r.checks or "-"),
                f"{r.latency_ms:.0f}" if r.checks else "-", r.decided_by]  # fmt: skip
        if show_path:
            line.append(r.path or "-")
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {4, 5}
    for i, line in enumerate(table):
        cells = [
            c.rjust(w) if j in right else c.ljust(w)
            for j, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        console.say("  ".join(cells).rstrip())
        if i == 0:
            console.say("  ".join("-" * w for w in widths))


def gguf_parity(rows: list[Row]) -> tuple[int, int] | None:
    """(same, compared): llama.cpp's verdicts against the server's, which runs the transformers
    backend on the same model; both check each request (and response) in one call."""
    gguf = {r.sample: r.verdict for r in rows if r.channel == "llama.cpp" and r.checks}
    hf = {r.sample: r.verdict for r in rows if r.channel == "server + OpenAI client" and r.checks}
    common = sorted(gguf.keys() & hf.keys())
    return (sum(gguf[k] == hf[k] for k in common), len(common)) if common else None


def describe_heldout(heldout: dict[str, Any]) -> str:
    parts = []
    for task in ("request", "response"):
        s = heldout.get(task)
        if s:
            parts.append(f"{task} F1 {s['f1']:.1f} (n={s['n']}, accuracy {s['accuracy']:.1f}%)")
    return "; ".join(parts)


# ================================================================================== main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="examples/demo.py",
        description="The main job: train (or load) a guard, then moderate sample traffic.",
    )
    parser.add_argument("--quick", action="store_true", help="a much shorter training run (tests, CI)")
    parser.add_argument("--cache-dir", type=Path, help="where the demo guard is cached "
                        "(default: $GUARDRAIL_CACHE_DIR/demo, else ~/.cache/guardrail/demo)")  # fmt: skip
    parser.add_argument("--retrain", action="store_true", help="ignore the cached demo guard")
    parser.add_argument("--export-gguf", action="store_true",
                        help="with GUARDRAIL_MODEL a local directory: export it to GGUF for llama.cpp")  # fmt: skip
    parser.add_argument("--max-new-tokens", type=int,
                        help="with GUARDRAIL_MODEL: the guard's generation budget (default: the profile's)")  # fmt: skip
    parser.add_argument("--eval", action="store_true",
                        help="with GUARDRAIL_MODEL: score it on the held-out demo set too")  # fmt: skip
    parser.add_argument(
        "--mode", choices=("reasoning", "fast", "cascade"), default="reasoning",
        help="how the guard decides the traffic: reasoning (default), fast (label probabilities, no "
        "reasoning) or cascade (fast, reasoning when unsure); the held-out F1 is for reasoning",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write everything shown to this JSON file")
    return parser.parse_args(argv)


def default_cache() -> Path:
    """``$GUARDRAIL_CACHE_DIR/demo`` (the library's cache, as for llama.cpp's converter; else
    ``$XDG_CACHE_HOME/guardrail`` or ``~/.cache/guardrail``); ``$GUARDRAIL_CACHE`` of the other
    examples is honoured too."""
    from guardrail.export.gguf import default_cache_dir

    legacy = os.environ.get("GUARDRAIL_CACHE")
    return (
        Path(legacy) if legacy and not os.environ.get("GUARDRAIL_CACHE_DIR") else default_cache_dir()
    ) / "demo"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    quiet_third_party()
    cache_root = (args.cache_dir or default_cache()).expanduser().resolve()
    model = os.environ.get("GUARDRAIL_MODEL")
    console.say(f"guardrail {guardrail.__version__} - the main job")
    console.say("=" * 100)

    console.say("Part 1: the guard")
    try:
        if model:
            demo = given_guard(
                console, model, cache_root, export=args.export_gguf or _env_flag("GUARDRAIL_DEMO_GGUF"),
                max_new_tokens=args.max_new_tokens, evaluate=args.eval,
            )  # fmt: skip
        else:
            demo = build_demo_guard(console, cache_root, quick=args.quick, retrain=args.retrain)
        demo.mode = args.mode
        with console.timed(f"loading the guard ({demo.model}, {args.mode} mode)"):
            guard = load_guard(demo, args.mode)
    except (GuardrailError, OSError) as exc:
        what = repr(model) if model else "(the demo guard)"
        console.say(f"cannot load the guard {what}: {type(exc).__name__}: {exc}")
        if model and not Path(model).expanduser().exists():
            console.say("(a hub id needs internet access, or the model already in the Hugging Face cache; "
                        "HF_HUB_OFFLINE=1 forbids downloads)")  # fmt: skip
        return 2
    gguf_guard, gguf_note = None, demo.gguf_note
    if demo.gguf is not None:
        with console.timed("loading the GGUF guard with llama.cpp"):
            gguf_guard, gguf_note = load_gguf_guard(demo)

    traffic = load_traffic()
    console.say("")
    console.say(
        f"Part 2: moderating {len(traffic)} sample requests ({SAMPLES.relative_to(REPO)}) through each channel"
    )
    try:
        rows, problems = run_channels(console, guard, gguf_guard, gguf_note, traffic)
    finally:
        guard.close()
        if gguf_guard is not None:
            gguf_guard.close()

    console.say("")
    console.say("Part 3: verdicts")
    print_table(console, rows)
    console.say("")
    console.say(
        "checks: guard calls per request (the app channels check the request, then the reply with it);"
    )
    console.say(
        "decided by: 'model' = read from the guard's output, 'policy' = unreadable output, blocked (fail closed)."
    )
    if any(r.path for r in rows):
        console.say(
            "path: 'reasoning' = the model reasoned, then answered; 'fast' = label probabilities, no "
            "reasoning (--mode)."
        )
    parity = gguf_parity(rows)
    if parity:
        console.say(
            f"llama.cpp on the GGUF export and transformers (behind the server) agree on {parity[0]} of "
            f"{parity[1]} samples."
        )
    if demo.tiny:
        h = demo.heldout or {}
        console.say("")
        console.say(f"NOTE: this is a TINY demo guard (~0.2M parameters, trained in "
                    f"{demo.training_seconds or 0:.0f}s on {TRAIN.relative_to(REPO)}).")  # fmt: skip
        console.say(f"      Held-out F1 (harmful = positive) on {h.get('samples', '?')} unseen samples: "
                    f"{describe_heldout(h)}.")  # fmt: skip
        console.say(
            "      It shows the whole product working, not a guard to rely on: set GUARDRAIL_MODEL to a"
        )
        console.say(
            "      GuardReasoner-VL model (e.g. yueliu1999/GuardReasoner-VL-Eco-3B) for real verdicts."
        )
    elif demo.heldout:
        console.say(f"\nHeld-out F1 of {demo.model} on the demo set: {describe_heldout(demo.heldout)}.")
    for p in problems:
        console.say(f"problem: {p}")
    console.say(f"total time {console.elapsed():.1f}s")

    if args.json:
        _write_json(args.json, {
            "guardrail_version": guardrail.__version__,
            "guard": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(demo).items()},
            "rows": [dataclasses.asdict(r) for r in rows],
            "problems": problems,
            "gguf_parity": gguf_parity(rows),
            "seconds": round(console.elapsed(), 2),
        })  # fmt: skip
    return 1 if problems else 0


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


if __name__ == "__main__":
    raise SystemExit(main())
