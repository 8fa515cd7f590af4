"""``python -m guardrail batch``: moderate a whole dataset into a resumable output folder.

Exit codes: 0 every input row is in the output, 1 some are missing (rerun to finish), 2 error
(bad arguments, unreadable input, another job's output), 130 interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any

__all__ = ["add_batch", "guard_identity"]

# Guard options that do not change a verdict: left out of the output's manifest, so that
# changing them does not make a rerun refuse (and the API key is never written down).
_NOT_IDENTITY = frozenset({"remote_api_key", "cache_size", "threads"})


def add_batch(parser: argparse.ArgumentParser) -> Any:
    """Moderate every row of a dataset (JSONL, Parquet, saved HF dataset), locally or with Ray."""
    from guardrail.cli import add_backend_arguments

    parser.description = (
        "Moderate every row of a dataset and write the rows plus verdict columns to a folder, as "
        "the job goes: rerunning the same command after an interruption finishes the job without "
        "losing or repeating a row. See docs/batch.md."
    )
    add_backend_arguments(parser)
    io = parser.add_argument_group("input and output")
    io.add_argument("--input", required=True, help="a .jsonl or .parquet file, a folder of Parquet files, "
                    "or a folder written by datasets' save_to_disk")  # fmt: skip
    io.add_argument("--input-format", choices=["auto", "jsonl", "parquet", "hf"], default="auto")
    io.add_argument("--split", default=None, help="the split of a saved DatasetDict")
    io.add_argument("--output", required=True, help="the output folder (created; reused to resume)")
    io.add_argument("--output-format", choices=["parquet", "jsonl"], default="parquet")
    for role in ("prompt", "response", "images", "messages"):
        io.add_argument(f"--{role}-column", default=None, metavar="NAME",
                        help=f"the column holding the {role} (default: '{role}' when the input has it)")  # fmt: skip
    io.add_argument("--image-root", default=None, metavar="DIR",
                    help="image paths are read only inside this folder (default: the input's folder)")  # fmt: skip
    io.add_argument(
        "--no-image-paths", action="store_true", help="never read image paths (bytes and data URLs only)"
    )
    io.add_argument("--prefix", default="", help="put before every verdict column's name, e.g. guard_")
    io.add_argument("--reasoning", action="store_true", help="also write the model's reasoning text")
    io.add_argument("--overwrite", action="store_true",
                    help="discard what the output folder holds and start over (instead of refusing to mix "
                         "the output of other input or options)")  # fmt: skip
    io.add_argument("--no-progress", action="store_true", help="no progress line")
    run = parser.add_argument_group("execution")
    run.add_argument("--engine", choices=["local", "ray"], default="local")
    run.add_argument("--batch-size", type=int, default=8, help="rows per guard call (default 8)")
    run.add_argument("--shard-size", type=int, default=256,
                     help="rows per output file of the local engine, per read task of Ray (default 256)")  # fmt: skip
    run.add_argument(
        "--num-workers", type=int, default=1, help="ray: actors, each with one guard (default 1)"
    )
    run.add_argument("--gpus-per-worker", type=float, default=0.0, help="ray: GPUs per actor (default 0)")
    run.add_argument("--cpus-per-worker", type=float, default=None,
                     help="ray: CPUs per actor (default 1, less on small machines: see docs/batch.md)")  # fmt: skip
    run.add_argument("--ray-address", default=None,
                     help="ray: an existing cluster (e.g. auto, ray://head:10001); default: start a local Ray")  # fmt: skip
    return _run_batch


def guard_identity(args: argparse.Namespace) -> dict[str, Any]:
    """The guard options of ``args`` that decide verdicts (for the output's manifest)."""
    from guardrail.cli import add_backend_arguments

    probe = argparse.ArgumentParser(add_help=False)
    add_backend_arguments(probe)
    names = sorted(a.dest for a in probe._actions if a.dest not in _NOT_IDENTITY and a.dest != "help")
    identity = {name: getattr(args, name, None) for name in names}
    if isinstance(identity.get("model"), str) and os.path.exists(identity["model"]):
        identity["model"] = os.path.abspath(identity["model"])
    if isinstance(identity.get("cascade_band"), (list, tuple)):
        identity["cascade_band"] = list(identity["cascade_band"])
    return identity


def _run_batch(args: argparse.Namespace) -> int:
    from guardrail.batch import Columns, format_summary, run_batch
    from guardrail.batch.job import AUTO
    from guardrail.cli import guard_from_args

    columns = Columns(prompt=args.prompt_column, response=args.response_column, images=args.images_column,
                      messages=args.messages_column)  # fmt: skip
    image_root: Any = (
        None if args.no_image_paths else (os.path.abspath(args.image_root) if args.image_root else AUTO)
    )
    result = run_batch(
        args.input, args.output, functools.partial(guard_from_args, args),
        guard_identity=guard_identity(args), engine=args.engine, input_format=args.input_format,
        split=args.split, columns=columns, image_root=image_root, output_format=args.output_format,
        prefix=args.prefix, reasoning=args.reasoning, batch_size=args.batch_size,
        shard_size=args.shard_size, overwrite=args.overwrite, progress=not args.no_progress,
        num_workers=args.num_workers, gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker, ray_address=args.ray_address, stream=sys.stderr,
    )  # fmt: skip
    print(format_summary(result.summary))
    print(f"summary: {os.path.join(result.output, 'summary.json')}")
    return 0 if result.complete else 1
