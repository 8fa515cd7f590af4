"""``run_batch``: moderate every row of a dataset into a resumable output folder."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from guardrail._deps import require
from guardrail.batch.progress import Progress, format_duration
from guardrail.batch.rows import Columns, RowSpec, has_categories, moderate_table, output_schema
from guardrail.batch.sources import Source, open_source
from guardrail.batch.store import Output, new_run_id
from guardrail.errors import ConfigurationError

__all__ = [
    "BatchResult",
    "describe_guard",
    "format_summary",
    "plan_shards",
    "read_rows",
    "run_batch",
    "worker_cpus",
]

log = logging.getLogger("guardrail.batch")

GuardLike = Any  # a Guard, or anything with moderate_batch(items) -> verdicts
AUTO = "auto"  # image_root default: the input's folder


@dataclass(frozen=True)
class BatchResult:
    """What a run did: ``summary`` is also in ``OUT/summary.json``."""

    output: str
    summary: dict[str, Any]

    @property
    def complete(self) -> bool:
        return bool(self.summary.get("complete"))


def describe_guard(guard: Any) -> dict[str, Any]:
    """The options of a loaded guard that decide its verdicts (for the output's manifest)."""
    backend = getattr(guard, "backend", None)
    profile = getattr(guard, "profile", None)
    return {
        "backend": getattr(backend, "name", None), "model": getattr(backend, "model_name", None),
        "profile": getattr(profile, "name", None), "mode": getattr(guard, "mode", None),
        "threshold": getattr(guard, "threshold", None),
        "cascade_band": list(getattr(guard, "cascade_band", ()) or ()) or None,
        "max_new_tokens": getattr(guard, "max_new_tokens", None),
        "on_error": getattr(guard, "on_error", None), "on_parse_error": getattr(guard, "on_parse_error", None),
        "timeout_s": getattr(guard, "timeout_s", None),
    }  # fmt: skip


def _factory_name(factory: Callable[..., Any]) -> str:
    inner = getattr(factory, "func", factory)  # functools.partial
    return f"{getattr(inner, '__module__', '?')}.{getattr(inner, '__qualname__', type(inner).__name__)}"


def plan_shards(done: bytearray, shard_size: int) -> list[tuple[int, int]]:
    """Row ranges of ``shard_size`` rows that still hold rows to moderate."""
    n = len(done)
    return [(s, min(s + shard_size, n)) for s in range(0, n, shard_size) if 0 in done[s : s + shard_size]]


def read_rows(source: Source, start: int, stop: int, done: bytes | None, row_column: str) -> Any:
    """Rows ``start``..``stop`` of ``source`` with their index in ``row_column``, less the rows
    flagged in ``done`` (flags for this range only)."""
    import pyarrow as pa

    table = source.read(start, stop)
    table = table.append_column(pa.field(row_column, pa.int64()), pa.array(range(start, start + table.num_rows),
                                                                             pa.int64()))  # fmt: skip
    if done and any(done):
        table = table.filter(pa.array([not flag for flag in done[: table.num_rows]]))
    return table


def worker_cpus(total_cpus: float, num_workers: int, gpus_per_worker: float) -> float:
    """CPUs reserved per actor when not given: one, but never so many that the actors hold every
    CPU of a small cluster (the read and write tasks then never run: a deadlock)."""
    if gpus_per_worker > 0:
        return 1.0
    spare = max(total_cpus - 1.0, 0.0)
    return round(min(1.0, max(0.1, spare / max(num_workers, 1))), 2)


def run_batch(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    guard: GuardLike | Callable[[], GuardLike],
    *,
    guard_identity: Mapping[str, Any] | None = None,
    engine: str = "local",
    input_format: str = "auto",
    split: str | None = None,
    columns: Columns | None = None,
    image_root: str | os.PathLike[str] | None = AUTO,
    output_format: str = "parquet",
    prefix: str = "",
    reasoning: bool = False,
    batch_size: int = 8,
    shard_size: int = 256,
    overwrite: bool = False,
    progress: bool = True,
    num_workers: int = 1,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float | None = None,
    ray_address: str | None = None,
    stream: IO[str] | None = None,
) -> BatchResult:
    """Moderate every row of ``input`` into the folder ``output`` (see docs/batch.md).

    ``guard`` is a :class:`~guardrail.Guard` (local engine), or a function of no arguments that
    returns one (either engine: each Ray worker calls it once). ``guard_identity`` describes the
    guard's options for the manifest (default: read from the guard, or the function's name).
    Rerunning with the same arguments resumes; with other input or options it refuses, naming
    the difference, unless ``overwrite`` (which discards the old output).
    """
    require("pyarrow", extra="batch", feature="guardrail batch")
    if batch_size < 1 or shard_size < 1:
        raise ConfigurationError("batch_size and shard_size must be at least 1")
    if engine not in ("local", "ray"):
        raise ConfigurationError(f"engine must be 'local' or 'ray', not {engine!r}")
    is_guard = hasattr(guard, "moderate_batch")
    if engine == "ray" and is_guard:
        raise ConfigurationError(
            "the Ray engine loads a guard in each worker: pass a function that builds it"
        )
    if not is_guard and not callable(guard):
        raise ConfigurationError("guard must be a Guard or a function that returns one")
    if engine == "ray":
        require("ray.data", extra="ray", package="ray[data]", feature="the Ray engine (engine='ray')")
    stream = stream or sys.stdout
    started = time.perf_counter()

    source = open_source(input, kind=input_format, split=split)
    root = (
        source.image_root
        if image_root == AUTO
        else (None if image_root is None else str(Path(image_root).resolve()))
    )
    spec = RowSpec(
        (columns or Columns()).resolve(source.columns), root, source.json_columns, prefix, reasoning
    )
    output_schema(source.schema, spec)  # a column clash fails now, not in a worker
    identity = dict(guard_identity) if guard_identity is not None else (
        describe_guard(guard) if is_guard else {"factory": _factory_name(guard)})  # fmt: skip
    manifest = {
        "input": source.fingerprint(),
        "input_path": str(Path(input).resolve()),  # for reading; not part of the hash (files may move)
        "options": {
            "guard": identity,
            "columns": spec.columns.describe(),
            "image_root": root,
            "prefix": prefix,
            "reasoning": reasoning,
            "format": output_format,
            "categories": has_categories(),
        },  # fmt: skip
    }
    out = Output(output, output_format)
    out.lock()
    try:
        out.prepare(manifest, overwrite=overwrite)
        done = out.done_rows(spec.row_column, source.num_rows)
        skipped = sum(done)
        shards = plan_shards(done, shard_size)
        run_id = new_run_id()
        failure: BaseException | None = None
        try:
            if shards and engine == "local":
                _run_local(source, out, guard, spec, shards, done, batch_size, run_id,
                           Progress(source.num_rows, skipped, enabled=progress))  # fmt: skip
            elif shards:
                from guardrail.batch.ray_engine import run_ray

                run_ray(source, out, guard, spec, shards, done, batch_size=batch_size, num_workers=num_workers,
                        gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker,
                        ray_address=ray_address, run_id=run_id, stream=stream)  # fmt: skip
        except BaseException as exc:
            failure = exc
            raise
        finally:
            interrupted = isinstance(failure, KeyboardInterrupt)
            summary: dict[str, Any] = {"rows": "?"}
            try:
                summary = _finish(
                    out, source, spec, engine, skipped, time.perf_counter() - started, interrupted
                )
            except Exception:
                if failure is None:
                    raise
                log.exception("could not write the summary of the failed run")  # the failure matters more
            if interrupted:
                print(f"\ninterrupted: {summary['rows']} of {source.num_rows} rows are written; rerun the "
                      "same command to moderate the rest", file=sys.stderr)  # fmt: skip
    finally:
        out.unlock()
    return BatchResult(str(out.root), summary)


def _finish(out: Output, source: Source, spec: RowSpec, engine: str, skipped: int, seconds: float,
            interrupted: bool) -> dict[str, Any]:  # fmt: skip
    """The summary of the output as it now is, with this run's numbers; also written to disk."""
    processed = sum(out.done_rows(spec.row_column, source.num_rows)) - skipped
    summary = out.summarize(spec.prefix, has_categories())
    summary.update(
        input_rows=source.num_rows, complete=summary["rows"] == source.num_rows, output=str(out.root),
        run={"engine": engine, "rows": processed, "skipped": skipped, "seconds": round(seconds, 3),
             "checks_per_s": round(processed / seconds, 3) if seconds > 0 else None, "interrupted": interrupted},
    )  # fmt: skip
    out.write_summary(summary)
    return summary


def _run_local(source: Source, out: Output, guard: Any, spec: RowSpec, shards: list[tuple[int, int]],
               done: bytearray, batch_size: int, run_id: str, progress: Progress) -> None:  # fmt: skip
    import pyarrow as pa

    owned = not hasattr(guard, "moderate_batch")
    guard = guard() if owned else guard
    try:
        for index, (start, stop) in enumerate(shards):
            table = read_rows(source, start, stop, bytes(done[start:stop]), spec.row_column)
            parts = []
            for b in range(0, table.num_rows, batch_size):
                parts.append(moderate_table(guard, table.slice(b, batch_size), spec))
                progress.update(parts[-1].num_rows)
            out.write(pa.concat_tables(parts), out.new_name("local", run_id, index))
    finally:
        progress.close()
        if owned and hasattr(guard, "close"):
            guard.close()


def format_summary(summary: Mapping[str, Any]) -> str:
    run = summary.get("run", {})
    lines = [
        f"rows: {summary['rows']} of {summary.get('input_rows', '?')}"
        + ("" if summary.get("complete") else "  (INCOMPLETE: rerun to finish)"),
        f"blocked: {summary['blocked']} ({100 * summary['blocked_share']:.1f}%)   allowed: {summary['allowed']}",
        f"errors: {summary['errors']['input']} input, {summary['errors']['policy']} decided by the failure policy",
    ]
    if summary.get("categories"):
        lines.append("categories: " + ", ".join(f"{k} {v}" for k, v in summary["categories"].items()))
    if run:
        rate = run.get("checks_per_s")
        lines.append(
            f"this run ({run.get('engine')}): {run.get('rows')} rows in {format_duration(run.get('seconds', 0))}"
            + (f", {rate:.2f} checks/s" if rate else "")
            + (f", {run['skipped']} already done" if run.get("skipped") else "")
        )
    lines.append(f"output: {summary.get('output')}")
    return "\n".join(lines)
