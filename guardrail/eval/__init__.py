"""Evaluate guards the way the papers do: benchmarks, predictions, F1, reports.

>>> from guardrail.eval import load_benchmark, run_benchmarks, read_predictions, score_sets
>>> bench = load_benchmark("SimpleSafetyTests", data_dir="data")           # doctest: +SKIP
>>> run_benchmarks(guard, [bench], "out/")                                 # doctest: +SKIP
>>> report = score_sets([read_predictions("out/SimpleSafetyTests.jsonl")])  # doctest: +SKIP

Command line: ``python -m guardrail.eval {run,score,report,list,threshold}``; see docs/evaluation.md.

- :mod:`~guardrail.eval.benchmark`: benchmarks of labelled samples (:class:`guardrail.samples.Sample`);
- :mod:`~guardrail.eval.loaders` and :mod:`~guardrail.eval.registry`: the file readers and the
  registry of benchmark names;
- :mod:`~guardrail.eval.run`: run a guard, write and resume predictions files;
- :mod:`~guardrail.eval.predictions`: read predictions files (ours and GuardReasoner's);
- :mod:`~guardrail.eval.metrics` and :mod:`~guardrail.eval.score`: pure metrics and protocols,
  threshold curves (ROC, precision/recall) and threshold picking for fast mode's scores;
- :mod:`~guardrail.eval.report`: markdown, JSON and PNG reports.

Nothing here imports torch; the PNG report imports matplotlib when it draws.
"""

from __future__ import annotations

from guardrail.errors import DatasetError, PredictionsError
from guardrail.eval.benchmark import POSITIVE, TASKS, Benchmark, Sample
from guardrail.eval.metrics import (
    Confusion,
    Outcomes,
    ThresholdChoice,
    ThresholdCurve,
    average_precision,
    confusion,
    pick_threshold,
    roc_auc,
    threshold_curve,
    weighted_mean,
)
from guardrail.eval.predictions import PredictionRow, PredictionSet, discover, read_predictions
from guardrail.eval.registry import BENCHMARKS, FORMATS, load_benchmark, resolve_data_dir
from guardrail.eval.report import curves_png, to_json, to_markdown, to_png, write_report
from guardrail.eval.run import RunResult, run_benchmark, run_benchmarks
from guardrail.eval.score import PROTOCOLS, Average, ScoreReport, TaskScore, outcomes, score_sets

__all__ = [
    "BENCHMARKS",
    "FORMATS",
    "POSITIVE",
    "PROTOCOLS",
    "TASKS",
    "Average",
    "Benchmark",
    "Confusion",
    "Outcomes",
    "DatasetError",
    "PredictionRow",
    "PredictionSet",
    "PredictionsError",
    "RunResult",
    "Sample",
    "ScoreReport",
    "TaskScore",
    "ThresholdChoice",
    "ThresholdCurve",
    "average_precision",
    "curves_png",
    "confusion",
    "discover",
    "load_benchmark",
    "outcomes",
    "pick_threshold",
    "read_predictions",
    "resolve_data_dir",
    "roc_auc",
    "run_benchmark",
    "run_benchmarks",
    "score_sets",
    "threshold_curve",
    "to_json",
    "to_markdown",
    "to_png",
    "write_report",
    "weighted_mean",
]
