"""Train custom guards with the GuardReasoner-VL recipe, on TRL, PEFT and Accelerate.

Command line: ``python -m guardrail.training {sft,sample,augment,rl,run,validate,card} --config recipe.yaml``
(see :mod:`guardrail.training.cli` and ``docs/training.md``). Python API:

=======================================  ===================================================
``SFTConfig`` / ``train_sft``            reasoning SFT (TRL ``SFTTrainer``)
``RejectionConfig`` / ``rejection_sample``  keep the samples the model gets wrong k/k times
``AugmentConfig`` / ``augment_dataset``  safety-aware concatenation (texts + merged images)
``RLConfig`` / ``train_rl``              GRPO (TRL ``GRPOTrainer``) with the guard rewards
``RecipeConfig`` / ``run_pipeline``      every stage from one recipe (:mod:`~.recipe`)
``rewards``                              reward functions with TRL's signature
``clipping``                             dynamic clip-range schedules and their callback
``data``                                 corpus loaders that validate every row
``validate``                             data summaries and checks (the ``validate`` command)
``fingerprint``                          what a recipe stage ran with (reruns reuse only that)
``health``                               parse rate / format reward warnings of sample and RL
``card``                                 model card and resolved config of a trained guard
=======================================  ===================================================

The stage modules hold each stage's config and runner; what they share has one module each:
``config`` (the config base, ``DataConfig``, ``TrainingConfig``), ``model`` (load the base
model, save the guard), ``dataset`` (TRL rows, prompts built by the profile), ``trainer`` (resume,
metrics, the train-and-save tail of SFT and RL) and ``runtime`` (threads, CUDA checks). Samples
are :class:`guardrail.samples.Sample`.

Importing this package is light: configs and rewards are plain Python; torch, transformers
and TRL load when a stage runs. Needs the ``training`` extra (``pip install
"guardrail-vl[training]"``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AugmentConfig",
    "AugmentResult",
    "ClipSchedule",
    "Example",
    "LoadedData",
    "PipelineResult",
    "RLConfig",
    "RecipeConfig",
    "RejectionConfig",
    "RowIssue",
    "SFTConfig",
    "Sample",
    "SampleResult",
    "SamplingStats",
    "TrainResult",
    "augment_dataset",
    "load_examples",
    "load_recipe",
    "rejection_sample",
    "run_pipeline",
    "train_rl",
    "train_sft",
]

_LAZY = {
    "AugmentConfig": "guardrail.training.augment",
    "AugmentResult": "guardrail.training.augment",
    "augment_dataset": "guardrail.training.augment",
    "ClipSchedule": "guardrail.training.clipping",
    "Example": "guardrail.training.data",
    "Sample": "guardrail.samples",
    "LoadedData": "guardrail.training.data",
    "RowIssue": "guardrail.training.data",
    "load_examples": "guardrail.training.data",
    "PipelineResult": "guardrail.training.recipe",
    "RecipeConfig": "guardrail.training.recipe",
    "load_recipe": "guardrail.training.recipe",
    "run_pipeline": "guardrail.training.recipe",
    "RejectionConfig": "guardrail.training.rejection",
    "SampleResult": "guardrail.training.rejection",
    "SamplingStats": "guardrail.training.rejection",
    "rejection_sample": "guardrail.training.rejection",
    "RLConfig": "guardrail.training.rl",
    "train_rl": "guardrail.training.rl",
    "SFTConfig": "guardrail.training.sft",
    "train_sft": "guardrail.training.sft",
    "TrainResult": "guardrail.training.trainer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'guardrail.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
