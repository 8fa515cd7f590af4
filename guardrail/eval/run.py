"""Run a guard over benchmarks and write one predictions file per benchmark.

:func:`run_benchmarks` is what ``python -m guardrail.eval run`` calls. Samples go to the guard
``batch_size`` at a time through :meth:`guardrail.Guard.moderate_batch`; every finished batch is
appended to ``OUT/<benchmark>.jsonl`` and flushed, so an interrupted run loses at most one batch
and the next run with the same ``OUT`` resumes: samples already in the file are skipped (a last
line cut short by the interruption is dropped and recomputed).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail.errors import ConfigurationError, InputError
from guardrail.eval.benchmark import Benchmark, Sample
from guardrail.eval.predictions import FORMAT, prediction_record, repair_and_read_ids
from guardrail.profiles.base import ModerationInput

__all__ = ["RunResult", "output_path", "run_benchmark", "run_benchmarks"]

log = logging.getLogger("guardrail.eval")

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RunResult:
    """What one benchmark's run did: ``written`` new rows, ``skipped`` rows already there."""

    benchmark: str
    path: str
    total: int
    written: int
    skipped: int
    seconds: float


def output_path(out_dir: str | os.PathLike[str], benchmark: str) -> Path:
    """``OUT/<benchmark>.jsonl`` (characters other than letters, digits, ``._-`` become ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", benchmark).strip(".") or "benchmark"
    return Path(out_dir) / f"{safe}.jsonl"


def _check_supported(guard: Any, benchmark: Benchmark) -> None:
    profile = guard.profile
    unsupported = [t for t in benchmark.tasks if t not in profile.tasks]
    if unsupported:
        raise ConfigurationError(
            f"benchmark {benchmark.name!r} is scored on {', '.join(unsupported)}, which profile "
            f"{profile.name!r} does not predict (its tasks: {', '.join(profile.tasks)})"
        )
    for kind, supported in (("images", profile.supports_images), ("videos", profile.supports_video),
                            ("audios", profile.supports_audio)):  # fmt: skip
        if not supported and any(getattr(s, kind) for s in benchmark.samples):
            what = "is text-only" if kind == "images" else f"takes no {kind}"
            raise ConfigurationError(
                f"benchmark {benchmark.name!r} has {kind}; profile {profile.name!r} {what}"
            )


def _batches(items: Sequence[Sample], size: int) -> Iterator[list[Sample]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _predicted(guard: Any, sample: Sample, raw_output: str) -> dict[str, str | None]:
    """Per-task labels as the guard's own profile parser reads them (a task the output does not
    answer is None, even when the others parse)."""
    item = ModerationInput(prompt=sample.prompt, response=sample.response)
    return dict(guard.profile.parse(raw_output, item).labels)


def _moderate(guard: Any, batch: list[Sample]) -> list[tuple[Any, str | None]]:
    """Verdicts for a batch; an invalid sample (bad image...) gets an input error instead of
    failing its whole batch."""
    try:
        return [(v, None) for v in guard.moderate_batch([s.request() for s in batch])]
    except InputError:
        pass  # find the culprit(s): validation happens before generation, so this is cheap
    out: list[tuple[Any, str | None]] = []
    for s in batch:
        try:
            out.append((guard.moderate_batch([s.request()])[0], None))
        except InputError as exc:
            out.append((None, f"input error: {type(exc).__name__}: {exc}"))
    return out


def run_benchmark(
    guard: Any,
    benchmark: Benchmark,
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    limit: int | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Moderate the samples of ``benchmark`` (the first ``limit`` of them) not yet in
    ``OUT/<benchmark>.jsonl`` and append their rows."""
    if batch_size < 1:
        raise ConfigurationError("batch_size must be at least 1")
    _check_supported(guard, benchmark)
    path = output_path(out_dir, benchmark.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = repair_and_read_ids(path, benchmark.name)
    selected = benchmark.samples[:limit] if limit is not None else benchmark.samples
    todo = [s for s in selected if s.id not in done]
    skipped = len(selected) - len(todo)
    start = time.perf_counter()
    written = 0
    if progress:
        progress(benchmark.name, skipped, len(selected))
    with open(path, "a", encoding="utf-8") as fh:
        for batch in _batches(todo, batch_size):
            lines = []
            for sample, (verdict, error) in zip(batch, _moderate(guard, batch), strict=True):
                raw = verdict.raw_output if verdict is not None else ""
                record = prediction_record(benchmark.name, sample, verdict, _predicted(guard, sample, raw),
                                           len(batch), error)  # fmt: skip
                lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            fh.write("".join(lines))
            fh.flush()
            written += len(batch)
            if progress:
                progress(benchmark.name, skipped + written, len(selected))
    return RunResult(benchmark.name, str(path), len(selected), written, skipped, time.perf_counter() - start)


def _write_manifest(guard: Any, out_dir: Path, benchmarks: Iterable[Benchmark], batch_size: int) -> None:
    from guardrail import __version__

    path = out_dir / "run.json"
    manifest: dict[str, Any] = {}
    if path.exists():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            manifest = {}
        for key, now in (("model", guard.backend.model_name), ("profile", guard.profile.name)):
            before = manifest.get(key)
            if before is not None and before != now:
                raise ConfigurationError(
                    f"{out_dir} holds predictions of {key} {before!r}, not {now!r}: use another --out "
                    "(or delete the folder) instead of mixing two guards"
                )
    names = list(dict.fromkeys([*manifest.get("benchmarks", []), *(b.name for b in benchmarks)]))
    manifest.update({
        "format": FORMAT,
        "model": guard.backend.model_name,
        "backend": guard.backend.name,
        "profile": guard.profile.name,
        "max_new_tokens": guard.max_new_tokens,
        "batch_size": batch_size,
        "benchmarks": names,
        "guardrail_version": __version__,
        "policy": _policy(guard),
    })  # fmt: skip
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _policy(guard: Any) -> dict[str, Any] | None:
    """The policy the guard's verdicts name codes of (per-category scores read it)."""
    from guardrail.profiles import effective_policy

    policy = effective_policy(guard.profile, getattr(guard, "policy", None))
    return policy.to_dict() if policy is not None else None


def run_benchmarks(
    guard: Any,
    benchmarks: Sequence[Benchmark],
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    limit: int | None = None,
    progress: Progress | None = None,
) -> list[RunResult]:
    """Run ``guard`` over each benchmark in turn (see :func:`run_benchmark`); writes ``OUT/run.json``.

    Every benchmark is checked against the guard's profile (tasks, images) before any is run.
    """
    files = [output_path(out_dir, b.name) for b in benchmarks]
    clash = sorted({b.name for b, f in zip(benchmarks, files, strict=True) if files.count(f) > 1})
    if clash:
        raise ConfigurationError(
            f"two benchmarks would write the same predictions file: {', '.join(clash)}; name them "
            "with NAME=PATH (e.g. --benchmarks dev=a/test.jsonl held-out=b/test.jsonl)"
        )
    for b in benchmarks:
        _check_supported(guard, b)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(guard, out, benchmarks, batch_size)
    return [
        run_benchmark(guard, b, out, batch_size=batch_size, limit=limit, progress=progress)
        for b in benchmarks
    ]


def console_progress(enabled: bool = True) -> Progress | None:
    """A progress callback: a tqdm bar per benchmark when tqdm is installed, else plain lines on
    standard error."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    bars: dict[str, Any] = {}

    def update(name: str, done: int, total: int) -> None:
        if tqdm is not None:
            bar = bars.get(name)
            if bar is None:
                bar = bars[name] = tqdm(total=total, initial=done, desc=name, unit="sample", file=sys.stderr)
            else:
                bar.update(done - bar.n)
            if done >= total:
                bar.close()
        else:
            print(f"{name}: {done}/{total}", file=sys.stderr, flush=True)

    return update
