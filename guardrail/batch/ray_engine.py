"""The Ray engine: Ray Data reads the input, an actor pool moderates it, Ray's writers write it.

- Reading: a Ray Data datasource whose read tasks read the input's row ranges (shards) on the
  workers, tag every row with its index and drop the rows already done. Ray's own file readers
  give rows no stable index, which resuming and the exactly-once check need.
- Moderating: ``map_batches`` with an actor pool of ``num_workers`` actors; each builds its
  guard once (the guard factory) and moderates ``batch_size`` rows per call. An actor that
  dies is restarted and its batches are retried: Ray Data's actor pools default to
  ``max_restarts=-1`` and ``max_task_retries=-1`` (tests/test_batch_ray.py kills one to check).
- Writing: ``write_parquet``, or for JSONL a file datasink writing the same JSON lines as the
  local engine; files are named ``ray-<write>-<task>``, so a retried write task replaces its
  own file.

This module imports Ray; :mod:`guardrail.batch.job` imports it only for ``engine="ray"``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import IO, Any

import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, FilenameProvider, ReadTask
from ray.data.datasource.file_datasink import BlockBasedFileDatasink

from guardrail.batch.job import read_rows, worker_cpus
from guardrail.batch.rows import RowSpec, moderate_table
from guardrail.batch.sources import Source
from guardrail.batch.store import Output, jsonl_bytes

__all__ = ["GuardActor", "JsonlDatasink", "ShardDatasource", "run_ray"]

IO_CPUS = 0.25  # CPUs reserved by each read and write task


def _read(source_ref: Any, start: int, stop: int, done: bytes, row_column: str) -> list[Any]:
    source: Source = ray.get(source_ref)
    return [read_rows(source, start, stop, done, row_column)]


class ShardDatasource(Datasource):
    """The input's row ranges still to do, one read task each."""

    def __init__(self, source: Source, shards: list[tuple[int, int]], done: bytearray, row_column: str):
        super().__init__()
        # The source (its file list, a JSONL file's line index) goes to the object store once;
        # read tasks carry a reference, not a copy each.
        self.source_ref = ray.put(source)
        self.tasks = [(start, stop, bytes(done[start:stop])) for start, stop in shards]
        self.row_column = row_column

    def get_name(self) -> str:
        return "GuardrailInput"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:  # fmt: skip
        tasks = []
        for start, stop, done in self.tasks:
            meta = BlockMetadata(num_rows=(stop - start) - sum(done), size_bytes=None, input_files=None,
                                 exec_stats=None)  # fmt: skip
            read = functools.partial(_read, self.source_ref, start, stop, done, self.row_column)
            tasks.append(ReadTask(read, meta, per_task_row_limit=per_task_row_limit))
        return tasks


class GuardActor:
    """One worker of the pool: builds its guard once, then moderates batches."""

    def __init__(self, factory: Callable[[], Any], spec: RowSpec):
        self.guard = factory()
        self.spec = spec
        self.pid = os.getpid()

    def __call__(self, batch: Any) -> Any:
        return moderate_table(self.guard, batch, self.spec)


class _Names(FilenameProvider):
    """``ray-<write uuid>-<task>.<fmt>`` (Ray's Parquet writer adds ``-<i>`` before the suffix):
    a retried write task writes its own file again, never a second one."""

    def __init__(self, fmt: str):
        super().__init__(file_format=fmt)
        self.fmt = fmt

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"ray-{write_uuid}-{task_index:06d}.{self.fmt}"


class JsonlDatasink(BlockBasedFileDatasink):
    """JSON lines written exactly as the local engine writes them (bytes in base64, full float
    precision, integers kept), which pandas-based ``write_json`` does not do."""

    def __init__(self, path: str, **kwargs: Any):
        super().__init__(path, file_format="jsonl", **kwargs)

    def write_block_to_file(self, block: Any, file: Any) -> None:
        file.write(jsonl_bytes(block.to_arrow()))


def _start(ray_address: str | None, stream: IO[str]) -> bool:
    """Connect to Ray; True when a local Ray was started here (and must be shut down)."""
    if ray.is_initialized():
        return False
    if ray_address:
        ray.init(address=ray_address)
        return False
    ray.init(include_dashboard=False, dashboard_host="127.0.0.1")
    node = ray.util.get_node_ip_address()
    cpus = ray.cluster_resources().get("CPU", 0)
    print(
        f"guardrail batch: started a local Ray ({cpus:g} CPUs) with its dashboard off, on node address "
        f"{node}. Ray's processes listen on every network interface and no Ray setting keeps them on "
        "127.0.0.1: on a shared network run the job in a network namespace (docs/batch.md).",
        file=stream,
    )
    return True


def run_ray(source: Source, out: Output, factory: Callable[[], Any], spec: RowSpec,
            shards: list[tuple[int, int]], done: bytearray, *, batch_size: int, num_workers: int,
            gpus_per_worker: float, cpus_per_worker: float | None, ray_address: str | None,
            run_id: str, stream: IO[str] | None = None) -> None:  # fmt: skip
    """Moderate the rows of ``shards`` not flagged in ``done`` with a pool of actors."""
    if num_workers < 1:
        raise ValueError("num_workers must be at least 1")
    started = _start(ray_address, stream or sys.stderr)
    try:
        cpus = cpus_per_worker
        if cpus is None:
            cpus = worker_cpus(ray.cluster_resources().get("CPU", 1.0), num_workers, gpus_per_worker)
        # Reading and writing are light next to the guard: a quarter CPU each, so that on a small
        # machine they run alongside the actors (and the output is written as the job goes).
        # One block per shard: left alone, Ray Data splits blocks to reach its minimum block count,
        # and the actors then get batches of one or two rows.
        ds = ray.data.read_datasource(ShardDatasource(source, shards, done, spec.row_column), num_cpus=IO_CPUS,
                                      override_num_blocks=len(shards))  # fmt: skip
        ds = ds.map_batches(
            GuardActor, fn_constructor_kwargs={"factory": factory, "spec": spec}, batch_size=batch_size,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=num_workers), num_cpus=cpus,
            num_gpus=gpus_per_worker or None,
        )  # fmt: skip
        names = _Names(out.fmt)
        io = {"num_cpus": IO_CPUS}
        if out.fmt == "parquet":
            ds.write_parquet(str(out.data), filename_provider=names, try_create_dir=False, ray_remote_args=io)
        else:
            sink = JsonlDatasink(str(out.data), filename_provider=names, try_create_dir=False)
            ds.write_datasink(sink, ray_remote_args=io)
    finally:
        if started:
            ray.shutdown()
