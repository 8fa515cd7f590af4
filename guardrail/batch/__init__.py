"""Moderate a whole dataset (``python -m guardrail batch``), in one process or on a Ray cluster.

>>> from guardrail import Guard                                                    # doctest: +SKIP
>>> from guardrail.batch import run_batch
>>> result = run_batch("chats.jsonl", "out/", Guard.from_pretrained(MODEL))        # doctest: +SKIP
>>> result.summary["blocked_share"]                                                # doctest: +SKIP

Input: JSONL, Parquet or a saved Hugging Face dataset; output: a folder of Parquet or JSONL
files holding the input rows plus verdict columns, written as the job goes, so that rerunning
an interrupted job finishes it without losing or repeating a row. See docs/batch.md.

- :mod:`guardrail.batch.rows`: rows -> guard items -> verdict columns (no I/O).
- :mod:`guardrail.batch.sources`: the inputs; :mod:`guardrail.batch.store`: the output folder.
- :mod:`guardrail.batch.job`: :func:`run_batch` and the local engine;
  :mod:`guardrail.batch.ray_engine`: the Ray engine (``ray`` extra).

Importing this package imports neither pyarrow nor Ray.
"""

from __future__ import annotations

from guardrail.batch.job import BatchResult, describe_guard, format_summary, run_batch
from guardrail.batch.rows import Columns, RowSpec, moderate_rows

__all__ = [
    "BatchResult",
    "Columns",
    "RowSpec",
    "describe_guard",
    "format_summary",
    "moderate_rows",
    "run_batch",
]
