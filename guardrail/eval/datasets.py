"""Deprecated module: its names moved to :mod:`guardrail.eval.benchmark` (the data model and
gold labels), :mod:`guardrail.eval.loaders` (the file readers) and
:mod:`guardrail.eval.registry` (the benchmark names, :func:`load_benchmark`); samples are
:class:`guardrail.samples.Sample`. Importing a name from here still works, with a
``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    **dict.fromkeys(
        ("POSITIVE", "TASKS", "Benchmark", "Sample", "answers_labels", "infer_task", "normalise_gold"),
        "guardrail.eval.benchmark",
    ),
    **dict.fromkeys(
        (
            "FIGSTEP_PROMPT",
            "load_figstep",
            "load_figstep_attack",
            "load_figstep_question",
            "load_guardreasoner",
            "load_harmbench",
            "load_jsonl",
            "load_mossbench",
            "load_openai_moderation",
            "load_simplesafetytests",
            "load_vltest",
            "load_xstest_completions",
            "load_xstest_prompts",
        ),
        "guardrail.eval.loaders",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "BENCHMARKS",
            "DATA_DIR_ENV",
            "FORMATS",
            "BenchmarkSpec",
            "Loader",
            "benchmark_name",
            "load_benchmark",
            "lookup",
            "resolve_data_dir",
        ),
        "guardrail.eval.registry",
    ),  # fmt: skip
}


def split_guardreasoner_input(text: str) -> tuple[str | None, str | None]:
    """Deprecated: use :func:`guardrail.profiles.parse_user_text` (its
    :class:`~guardrail.errors.FormatError` is a ValueError, as this function's error was)."""
    warnings.warn(
        "guardrail.eval.datasets.split_guardreasoner_input is deprecated; use guardrail.profiles.parse_user_text",
        DeprecationWarning,
        stacklevel=2,
    )
    from guardrail.profiles import parse_user_text

    return parse_user_text(text)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"guardrail.eval.datasets is deprecated; import {name} from {_MOVED[name]}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'guardrail.eval.datasets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*_MOVED, "split_guardreasoner_input"])
