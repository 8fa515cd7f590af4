"""The batch job's core, free of I/O: input rows -> guard items -> verdict columns.

Both engines (local and Ray) call :func:`moderate_table` on tables of input rows, so they give
the same verdict columns for the same rows. A row that cannot be moderated (a missing or
unusable field, an image path outside the image root, a JSON line that does not parse) gets an
error verdict in its own row, never drops out of the output and never fails its batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail.errors import ConfigurationError, InputError
from guardrail.verdict import Verdict

__all__ = [
    "ROW_ERROR",
    "Columns",
    "RowSpec",
    "error_record",
    "moderate_rows",
    "moderate_table",
    "row_item",
    "verdict_fields",
    "verdict_record",
]

# Internal column of input tables: why the row could not be read (a JSON line that does not
# parse). Never written to the output: it becomes the row's error verdict.
ROW_ERROR = "__guardrail_row_error__"

# Roles whose turns are the AI's response in a ``messages`` column (user turns are the request).
_AI_ROLES = frozenset({"assistant", "ai"})
_USER_ROLES = frozenset({"user", "human"})
# Verdict's fields copied as they are into columns of the same name.
_TASK_FIELDS = ("request_harmful", "response_harmful", "response_refusal")
_SCORE_FIELDS = ("score", "request_score", "response_score")


def has_categories() -> bool:
    """Whether verdicts carry ``categories`` (a column is written only then)."""
    return "categories" in getattr(Verdict, "model_fields", {})


@dataclass(frozen=True)
class Columns:
    """Which input columns hold what. ``None`` means the default name (``prompt``,
    ``response``, ``images``, ``messages``), used when the input has such a column; a name
    given explicitly must exist. :meth:`resolve` gives the names actually used."""

    prompt: str | None = None
    response: str | None = None
    images: str | None = None
    messages: str | None = None

    def resolve(self, available: Sequence[str]) -> Columns:
        found: dict[str, str | None] = {}
        for role in ("prompt", "response", "images", "messages"):
            given = getattr(self, role)
            name = given or role
            if name in available:
                found[role] = name
            elif given:
                raise ConfigurationError(
                    f"the {role} column {given!r} is not in the input; its columns: {', '.join(available)}"
                )
            else:
                found[role] = None
        if not any(found.values()):
            raise ConfigurationError(
                "the input has none of the columns prompt, response, images, messages; name the ones "
                f"to check (--prompt-column...); its columns: {', '.join(available)}"
            )
        return Columns(**found)

    def describe(self) -> dict[str, str | None]:
        return {"prompt": self.prompt, "response": self.response, "images": self.images,
                "messages": self.messages}  # fmt: skip


@dataclass(frozen=True)
class RowSpec:
    """How rows become guard items and verdicts become columns (picklable: Ray ships it).

    - ``columns``: resolved :class:`Columns`.
    - ``image_root``: image paths are read only inside this folder (``None``: no paths at all).
    - ``json_columns``: input columns stored as JSON text (JSONL fields whose values change
      type between rows); decoded before use.
    - ``prefix``: put before every verdict column's name.
    - ``reasoning``: also write the model's reasoning text.
    """

    columns: Columns
    image_root: str | None = None
    json_columns: tuple[str, ...] = ()
    prefix: str = ""
    reasoning: bool = False

    @property
    def row_column(self) -> str:
        return self.prefix + "row_index"


# ------------------------------------------------------------------------------ row -> item
def _strip_none(value: Any) -> Any:
    """Drop keys whose value is None, at every depth (columnar formats give every struct all
    the keys any row has; a chat content part must keep only its own)."""
    if isinstance(value, Mapping):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_strip_none(v) for v in value]
    return value


def _image_path(value: str, root: str | None) -> str:
    if root is None:
        raise InputError("image paths are off for this job (no image root)")
    base = Path(root).resolve()
    target = (base / value).resolve()  # an absolute value replaces base; symbolic links are followed
    if not target.is_relative_to(base):
        raise InputError(f"image path {value!r} is outside the image root {str(base)!r}")
    return str(target)


def _image_source(value: Any, root: str | None) -> Any:
    """One image value of a row as a source the guard takes (bytes, data/http URL, PIL image,
    or a path checked to lie inside ``root``)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        if value.startswith(("data:", "http://", "https://")):
            return value  # http(s) is fetched only when the guard's InputLimits allow it
        return _image_path(value, root)
    if isinstance(value, Mapping):
        # Hugging Face Image features ({"bytes", "path"}) and OpenAI-style {"url": ...}
        if value.get("bytes") is not None:
            return _image_source(value["bytes"], root)
        for key in ("path", "url"):
            if isinstance(value.get(key), str) and value[key]:
                return _image_source(value[key], root)
        raise InputError("image value without 'bytes', 'path' or 'url'")
    if hasattr(value, "size") and hasattr(value, "mode"):  # a PIL image (datasets, Python API)
        return value
    raise InputError(f"unsupported image value of type {type(value).__name__}")


def _images(value: Any, root: str | None) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [_image_source(v, root) for v in value if v is not None]
    return [_image_source(value, root)]


def _text(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InputError(f"the {name} column holds a {type(value).__name__}, not text")


def _from_messages(messages: Any) -> tuple[str | None, str | None, list[Any]]:
    """Request text, response text and request images of a chat: the request is every user
    turn (read as the integrations read chats), the response the AI turns after the last one."""
    from guardrail.integrations.extract import content_text, request_from_messages

    messages = _strip_none(messages)
    request = request_from_messages(messages)
    if not isinstance(messages, list):  # request_from_messages accepted it: a sequence
        messages = list(messages)

    def role(message: Any) -> str:
        if isinstance(message, Mapping):
            return str(message.get("role") or message.get("type") or "").lower()
        return "user" if isinstance(message, str) else ""

    last_user = max(i for i, m in enumerate(messages) if role(m) in _USER_ROLES)
    answers = [
        content_text(m.get("content"), where=f"message {i}")
        for i, m in enumerate(messages)
        if i > last_user and isinstance(m, Mapping) and role(m) in _AI_ROLES
    ]
    response = "\n\n".join(a for a in answers if a) if answers else None
    return request.prompt, response, list(request.images)


def _join(*texts: str | None) -> str | None:
    present = [t for t in texts if t is not None]
    return "\n\n".join(t for t in present if t) if present else None


def row_item(row: Mapping[str, Any], spec: RowSpec) -> dict[str, Any]:
    """The ``moderate_batch`` item for one input row; raises InputError when the row has
    nothing usable. Texts of the prompt column and a chat's user turns are joined (both are
    checked), and so are the response column and the chat's answer."""
    cols = spec.columns
    prompt = _text(row.get(cols.prompt), "prompt") if cols.prompt else None
    response = _text(row.get(cols.response), "response") if cols.response else None
    images = _images(row.get(cols.images), spec.image_root) if cols.images else []
    if cols.messages and row.get(cols.messages) is not None:
        m_prompt, m_response, m_images = _from_messages(row[cols.messages])
        prompt, response = _join(prompt, m_prompt), _join(response, m_response)
        images += [_image_source(img, spec.image_root) for img in m_images]
    if prompt is None and response is None and not images:
        raise InputError("the row has nothing to moderate (no prompt, response, images or messages)")
    return {"prompt": prompt, "response": response, "images": images or None}


# ------------------------------------------------------------------------ verdict -> columns
def verdict_fields(spec: RowSpec) -> list[tuple[str, str]]:
    """(column name, type) of the verdict columns, in order; types are pyarrow type names."""
    fields = [("row_index", "int64"), ("allowed", "bool"), ("harmful", "bool")]
    fields += [(f, "bool") for f in _TASK_FIELDS]
    if has_categories():
        fields.append(("categories", "list<string>"))
    fields += [(f, "double") for f in _SCORE_FIELDS]
    fields += [("path", "string"), ("decided_by", "string"), ("error", "string")]
    if spec.reasoning:
        fields.append(("reasoning", "string"))
    fields += [("latency_ms", "double"), ("model", "string")]
    return [(spec.prefix + name, kind) for name, kind in fields]


def _categories(verdict: Any) -> list[str] | None:
    value = getattr(verdict, "categories", None)
    if value is None:
        return None
    if isinstance(value, Mapping):  # {category: flag or score}: the ones that hold
        return sorted(str(k) for k, v in value.items() if v)
    if isinstance(value, str):
        return [value]
    return [str(getattr(v, "value", v)) for v in value]


def verdict_record(verdict: Verdict, row_index: int, spec: RowSpec) -> dict[str, Any]:
    p = spec.prefix
    record: dict[str, Any] = {p + "row_index": row_index, p + "allowed": verdict.allowed,
                              p + "harmful": verdict.harmful}  # fmt: skip
    for name in _TASK_FIELDS + _SCORE_FIELDS:
        record[p + name] = getattr(verdict, name, None)
    if has_categories():
        record[p + "categories"] = _categories(verdict)
    record.update(
        {p + "path": verdict.path, p + "decided_by": verdict.decided_by, p + "error": verdict.error}
    )
    if spec.reasoning:
        record[p + "reasoning"] = verdict.reasoning
    record.update({p + "latency_ms": verdict.latency_ms, p + "model": verdict.model})
    return record


def error_record(error: str, row_index: int, spec: RowSpec) -> dict[str, Any]:
    """The verdict columns of a row that was not moderated: blocked (fail closed, so a filter on
    ``allowed`` never keeps it), ``harmful`` unknown, ``decided_by="input"``, ``error`` why."""
    record = {name: None for name, _ in verdict_fields(spec)}
    p = spec.prefix
    record.update({p + "row_index": row_index, p + "allowed": False, p + "decided_by": "input",
                   p + "error": error})  # fmt: skip
    return record


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _decode_json_columns(row: dict[str, Any], spec: RowSpec) -> dict[str, Any]:
    if not spec.json_columns:
        return row
    row = dict(row)
    for name in spec.json_columns:
        if row.get(name) is not None:
            row[name] = json.loads(row[name])
    return row


def moderate_rows(guard: Any, rows: Sequence[Mapping[str, Any]], spec: RowSpec) -> list[dict[str, Any]]:
    """The verdict columns of each row (in order), with one batched guard call for the rows that
    can be moderated. Every row must hold its index in ``spec.row_column``."""
    from guardrail.inputs import InputLimits, normalize_input

    limits = getattr(guard, "limits", None) or InputLimits()
    records: list[dict[str, Any] | None] = [None] * len(rows)
    todo: list[tuple[int, dict[str, Any]]] = []
    for i, row in enumerate(rows):
        index = int(row[spec.row_column])
        if row.get(ROW_ERROR):
            records[i] = error_record(row[ROW_ERROR], index, spec)
            continue
        try:
            item = row_item(_decode_json_columns(dict(row), spec), spec)
            # validated (and images decoded) here, row by row, so one bad row stays in its row
            checked = normalize_input(item["prompt"], item["response"], item["images"], limits=limits)
        except (InputError, ValueError) as exc:  # ValueError: a JSON-text column that does not parse
            records[i] = error_record(_describe(exc), index, spec)
            continue
        todo.append((i, {"prompt": checked.prompt, "response": checked.response,
                         "images": list(checked.images) or None}))  # fmt: skip
    if todo:
        for (i, _), verdict in zip(todo, _moderate(guard, [item for _, item in todo]), strict=True):
            index = int(rows[i][spec.row_column])
            records[i] = (
                error_record(verdict, index, spec) if isinstance(verdict, str)
                else verdict_record(verdict, index, spec)
            )  # fmt: skip
    return [r for r in records if r is not None]


def _moderate(guard: Any, items: list[dict[str, Any]]) -> list[Verdict | str]:
    """Verdicts of a batch; should the guard still refuse an item, the items are retried one by
    one so that only the culprit gets an error (validation comes before generation: cheap)."""
    try:
        return list(guard.moderate_batch(items))
    except InputError:
        pass
    out: list[Verdict | str] = []
    for item in items:
        try:
            out.append(guard.moderate_batch([item])[0])
        except InputError as exc:
            out.append(_describe(exc))
    return out


# ------------------------------------------------------------------------------------ tables
def arrow_type(name: str) -> Any:
    import pyarrow as pa

    return pa.list_(pa.string()) if name == "list<string>" else pa.type_for_alias(name)


def output_schema(input_schema: Any, spec: RowSpec) -> Any:
    """The output's schema: the input's columns, then the verdict columns."""
    import pyarrow as pa

    inputs = [f for f in input_schema if f.name != ROW_ERROR and f.name != spec.row_column]
    verdicts = [pa.field(name, arrow_type(kind)) for name, kind in verdict_fields(spec)]
    clash = sorted({f.name for f in inputs} & {f.name for f in verdicts})
    if clash:
        raise ConfigurationError(
            f"the input already has column(s) {', '.join(clash)}, which the verdict columns would "
            "replace; give a --prefix for the verdict columns (e.g. --prefix guard_)"
        )
    return pa.schema(inputs + verdicts)


def moderate_table(guard: Any, table: Any, spec: RowSpec, batch_size: int | None = None) -> Any:
    """A table of input rows (with ``spec.row_column``, and ``ROW_ERROR`` when the source has
    unreadable rows) -> the output table: the input columns, then the verdict columns."""
    import pyarrow as pa

    rows = table.to_pylist()
    size = batch_size or max(1, len(rows))
    records: list[dict[str, Any]] = []
    for start in range(0, len(rows), size):
        records += moderate_rows(guard, rows[start : start + size], spec)
    schema = output_schema(table.schema, spec)
    verdicts = pa.Table.from_pylist(
        records, schema=pa.schema([schema.field(n) for n, _ in verdict_fields(spec)])
    )
    inputs = table.drop_columns([c for c in (ROW_ERROR, spec.row_column) if c in table.column_names])
    columns = list(inputs.columns) + list(verdicts.columns)
    return pa.Table.from_arrays(columns, schema=schema)
