"""Rejection sampling: find the samples the SFT model gets wrong every time.

The model answers each sample ``k`` times with randomness through a guard **backend** (named as
for :meth:`guardrail.Guard.from_pretrained`: ``transformers`` locally, ``remote`` for an
OpenAI-compatible endpoint such as a vLLM server; or passed in as an object); prompts are
rendered and answers parsed by the profile, as :class:`~guardrail.Guard` does. An answer is wrong
when it cannot be parsed or a label differs from the gold one; an answer the backend failed to
produce is neither (counted in ``errors``; its sample is not kept). The kept samples go to
``output_dir/hard.jsonl``, the counts to ``stats.json`` (:class:`SamplingStats`), and
``progress.jsonl`` lets an interrupted run continue; see ``docs/training.md``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from guardrail.backends.base import Backend, GenerationOptions
from guardrail.errors import ConfigurationError, TrainingError
from guardrail.profiles import Profile
from guardrail.samples import Sample
from guardrail.training.config import DataConfig, option
from guardrail.training.data import write_examples
from guardrail.training.health import below_thresholds, warn_unusable
from guardrail.training.runtime import timer, torch_threads

__all__ = ["RejectionConfig", "SampleResult", "SamplingStats", "judge", "rejection_sample"]

log = logging.getLogger("guardrail.training")

TASKS = ("request", "response")


@dataclass
class RejectionConfig(DataConfig):
    """Settings of ``python -m guardrail.training sample`` (recipe section ``sample``)."""

    section = "sample"

    model: str | None = option(
        None, "the SFT model (directory or hub id; for a remote backend, the served model)"
    )
    output_dir: str | None = option(None, "where hard.jsonl, stats.json and progress.jsonl go")
    backend: str = option("transformers", "guard backend name (see guardrail.backends.BACKENDS)")
    backend_options: dict = option(
        factory=dict, help="options for the backend loader (e.g. {device: cuda, dtype: bfloat16})"
    )
    k: int = option(4, "generations per sample")
    temperature: float = option(1.0, "sampling temperature")
    top_p: float = option(0.95, "nucleus sampling")
    max_new_tokens: int = option(1024, "generation budget per answer")
    batch_size: int = option(8, "samples per backend call (each repeated k times)")
    keep: str = option("all_wrong", "which samples to keep", choices=("all_wrong", "any_wrong"))
    min_keep: int = option(0, "keep at least this many (topped up with the most-often-wrong samples)")
    resume: bool = option(True, "skip samples already recorded in output_dir/progress.jsonl")
    disable_tqdm: bool = option(False, "hide the progress bar")
    num_threads: int | None = option(
        None, "CPU threads for torch while sampling (local backends; default: torch's)"
    )
    min_parse_rate: float = option(
        0.5, "warn when fewer answers than this share can be parsed by the guard (checked as it runs)"
    )
    on_unusable_output: str = option(
        "warn", "below min_parse_rate: warn, or stop the stage", choices=("warn", "stop")
    )

    def validate(self) -> None:
        super().validate()
        if self.k < 1:
            raise ConfigurationError("sample.k must be at least 1")
        if self.temperature <= 0:
            raise ConfigurationError("sample.temperature must be positive (rejection sampling samples)")
        if not 0 < self.top_p <= 1:
            raise ConfigurationError("sample.top_p must be in (0, 1]")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigurationError("sample.max_new_tokens and sample.batch_size must be at least 1")
        if self.min_keep < 0:
            raise ConfigurationError("sample.min_keep must be >= 0")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigurationError("sample.num_threads must be at least 1")
        if not 0 <= self.min_parse_rate <= 1:
            raise ConfigurationError("sample.min_parse_rate must be in [0, 1]")

    def require_paths(self, *, need_model: bool) -> None:
        if need_model and not self.model:
            raise ConfigurationError("sample.model: give the model to sample from")
        if not self.output_dir:
            raise ConfigurationError("sample.output_dir: give an output directory")


@dataclass(frozen=True)
class SamplingStats:
    """What rejection sampling saw.

    - ``samples``: samples judged; ``generations``: answers generated (``samples x k``);
    - ``kept``: samples written to ``hard.jsonl`` (``topped_up`` of them by ``min_keep``);
    - ``parse_failures`` and ``errors``: answers without labels / failed in the backend;
      ``parse_rate``: the share of answered generations that parse;
    - ``error_rate``: per task, the share of parsed-or-unparsable answers with a wrong label
      for that task (``response`` over samples that have a response), and ``any`` over all;
      when training on a policy, ``categories``: answers naming other categories than the gold;
    - ``wrong_histogram``: how many samples had 0, 1, ..., k wrong answers.
    """

    samples: int
    k: int
    generations: int
    kept: int
    topped_up: int
    parse_failures: int
    errors: int
    error_rate: dict[str, float]
    wrong_histogram: dict[str, int]
    mean_output_tokens: float | None
    seconds: float
    #: share of the answers (backend failures aside) whose labels the guard's parser reads
    parse_rate: float | None = None


@dataclass(frozen=True)
class SampleResult:
    """The kept samples, where they were written, and the statistics."""

    hard_file: str
    stats_file: str
    stats: SamplingStats
    kept: tuple[Sample, ...] = field(default=())


@dataclass(frozen=True)
class Judgement:
    """One answer checked against the gold labels."""

    wrong: bool | None  # None: the backend failed for this answer
    parsed: bool
    wrong_tasks: tuple[str, ...]
    output_tokens: int | None


def judge(
    profile: Profile, example: Sample, text: str, *, error: bool = False, output_tokens: int | None = None
) -> Judgement:
    """Check one answer: wrong when unparsable or when a task's label differs from the gold one;
    for a profile trained on a policy, also when the categories it names differ from the sample's
    (compared as sets, spelled as the policy spells them; ``wrong_tasks`` then holds ``categories``)."""
    if error:
        return Judgement(None, False, (), output_tokens)
    item = example.moderation_input()
    parsed = profile.parse(text, item)
    gold = {"request": example.request_label, "response": example.response_label}
    tasks = [t for t in TASKS if gold[t] is not None]
    policy = profile.trained_policy
    if not parsed.ok:
        return Judgement(True, False, (*tasks, *(("categories",) if policy else ())), output_tokens)
    wrong = tuple(t for t in tasks if parsed.labels.get(t) != gold[t])
    if policy is not None:  # a guard trained on a policy must also name the right categories
        if set(policy.canonical(parsed.categories)) != set(policy.canonical(example.categories or ())):
            wrong = (*wrong, "categories")
    return Judgement(bool(wrong), True, wrong, output_tokens)


def rejection_sample(
    config: RejectionConfig,
    *,
    backend: Backend | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SampleResult:
    """Run rejection sampling as ``config`` says (see the module docstring).

    ``backend``: a ready backend (e.g. :class:`~guardrail.testing.FakeBackend` in tests);
    by default ``config.backend`` is loaded for ``config.model``. ``progress(done, total)`` is
    called after each batch.
    """
    with torch_threads(config.num_threads):
        return _rejection_sample(config, backend, progress)


def _rejection_sample(
    config: RejectionConfig, backend: Backend | None, progress: Callable[[int, int], None] | None
) -> SampleResult:
    elapsed = timer()
    config.require_paths(need_model=backend is None)
    data = config.load(require_target=False)
    profile = config.get_profile()
    out = Path(config.output_dir or ".")
    out.mkdir(parents=True, exist_ok=True)
    progress_file = out / "progress.jsonl"
    done = (
        {i: r for i, r in _read_progress(progress_file).items() if r.get("k") == config.k}
        if config.resume
        else {}
    )
    if not config.resume and progress_file.exists():
        progress_file.unlink()
    todo = [ex for ex in data.examples if ex.id not in done]
    if done:
        log.info(
            "sample: %d of %d samples already done (progress.jsonl), %d to go",
            len(data.examples) - len(todo),
            len(data.examples),
            len(todo),
        )
    own_backend = backend is None
    if backend is None and todo:
        from guardrail.backends import _load

        backend = _load(config.backend, config.model, **config.backend_options)
    bar = _progress_bar(len(todo), config.disable_tqdm)
    warned = False
    already = len(done)  # seeds follow the position in the data, so a resumed run draws the same
    try:
        with progress_file.open("a", encoding="utf-8") as fh:
            for start in range(0, len(todo), config.batch_size):
                batch = todo[start : start + config.batch_size]
                records = _sample_batch(backend, profile, batch, config, seed_offset=already + start)
                for rec in records:
                    fh.write(json.dumps(rec) + "\n")
                    done[rec["id"]] = rec
                fh.flush()
                warned = _check_parse_rate(config, done.values(), warned)
                if bar is not None:
                    bar.update(len(batch))
                if progress is not None:
                    progress(len(done), len(data.examples))
    finally:
        if bar is not None:
            bar.close()
        if own_backend and backend is not None:
            backend.close()
    return _finish(config, data.examples, done, out, elapsed)


def _sample_batch(
    backend: Any, profile: Profile, batch: Sequence[Sample], config: RejectionConfig, seed_offset: int
) -> list[dict[str, Any]]:
    from guardrail.inputs import load_image

    prompts = []
    for ex in batch:
        images = [load_image(p, index=i) for i, p in enumerate(ex.images)]
        rendered = profile.render(ex.moderation_input(images))
        prompts.extend([rendered] * config.k)
    options = GenerationOptions(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        seed=config.seed + seed_offset,
    )
    generations = backend.generate(prompts, options)
    if len(generations) != len(prompts):
        raise RuntimeError(f"backend returned {len(generations)} outputs for {len(prompts)} prompts")
    records = []
    for i, ex in enumerate(batch):
        judged = [
            judge(profile, ex, g.text, error=g.error is not None, output_tokens=g.output_tokens)
            for g in generations[i * config.k : (i + 1) * config.k]
        ]
        records.append(
            {
                "id": ex.id,
                "k": config.k,
                "wrong": sum(1 for j in judged if j.wrong),
                "errors": sum(1 for j in judged if j.wrong is None),
                "parse_failures": sum(1 for j in judged if j.wrong is not None and not j.parsed),
                "wrong_tasks": {t: sum(1 for j in judged if t in j.wrong_tasks) for t in _tasks(profile)},
                "tokens": [j.output_tokens for j in judged],
            }
        )
    return records


def _tasks(profile: Profile) -> tuple[str, ...]:
    return (*TASKS, "categories") if profile.trained_policy is not None else TASKS


def _finish(
    config: RejectionConfig,
    examples: Sequence[Sample],
    records: dict[str, Any],
    out: Path,
    elapsed: Callable[[], float],
) -> SampleResult:
    k = config.k
    recs = [(ex, records[ex.id]) for ex in examples if ex.id in records]

    def qualifies(rec: dict[str, Any]) -> bool:
        if rec["errors"]:
            return False
        return rec["wrong"] == k if config.keep == "all_wrong" else rec["wrong"] > 0

    kept = [(ex, rec) for ex, rec in recs if qualifies(rec)]
    topped = 0
    if len(kept) < config.min_keep:
        kept_ids = {ex.id for ex, _ in kept}
        rest = sorted(
            ((ex, rec) for ex, rec in recs if ex.id not in kept_ids and not rec["errors"]),
            key=lambda er: -er[1]["wrong"],
        )  # stable: ties keep the data order
        extra = rest[: config.min_keep - len(kept)]
        topped = len(extra)
        kept_ids |= {ex.id for ex, _ in extra}
        kept = [(ex, rec) for ex, rec in recs if ex.id in kept_ids]
    hard = [replace(ex, meta={**dict(ex.meta), "wrong": rec["wrong"], "k": k}) for ex, rec in kept]
    hard_file = out / "hard.jsonl"
    write_examples(hard_file, hard)

    answers = sum(k - rec["errors"] for _, rec in recs)
    with_response = [rec for ex, rec in recs if ex.response_label is not None]
    response_answers = sum(k - rec["errors"] for rec in with_response)
    tokens = [t for _, rec in recs for t in rec["tokens"] if t is not None]
    wrong_categories = sum(rec["wrong_tasks"].get("categories", 0) for _, rec in recs)
    histogram = {str(n): 0 for n in range(k + 1)}
    for _, rec in recs:
        histogram[str(rec["wrong"])] = histogram.get(str(rec["wrong"]), 0) + 1
    stats = SamplingStats(
        samples=len(recs),
        k=k,
        generations=len(recs) * k,
        kept=len(hard),
        topped_up=topped,
        parse_failures=sum(rec["parse_failures"] for _, rec in recs),
        errors=sum(rec["errors"] for _, rec in recs),
        error_rate={
            "request": _rate(sum(rec["wrong_tasks"]["request"] for _, rec in recs), answers),
            "response": _rate(sum(rec["wrong_tasks"]["response"] for rec in with_response), response_answers),
            "any": _rate(sum(rec["wrong"] for _, rec in recs), answers),
            **({"categories": _rate(wrong_categories, answers)} if config.policy else {}),
        },
        wrong_histogram=histogram,
        mean_output_tokens=(sum(tokens) / len(tokens)) if tokens else None,
        seconds=round(elapsed(), 3),
        parse_rate=_parse_rate(rec for _, rec in recs),
    )
    stats_file = out / "stats.json"
    stats_file.write_text(json.dumps(asdict(stats), indent=2) + "\n", encoding="utf-8")
    if not hard:
        log.warning(
            "sample: no sample qualified (keep: %s); the next stages need data: set sample.min_keep "
            "or keep: any_wrong",
            config.keep,
        )
    log.info(
        "sample: kept %d of %d samples (%d topped up); error rates %s; parse rate %s (%d of %d answers unparsable)",
        stats.kept, stats.samples, stats.topped_up, stats.error_rate,
        "-" if stats.parse_rate is None else f"{stats.parse_rate:.0%}", stats.parse_failures,
        stats.generations - stats.errors,
    )  # fmt: skip
    _check_parse_rate(config, (rec for _, rec in recs), warned=False, final=True)
    return SampleResult(str(hard_file), str(stats_file), stats, tuple(hard))


def _parse_rate(records: Iterable[dict[str, Any]]) -> float | None:
    answered = failures = 0
    for rec in records:
        answered += rec["k"] - rec["errors"]
        failures += rec["parse_failures"]
    return round(1 - failures / answered, 6) if answered else None


_ADVICE = (
    "the model cannot answer in the guard's format, so nearly every sample looks 'hard' and RL "
    "would learn from unreadable answers: train SFT longer or check its data, raise "
    "sample.max_new_tokens if answers are cut, or set on_unusable_output: stop"
)


def _check_parse_rate(
    config: RejectionConfig, records: Iterable[dict[str, Any]], warned: bool, *, final: bool = False
) -> bool:
    """Warn (once while running, again at the end) or stop when the parse rate is too low;
    return whether a warning was given. Checked once 32 answers are in."""
    records = list(records)
    rate = _parse_rate(records)
    answered = sum(r["k"] - r["errors"] for r in records)
    problems = below_thresholds(rate, None, min_parse_rate=config.min_parse_rate)
    if not problems or (answered < 32 and not final) or (warned and not final):
        return warned
    where = "over the stage" if final else f"after {answered} answers"
    text = warn_unusable("sample", where, problems, _ADVICE)
    if config.on_unusable_output == "stop":
        raise TrainingError(f"{text} (stopped: on_unusable_output is stop; rerun to continue)")
    return True


def _rate(wrong: int, total: int) -> float:
    return round(wrong / total, 6) if total else 0.0


def _read_progress(path: Path) -> dict[str, Any]:
    done: dict[str, Any] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interruption: that sample is redone
        if isinstance(rec, dict) and "id" in rec:
            done[rec["id"]] = rec
    return done


def _progress_bar(total: int, disable: bool) -> Any:
    if disable or total == 0 or os.environ.get("GUARDRAIL_NO_PROGRESS"):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the training extra
        return None
    return tqdm(total=total, desc="rejection sampling", unit="sample")
