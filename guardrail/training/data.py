"""Training data: read corpora, validate every row, write our own JSONL.

Three row formats are read (``data_format="auto"`` tells them apart per row): ``sharegpt``
(GuardReasoner-VLTrain), ``guardreasoner`` (GuardReasonerTrain) and ``guardrail`` (what the
``sample`` and ``augment`` stages write). Rows become :class:`~guardrail.samples.Sample` objects;
texts in the guard's format are read by :mod:`guardrail.profiles`. Every row is checked, and a bad
one is reported with its file and row number, then skipped (``on_bad_row="skip"``) or listed in
a :class:`~guardrail.errors.DataError` (``on_bad_row="fail"``). The formats and the checks are
described in ``docs/training.md`` (*Data*).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from guardrail.errors import DataError, FormatError
from guardrail.profiles import (
    GuardReasonerProfile,
    GuardReasonerVLProfile,
    ModerationInput,
    Profile,
    get_profile,
    gold_label,
)
from guardrail.profiles import (
    parse_user_text as _parse_user_text,
)
from guardrail.profiles.guardreasoner_vl import IMAGE_PLACEHOLDER
from guardrail.samples import Sample, task_labels

__all__ = [
    "DATA_FORMATS",
    "Example",
    "image_bases",
    "LoadedData",
    "RowIssue",
    "load_examples",
    "parse_user_text",
    "read_rows",
    "write_examples",
]

log = logging.getLogger("guardrail.training")

DATA_FORMATS = ("auto", "sharegpt", "guardreasoner", "guardrail")
# Chat-template tokens of the supported model families; none may appear in training texts.
SPECIAL_TOKENS = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
)  # fmt: skip


@dataclass(frozen=True)
class RowIssue:
    """A bad row: the file, its 1-based row (line) number and what is wrong."""

    path: str
    row: int
    reason: str
    contradiction: bool = False

    def __str__(self) -> str:
        return f"{self.path}:{self.row}: {self.reason}"


@dataclass(frozen=True)
class LoadedData:
    """The result of :func:`load_examples`: the good rows and the bad ones."""

    examples: tuple[Sample, ...]
    issues: tuple[RowIssue, ...]
    rows: int

    @property
    def skipped(self) -> int:
        return len(self.issues)

    def summary(self) -> str:
        return f"{len(self.examples)} examples from {self.rows} rows ({self.skipped} bad rows skipped)"


class _BadRow(Exception):
    pass


class _Contradiction(_BadRow):
    """The row's explicit labels and its target disagree: always an error (see load_examples)."""


_VL = GuardReasonerVLProfile()


# ---------------------------------------------------------------------------------- reading
def read_rows(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """Yield ``(row_number, parsed_row)`` from a JSONL file (line numbers) or a JSON list.

    A line that is not valid JSON yields a :class:`_BadRow` instance as its row.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read data file {path}: {exc}") from exc
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON: {exc}") from exc
        for i, row in enumerate(rows, start=1):
            yield i, row
        return
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError as exc:
            yield i, _BadRow(f"not valid JSON: {exc.msg}")


def load_examples(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    profile: str | Profile = "guardreasoner-vl",
    data_format: str = "auto",
    image_root: str | os.PathLike[str] | None = None,
    on_bad_row: str = "skip",
    require_target: bool = False,
    max_samples: int | None = None,
    check_images: bool = True,
    allow_contradictions: bool = False,
) -> LoadedData:
    """Read and validate training rows from one or more files (see the module docstring).

    - ``image_root``: where relative image paths start (default: each data file's directory).
    - ``on_bad_row``: ``"skip"`` (log each bad row, count it, go on) or ``"fail"`` (raise
      :class:`~guardrail.errors.DataError` listing every bad row, after reading all of them).
    - ``require_target``: rows without a usable assistant target are bad (SFT).
    - ``max_samples``: stop after this many good rows.

    A row whose target's labels contradict its explicit labels (``request_label``...) is an
    error whatever ``on_bad_row`` says: :class:`~guardrail.errors.DataError` listing every such
    row (``allow_contradictions``: report them as bad rows only, for :mod:`.validate`).
    """
    if data_format not in DATA_FORMATS:
        raise DataError(f"unknown data format {data_format!r}; known: {', '.join(DATA_FORMATS)}")
    if on_bad_row not in ("skip", "fail"):
        raise DataError(f"on_bad_row must be 'skip' or 'fail', not {on_bad_row!r}")
    prof = get_profile(profile) if not isinstance(profile, Profile) else profile
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    examples: list[Sample] = []
    issues: list[RowIssue] = []
    seen_ids: set[str] = set()
    rows = 0
    for path in paths:
        path = Path(path)
        base = Path(image_root) if image_root is not None else image_bases(path)
        for number, raw in read_rows(path):
            rows += 1
            try:
                if isinstance(raw, _BadRow):
                    raise raw
                ex = parse_row(
                    raw, data_format=data_format, profile=prof, image_base=base, check_images=check_images
                )
                if require_target:
                    _check_target(ex, prof)
                if not ex.id:
                    ex = replace(ex, id=f"{path.stem}-{number}")
                if ex.id in seen_ids:
                    raise _BadRow(f"duplicate id {ex.id!r}")
                seen_ids.add(ex.id)
                examples.append(replace(ex, source=f"{path}:{number}"))
            except _BadRow as exc:
                issue = RowIssue(str(path), number, str(exc), isinstance(exc, _Contradiction))
                issues.append(issue)
                if on_bad_row == "skip" and len(issues) <= 20:
                    log.warning("skipping bad row %s", issue)
            if max_samples is not None and len(examples) >= max_samples:
                break
        if max_samples is not None and len(examples) >= max_samples:
            break
    contradictions = [i for i in issues if i.contradiction]
    if contradictions and not allow_contradictions:
        shown = "\n".join(f"  {i}" for i in contradictions[:20])
        more = f"\n  ... and {len(contradictions) - 20} more" if len(contradictions) > 20 else ""
        raise DataError(
            f"{len(contradictions)} row(s) whose target contradicts their labels (SFT would learn one "
            f"answer and RL reward the other); fix or remove them:\n{shown}{more}",
            issues=tuple(issues),
        )
    if issues and on_bad_row == "fail":
        shown = "\n".join(f"  {i}" for i in issues[:20])
        more = f"\n  ... and {len(issues) - 20} more" if len(issues) > 20 else ""
        raise DataError(
            f"{len(issues)} bad row(s) in the training data:\n{shown}{more}", issues=tuple(issues)
        )
    if len(issues) > 20:
        log.warning("... %d more bad rows skipped", len(issues) - 20)
    if issues:
        log.warning("skipped %d bad row(s) of %d", len(issues), rows)
    return LoadedData(tuple(examples), tuple(issues), rows)


def image_bases(data_file: str | os.PathLike[str]) -> tuple[Path, ...]:
    """Where relative image paths of ``data_file`` are looked up: its directory, then - when the
    file is reached through a symbolic link - the directory of the file the link points to."""
    path = Path(data_file)
    bases = [path.parent]
    real = path.resolve().parent
    if real != path.parent.resolve():
        bases.append(real)
    return tuple(bases)


def parse_row(
    raw: Any,
    *,
    data_format: str = "auto",
    profile: Profile | None = None,
    image_base: str | os.PathLike[str] | tuple[Path, ...] = ".",
    check_images: bool = True,
) -> Sample:
    """Turn one parsed JSON row into a :class:`~guardrail.samples.Sample`; raise ``_BadRow`` with the reason."""
    prof = profile or GuardReasonerVLProfile()
    if not isinstance(raw, Mapping):
        raise _BadRow(f"a row must be a JSON object, not {type(raw).__name__}")
    fmt = data_format if data_format != "auto" else _detect(raw)
    if fmt == "sharegpt":
        ex = _from_sharegpt(raw, prof)
    elif fmt == "guardreasoner":
        ex = _from_guardreasoner(raw, prof)
    else:
        ex = _from_guardrail(raw, prof)
    images = tuple(_resolve_image(p, image_base, check_images) for p in ex.images)
    from guardrail.training.categories import row_categories, with_policy  # uses _BadRow: no cycle
    from guardrail.training.media import row_media

    ex = replace(ex, images=images, categories=row_categories(raw), **row_media(raw, image_base, prof))
    _check_texts(ex)
    if prof.trained_policy is not None:
        ex = with_policy(ex, prof)
    return ex


def _detect(raw: Mapping[str, Any]) -> str:
    if "messages" in raw or "conversations" in raw:
        return "sharegpt"
    if "instruction" in raw and "output" in raw:
        return "guardreasoner"
    if any(k in raw for k in ("labels", "request_label", "prompt", "images", "videos", "audios")):
        return "guardrail"
    raise _BadRow(
        "unknown row format: expected 'messages' (ShareGPT / GuardReasoner-VL), "
        "'instruction'/'input'/'output' (GuardReasoner) or 'prompt'/'images' with 'labels' (guardrail)"
    )


def _from_sharegpt(raw: Mapping[str, Any], prof: Profile) -> Sample:
    messages = raw.get("messages", raw.get("conversations"))
    if not isinstance(messages, list) or not messages:
        raise _BadRow("'messages' must be a non-empty list")
    by_role: dict[str, str] = {}
    for m in messages:
        if not isinstance(m, Mapping):
            raise _BadRow("each message must be an object")
        role = m.get("role", m.get("from"))
        role = {"human": "user", "gpt": "assistant"}.get(role, role)
        content = m.get("content", m.get("value"))
        if role not in ("system", "user", "assistant"):
            raise _BadRow(f"unknown message role {role!r}")
        if role in by_role:
            raise _BadRow(f"more than one {role} message (multi-turn rows are not supported)")
        by_role[role] = _content_text(content)
    if "user" not in by_role:
        raise _BadRow("no user message")
    images = _image_list(raw)
    user = by_role["user"]
    n_placeholders = user.count(IMAGE_PLACEHOLDER)
    if n_placeholders != len(images):
        raise _BadRow(
            f"the user text has {n_placeholders} <image> placeholder(s) but the row has {len(images)} image(s)"
        )
    prompt, response = _user_texts(user)
    target = by_role.get("assistant")
    labels = _labels_from_target(target, prof, prompt, response, bool(images)) if target is not None else {}
    explicit = _explicit_labels(raw)
    _check_agreement(labels, explicit)
    labels = {**labels, **explicit}
    return _sample(raw, prompt, response, images, labels.get("request"), labels.get("response"),
                   refusal=labels.get("refusal"), target=target)  # fmt: skip


def _from_guardreasoner(raw: Mapping[str, Any], prof: Profile) -> Sample:
    source = raw.get("input")
    output = raw.get("output")
    if not isinstance(source, str) or not isinstance(output, str):
        raise _BadRow("'input' and 'output' must be strings")
    if IMAGE_PLACEHOLDER in source:
        raise _BadRow("GuardReasoner rows are text only; this input has <image>")
    prompt, response = _user_texts(source)
    text_profile = GuardReasonerProfile()
    item = ModerationInput(prompt=prompt, response=response)
    parsed = text_profile.parse(output, item)
    if not parsed.ok:
        raise _BadRow(f"cannot read the labels from 'output' ({parsed.error})")
    refusal = parsed.labels.get("refusal") if response is not None else None
    sample = _sample(raw, prompt, response, [], parsed.labels.get("request"), parsed.labels.get("response"),
                     refusal=refusal, target=output)  # fmt: skip
    if isinstance(prof, GuardReasonerProfile):
        return sample
    reasoning = (parsed.reasoning or "").strip()
    if not reasoning:
        raise _BadRow("'output' has no reasoning before its answers")
    return replace(sample, target=_VL.answer(reasoning, sample.labels))


def _from_guardrail(raw: Mapping[str, Any], prof: Profile) -> Sample:
    prompt, response = raw.get("prompt"), raw.get("response")
    for name, value in (("prompt", prompt), ("response", response)):
        if value is not None and not isinstance(value, str):
            raise _BadRow(f"'{name}' must be a string or null, not {type(value).__name__}")
    target = raw.get("target")
    if target is not None and not isinstance(target, str):
        raise _BadRow("'target' must be a string or null")
    images = _image_list(raw)
    clips = bool(raw.get("videos") or raw.get("audios"))
    if prompt is None and not images and not clips:
        raise _BadRow("no request: give 'prompt' and/or 'images' (or 'videos', 'audios')")
    meta = raw.get("meta") if isinstance(raw.get("meta"), Mapping) else {}
    explicit = _explicit_labels(raw)
    if target is not None:  # an unreadable target is reported where a target is needed (SFT)
        said = _labels_from_target(target, prof, prompt, response, bool(images) or clips, partial=True)
        _check_agreement(said, explicit)
    return _sample(raw, prompt, response, images, explicit.get("request"), explicit.get("response"),
                   refusal=explicit.get("refusal"), target=target, meta=dict(meta))  # fmt: skip


def _sample(
    raw: Mapping[str, Any],
    prompt: str | None,
    response: str | None,
    images: list[str],
    request: Any,
    response_label: Any,
    *,
    refusal: Any = None,
    target: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Sample:
    """The sample of one row, its labels checked (see :func:`_required_label`, :func:`_response_label`)."""
    labels = task_labels(
        request=_required_label(request, "request"),
        response=_response_label(response_label, response),
        refusal=None if refusal is None else _gold(refusal, "refusal"),
    )
    return Sample(id=str(raw.get("id", "") or ""), labels=labels, prompt=prompt, response=response,
                  images=tuple(images), meta=meta or {}, target=target)  # fmt: skip


def _user_texts(text: str) -> tuple[str | None, str | None]:
    """(prompt, response) of a ``Human user:`` text, read by the profiles' parser."""
    try:
        prompt, response = _parse_user_text(text)
    except FormatError as exc:
        raise _BadRow(str(exc)) from None
    if prompt is None and IMAGE_PLACEHOLDER not in text:
        # A text-only row always has a request: the literal "None" the reference writes for a
        # missing prompt stays that text (it renders the same and round-trips through our rows).
        prompt = "None"
    return prompt, response


# ------------------------------------------------------------------------------- checking
def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # structured parts: images count as placeholders
        out = []
        for part in content:
            if not isinstance(part, Mapping):
                raise _BadRow("message content parts must be objects")
            if part.get("type") == "text":
                out.append(str(part.get("text", "")))
            elif part.get("type") == "image":
                out.append(IMAGE_PLACEHOLDER)
            else:
                raise _BadRow(f"unsupported content part type {part.get('type')!r}")
        return "".join(out)
    raise _BadRow("message content must be a string or a list of parts")


def _image_list(raw: Mapping[str, Any]) -> list[str]:
    images = raw.get("images", raw.get("image"))
    if images is None:
        return []
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(p, str) and p for p in images):
        raise _BadRow("'images' must be a list of file paths")
    return list(images)


def _resolve_image(path: str, base: str | os.PathLike[str] | tuple[Path, ...], check: bool) -> str:
    bases = base if isinstance(base, tuple) else (Path(base),)
    p = Path(path)
    candidates = [p] if p.is_absolute() else [Path(b) / p for b in bases]
    # absolute: rows written elsewhere (sample, augment) still find it
    candidates = [Path(os.path.abspath(c)) for c in candidates]
    p = next((c for c in candidates if c.is_file()), candidates[0])
    if not p.is_file():
        also = (
            f" (also looked in {', '.join(str(c.parent) for c in candidates[1:])})"
            if len(candidates) > 1
            else ""
        )
        raise _BadRow(f"image file not found: {p}{also}")
    if check:
        try:
            from PIL import Image

            with Image.open(p) as img:
                img.size  # noqa: B018 - reads the header only
        except Exception as exc:  # noqa: BLE001 - any decoder failure makes the row unusable
            raise _BadRow(f"cannot read image {p}: {exc}") from None
    return str(p)


def _labels_from_target(
    target: str,
    prof: Profile,
    prompt: str | None,
    response: str | None,
    has_images: bool,
    *,
    partial: bool = False,
) -> dict[str, str | None]:
    """The labels the target states; with ``partial``, those it states even when it lacks some
    (no error)."""
    item = ModerationInput(prompt=prompt, response=response, images=(None,) if has_images else ())
    vl = prof if isinstance(prof, GuardReasonerVLProfile) else GuardReasonerVLProfile()
    parsed = vl.parse(target, item)
    if not parsed.ok and not isinstance(prof, GuardReasonerVLProfile):
        parsed = prof.parse(target, item)
    if not parsed.ok and not partial:
        raise _BadRow(f"cannot read the labels from the assistant text ({parsed.error})")
    return dict(parsed.labels)


def _explicit_labels(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The row's own labels: ``labels: {task: label}`` (the format shared with the evaluation)
    and the older ``request_label`` / ``response_label`` / ``refusal_label`` fields; the two
    spellings of one task must agree."""
    given = raw.get("labels")
    if given is not None and not isinstance(given, Mapping):
        raise _BadRow("'labels' must be an object {task: label}")
    out: dict[str, Any] = {}
    for task, value in (given or {}).items():
        if task not in ("request", "response", "refusal"):
            raise _BadRow(f"unknown task {task!r} in 'labels' (tasks: request, response, refusal)")
        if value is not None:
            out[task] = value
    for task in ("request", "response", "refusal"):
        value = raw.get(f"{task}_label")
        if value is None:
            continue
        if task in out and _norm(out[task]) != _norm(value):
            raise _Contradiction(
                f"contradiction: labels.{task} is {out[task]!r} but {task}_label is {value!r}"
            )
        out[task] = value
    return out


def _norm(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _check_agreement(said: Mapping[str, Any], explicit: Mapping[str, Any]) -> None:
    """Raise :class:`_Contradiction` when the target's label of a task (``said``) and the row's
    own label of it (``explicit``) differ; a task either one leaves out is not compared."""
    for task, value in explicit.items():
        target_label = said.get(task)
        if target_label is None:
            continue
        try:
            own = gold_label(task, value, aliases=True)
        except FormatError:
            continue  # reported as an unknown label
        if own != target_label:
            key = {"request": "Request", "response": "Response"}.get(task, task)
            raise _Contradiction(
                f"contradiction: the target says '{key}: {target_label}' but {task}_label is {value!r}"
            )


def _gold(value: Any, task: str) -> str:
    try:
        return gold_label(task, value, aliases=True)
    except FormatError as exc:
        raise _BadRow(str(exc)) from None


def _required_label(value: Any, task: str) -> str:
    if value is None:
        raise _BadRow(f"no {task} label")
    return _gold(value, task)


def _response_label(value: Any, response: str | None) -> str | None:
    if response is None:
        if value is None or (
            isinstance(value, str) and value.strip().lower() in ("none", "unharmful", "harmless")
        ):
            return None
        raise _BadRow(f"response label {value!r} given for a row without a response")
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        raise _BadRow("no response label for a row with a response")
    return _gold(value, "response")


def _check_texts(ex: Sample) -> None:
    if ex.prompt is not None and not ex.prompt.strip() and not ex.images:
        raise _BadRow("empty request text")
    if ex.response is not None and not ex.response.strip():
        raise _BadRow("empty response text")
    for name, text in (("request", ex.prompt), ("response", ex.response)):
        if text is None:
            continue
        for tok in SPECIAL_TOKENS:
            if tok in text:
                raise _BadRow(f"the {name} text contains the chat-template token {tok!r}")


def _check_target(ex: Sample, prof: Profile) -> None:
    if ex.target is None or not ex.target.strip():
        raise _BadRow("no assistant target text (SFT needs one)")
    for tok in SPECIAL_TOKENS:
        if tok in ex.target:
            raise _BadRow(f"the target contains the chat-template token {tok!r}")
    if isinstance(prof, GuardReasonerVLProfile):
        from guardrail.training.rewards import is_well_formed

        if not is_well_formed(ex.target):
            raise _BadRow("the target is not '<think>...</think>' followed by '<result>...</result>'")
    parsed = prof.parse(ex.target, ex.moderation_input())
    if not parsed.ok:
        raise _BadRow(f"the target has no labels the {prof.name} profile can read ({parsed.error})")


# -------------------------------------------------------------------------------- writing
def write_examples(path: str | os.PathLike[str], examples: Iterable[Sample]) -> int:
    """Write examples as ``guardrail`` JSONL (images relative to the file's directory); return the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_row(path.parent), ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


# Deprecated names, kept importable from here.
from guardrail.training._deprecated import Example, parse_user_text, vl_target  # noqa: E402, F401
