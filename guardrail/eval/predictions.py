"""Predictions files: what ``run`` writes and ``score`` reads.

Three formats are read:

- **guardrail** (written by ``python -m guardrail.eval run``): ``OUT/<benchmark>.jsonl``, one JSON
  object per sample, see :func:`prediction_record`. ``OUT/run.json`` describes the run.
- **guardreasoner**: the files the GuardReasoner papers' scorer reads (LLaMA-Factory's
  ``<Benchmark>/generated_predictions.jsonl``): ``{"prompt", "label", "predict"}`` per line, the
  benchmark named by the folder. ``label`` is the gold label (or an ``Answers:`` block); the
  predicted labels are read from ``predict`` with the library's GuardReasoner parser.
- **omni**: what GuardReasoner-Omni's ``src/generate.py`` writes
  (``<benchmark>/generated_predictions.jsonl``): ``{"task_type", "text_output", "label",
  "predict"}`` per line, ``predict`` being the reference's own decision (its regex on
  ``text_output``, a parse failure already replaced by the opposite of ``label``), kept as
  :attr:`PredictionRow.reference_label`; the library's labels come from ``text_output`` with the
  GuardReasoner-VL parser. The modality is the benchmark's (:data:`~guardrail.eval.registry.OMNI_BENCHMARKS`).

Both become :class:`PredictionRow` objects. Any malformed line raises
:class:`~guardrail.errors.PredictionsError` with the file and line number.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail.errors import DatasetError, FormatError, PredictionsError
from guardrail.eval.benchmark import TASKS, Sample, answers_labels, infer_task, normalise_gold
from guardrail.eval.registry import OMNI_BENCHMARKS, lookup
from guardrail.profiles import parse_user_text

__all__ = [
    "FORMAT",
    "GUARDREASONER_TASKS",
    "PredictionRow",
    "PredictionSet",
    "discover",
    "prediction_record",
    "read_predictions",
    "repair_and_read_ids",
]

FORMAT = "guardrail-eval/1"
GR_FILE = "generated_predictions.jsonl"

#: Task of each benchmark in the GuardReasoner predictions folders (names as the scorer spells
#: them). Other folder names: the task is inferred from the labels.
GUARDREASONER_TASKS: Mapping[str, str] = {
    "ToxicChat": "request",
    "HarmBenchPrompt": "request",
    "OpenAIModeration": "request",
    "AegisSafetyTest": "request",
    "SimpleSafetyTests": "request",
    "HarmBenchResponse": "response",
    "SafeRLHF": "response",
    "BeaverTails": "response",
    "XSTestReponseHarmful": "response",
    "XSTestResponseHarmful": "response",
    "XSTestResponseRefusal": "refusal",
}


@dataclass(frozen=True)
class PredictionRow:
    """One scored sample, whatever file it came from.

    ``labels``: gold label per task. ``predicted``: the label the guard's output gives for each
    task (None: not given, i.e. a parse failure for that task). ``raw_output``: the model's text.
    ``latency_ms`` is the wall time of the batched call the sample was part of (``batch_size``
    samples); ``score`` is P(harmful) where the mode provides one (fast and cascade modes), the
    larger of the task scores; ``scores`` holds it per task (``request``, ``response``).
    """

    benchmark: str
    id: str
    labels: Mapping[str, str]
    predicted: Mapping[str, str | None]
    raw_output: str
    modality: str = "text"
    parsed: bool = True
    output_tokens: int | None = None
    latency_ms: float | None = None
    batch_size: int = 1
    score: float | None = None
    error: str | None = None
    line: int = 0
    scores: Mapping[str, float | None] = field(default_factory=dict)
    #: the sample's category labels (None: the benchmark has none) and the codes the verdict
    #: names (None: no verdict, or a file written before categories were recorded)
    categories: tuple[str, ...] | None = None
    predicted_categories: tuple[str, ...] | None = None
    #: the label the paper's own script recorded for the row (GuardReasoner-Omni's ``predict``)
    reference_label: str | None = None

    def task_score(self, task: str) -> float | None:
        """P(positive) for ``task``: the per-task score, else (older files) ``score`` for the
        harmfulness tasks; None for refusal without a per-task score."""
        if self.scores:
            return self.scores.get(task)
        return self.score if task in ("request", "response") else None


@dataclass(frozen=True)
class PredictionSet:
    """The rows of one benchmark's predictions file."""

    benchmark: str
    path: str
    format: str
    rows: tuple[PredictionRow, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------- writing
def prediction_record(benchmark: str, sample: Sample, verdict: Any, predicted: Mapping[str, str | None],
                      batch_size: int, error: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The JSON object written for one sample (``verdict`` may be None after an input error)."""
    v = verdict.model_dump(exclude={"raw_output", "reasoning"}) if verdict is not None else None
    return {
        "benchmark": benchmark,
        "id": sample.id,
        "input": {
            "prompt": sample.prompt,
            "response": sample.response,
            "images": list(sample.images),
            **({"videos": list(sample.videos)} if sample.videos else {}),
            **({"audios": list(sample.audios)} if sample.audios else {}),
        },
        "modality": sample.modality,
        "labels": dict(sample.labels),
        "raw_output": verdict.raw_output if verdict is not None else "",
        "parsed": bool(verdict is not None and verdict.parsed),
        "predicted": {t: predicted.get(t) for t in TASKS},
        "verdict": v,
        "output_tokens": verdict.output_tokens if verdict is not None else None,
        "latency_ms": verdict.latency_ms if verdict is not None else None,
        "batch_size": batch_size,
        "score": verdict.score if verdict is not None else None,
        "scores": _task_scores(verdict),
        "error": error or _backend_error(verdict),
        "categories": list(sample.categories) if sample.categories is not None else None,
        "predicted_categories": list(verdict.categories) if verdict is not None else None,
    }


def _task_scores(verdict: Any) -> dict[str, float | None] | None:
    if verdict is None or verdict.score is None:
        return None
    return {
        "request": verdict.request_score,
        "response": verdict.response_score,
        "refusal": verdict.refusal_score,
    }


def _backend_error(verdict: Any) -> str | None:
    """The verdict's error when the backend failed (parse failures are not errors: ``parsed``)."""
    if verdict is None or verdict.decided_by != "policy" or not verdict.error:
        return None
    return verdict.error if verdict.error.startswith("backend error") else None


def repair_and_read_ids(path: Path, benchmark: str) -> set[str]:
    """The sample ids already in a predictions file being resumed.

    A last line cut short (the run was killed mid-write) is removed from the file; any other
    malformed line raises :class:`PredictionsError`, since the file is not ours to rewrite.
    """
    if not path.exists():
        return set()
    data = path.read_bytes()
    ids: set[str] = set()
    keep = pos = line = 0  # keep: bytes known good
    while pos < len(data):
        line += 1
        nl = data.find(b"\n", pos)
        if nl == -1:
            break  # every row is written with its newline: a line without one was cut short
        raw = data[pos:nl]
        if raw.strip():
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                if not data[nl + 1 :].strip():
                    break  # the last line is broken: a cut-short tail
                raise PredictionsError("malformed line in a predictions file being resumed", path=str(path),
                                       line=line) from None  # fmt: skip
            if (
                not isinstance(rec, dict)
                or rec.get("benchmark") != benchmark
                or not isinstance(rec.get("id"), str)
            ):
                raise PredictionsError(
                    f"not a guardrail predictions row of benchmark {benchmark!r}", path=str(path), line=line
                )
            ids.add(rec["id"])
        pos = keep = nl + 1
    if keep < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(keep)
    return ids


# ------------------------------------------------------------------------------- reading
def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise PredictionsError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    with fh:
        try:
            for i, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise PredictionsError(f"invalid JSON ({exc.msg})", path=str(path), line=i) from None
                if not isinstance(rec, dict):
                    raise PredictionsError("expected a JSON object", path=str(path), line=i)
                yield i, rec
        except UnicodeDecodeError as exc:
            raise PredictionsError(f"not UTF-8 text ({exc.reason})", path=str(path)) from None


def _need(rec: Mapping[str, Any], key: str, types: type | tuple[type, ...], path: Path, line: int) -> Any:
    if key not in rec:
        raise PredictionsError(f"missing field {key!r}", path=str(path), line=line)
    if not isinstance(rec[key], types) or isinstance(rec[key], bool):
        raise PredictionsError(f"field {key!r} has the wrong type ({type(rec[key]).__name__})", path=str(path),
                               line=line)  # fmt: skip
    return rec[key]


def _optional_number(rec: Mapping[str, Any], key: str, path: Path, line: int) -> Any:
    value = rec.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise PredictionsError(f"field {key!r} must be a number or null", path=str(path), line=line)
    return value


def _scores(rec: Mapping[str, Any], path: Path, line: int) -> dict[str, float | None]:
    values = rec.get("scores")
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise PredictionsError("field 'scores' must be an object or null", path=str(path), line=line)
    return {str(t): _optional_number(values, t, path, line) for t in values}


def _names(rec: Mapping[str, Any], key: str, path: Path, line: int) -> tuple[str, ...] | None:
    value = rec.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PredictionsError(f"field {key!r} must be a list of strings or null", path=str(path), line=line)
    return tuple(value)


def _gold(labels: Any, path: Path, line: int) -> dict[str, str]:
    if not isinstance(labels, dict) or not labels:
        raise PredictionsError("field 'labels' must be a non-empty object", path=str(path), line=line)
    try:
        return {str(t): normalise_gold(str(t), v) for t, v in labels.items()}
    except DatasetError as exc:
        raise PredictionsError(str(exc), path=str(path), line=line) from None


def _predicted(values: Any, path: Path, line: int) -> dict[str, str | None]:
    if not isinstance(values, dict):
        raise PredictionsError("field 'predicted' must be an object", path=str(path), line=line)
    out: dict[str, str | None] = {}
    for t, v in values.items():
        if v is None:
            out[str(t)] = None
            continue
        try:
            out[str(t)] = normalise_gold(str(t), v)
        except DatasetError as exc:
            raise PredictionsError(f"predicted: {exc}", path=str(path), line=line) from None
    return out


def _read_guardrail(path: Path, items: Iterable[tuple[int, dict[str, Any]]]) -> PredictionSet:
    rows: list[PredictionRow] = []
    bench: str | None = None
    for line, rec in items:
        name = _need(rec, "benchmark", str, path, line)
        if bench is None:
            bench = name
        elif name != bench:
            raise PredictionsError(f"rows of two benchmarks ({bench!r}, {name!r}) in one file", path=str(path),
                                   line=line)  # fmt: skip
        rows.append(PredictionRow(
            benchmark=name,
            id=str(_need(rec, "id", (str, int), path, line)),
            labels=_gold(rec.get("labels"), path, line),
            predicted=_predicted(_need(rec, "predicted", dict, path, line), path, line),
            raw_output=_need(rec, "raw_output", str, path, line),
            modality=rec.get("modality") if isinstance(rec.get("modality"), str) else "text",
            parsed=bool(rec.get("parsed", True)),
            output_tokens=_optional_number(rec, "output_tokens", path, line),
            latency_ms=_optional_number(rec, "latency_ms", path, line),
            batch_size=int(_optional_number(rec, "batch_size", path, line) or 1),
            score=_optional_number(rec, "score", path, line),
            error=rec.get("error") if isinstance(rec.get("error"), str) else None,
            line=line,
            scores=_scores(rec, path, line),
            categories=_names(rec, "categories", path, line),
            predicted_categories=_names(rec, "predicted_categories", path, line),
        ))  # fmt: skip
    return PredictionSet(bench or path.stem, str(path), "guardrail", tuple(rows), _run_meta(path.parent))


def _run_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _read_guardreasoner(path: Path, items: list[tuple[int, dict[str, Any]]]) -> PredictionSet:
    from guardrail.profiles import GuardReasonerProfile
    from guardrail.profiles.base import ModerationInput

    bench = path.parent.name if path.name == GR_FILE else path.stem
    task = GUARDREASONER_TASKS.get(bench) or GUARDREASONER_TASKS.get(lookup(bench) or "")
    profile = GuardReasonerProfile()
    rows = []
    for line, rec in items:
        prompt_text = _need(rec, "prompt", str, path, line)
        label = _need(rec, "label", str, path, line)
        predict = _need(rec, "predict", str, path, line)
        try:  # the prompt holds the instruction, then the user text
            prompt, response = parse_user_text(prompt_text, within=True)
        except FormatError:
            prompt, response = None, None
        try:
            if "Answers" in label or ":" in label:
                labels = answers_labels(label)
                if task:
                    labels = {t: v for t, v in labels.items() if t == task}
            else:
                t = task or infer_task(label, response is not None)
                labels = {t: normalise_gold(t, label)}
        except DatasetError as exc:
            raise PredictionsError(str(exc), path=str(path), line=line) from None
        if not labels:
            raise PredictionsError(f"no gold label in {label[:60]!r}", path=str(path), line=line)
        parsed = profile.parse(predict, ModerationInput(prompt=prompt or "", response=response))
        rows.append(PredictionRow(
            benchmark=bench, id=str(line - 1), labels=labels,
            predicted={t: parsed.labels.get(t) for t in TASKS}, raw_output=predict,
            parsed=parsed.ok, line=line,
        ))  # fmt: skip
    return PredictionSet(bench, str(path), "guardreasoner", tuple(rows))


def _read_omni(path: Path, items: list[tuple[int, dict[str, Any]]]) -> PredictionSet:
    from guardrail.profiles import GuardReasonerOmniProfile
    from guardrail.profiles.base import ModerationInput

    bench = path.parent.name if path.name == GR_FILE else path.stem
    modality = OMNI_BENCHMARKS.get(bench.removeprefix("omni-"), "unknown")
    profile = GuardReasonerOmniProfile()
    rows = []
    for line, rec in items:
        task = _need(rec, "task_type", str, path, line)
        if task not in ("request", "response"):
            raise PredictionsError(f"task_type must be 'request' or 'response', not {task!r}", path=str(path),
                                   line=line)  # fmt: skip
        text = rec.get("text_output") or ""
        if not isinstance(text, str):
            raise PredictionsError("field 'text_output' must be a string", path=str(path), line=line)
        try:
            gold = normalise_gold(task, _need(rec, "label", str, path, line))
            reference = normalise_gold(task, _need(rec, "predict", str, path, line))
        except DatasetError as exc:  # the reference's scorer asserts both are harmful/unharmful
            raise PredictionsError(str(exc), path=str(path), line=line) from None
        item = ModerationInput(prompt="", response="" if task == "response" else None)
        parsed = profile.parse(text, item)
        rows.append(PredictionRow(
            benchmark=bench, id=str(line - 1), labels={task: gold},
            predicted={t: parsed.labels.get(t) for t in TASKS}, raw_output=text, modality=modality,
            parsed=parsed.ok, line=line, reference_label=reference,
        ))  # fmt: skip
    return PredictionSet(bench, str(path), "omni", tuple(rows))


def read_predictions(path: str | os.PathLike[str]) -> PredictionSet:
    """Read one predictions file (either format, told apart by the fields of its first row)."""
    path = Path(path)
    lines = _lines(path)
    first = next(lines, None)
    if first is None:
        raise PredictionsError("empty predictions file", path=str(path))
    line, rec = first
    if {"task_type", "label", "predict"} <= rec.keys():
        return _read_omni(path, [first, *lines])
    if {"prompt", "label", "predict"} <= rec.keys():
        return _read_guardreasoner(path, [first, *lines])
    if "benchmark" in rec and "labels" in rec:
        return _read_guardrail(path, [first, *lines])
    raise PredictionsError(
        "unknown predictions format: expected guardrail rows (benchmark, labels, predicted, raw_output), "
        "GuardReasoner rows (prompt, label, predict) or GuardReasoner-Omni rows (task_type, label, predict)",
        path=str(path), line=line,
    )  # fmt: skip


def discover(path: str | os.PathLike[str]) -> list[Path]:
    """The predictions files of a file or folder: ``*.jsonl`` in it and ``*/generated_predictions.jsonl``."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise PredictionsError("no such file or folder", path=str(path))
    files = sorted(p for p in path.glob("*.jsonl") if p.is_file())
    files += sorted(p for p in path.glob(f"*/{GR_FILE}") if p.is_file())
    if not files:
        raise PredictionsError(
            "no predictions files (*.jsonl or */generated_predictions.jsonl)", path=str(path)
        )
    return files
