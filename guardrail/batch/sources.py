"""Inputs of the batch job: JSONL, Parquet, or a Hugging Face ``datasets`` dataset saved on disk.

A :class:`Source` gives rows by their position in the input (``read(start, stop)`` -> a
pyarrow table), so that each row has a stable index: the output records it, a rerun skips the
rows already done, and both engines cut the input the same way. Sources are picklable and open
their files lazily: Ray's read tasks call ``read`` on the workers (the input must then be on
storage every node sees, at the same path).

JSONL rows are typed by looking at the whole file once (a first pass that also hashes it and
records where each stretch of rows begins). A field whose values change type between rows (a
chat message's ``content`` that is a string in one row and a list of parts in another, say) is
carried as JSON text; the guard reads it decoded. Blank lines are not rows; a line that is not
a JSON object is a row whose verdict is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail.batch.rows import ROW_ERROR
from guardrail.errors import ConfigurationError, DataError

__all__ = ["Source", "open_source"]

_STRIDE = 256  # JSONL: the byte offset of every 256th row is kept
_HASH_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Source:
    """Rows of one input. ``schema`` is the pyarrow schema of what ``read`` returns, without
    the internal ``ROW_ERROR`` column (present only when ``has_row_errors``)."""

    path: str
    kind: str
    num_rows: int
    schema: Any
    files: list[dict[str, Any]]  # {"name", "size", "sha256"} (relative to path)
    json_columns: tuple[str, ...] = ()
    has_row_errors: bool = False
    split: str | None = None
    _index: list[Any] = field(default_factory=list)  # kind-specific
    _cache: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = None  # open files/datasets are reopened where the source is used
        return state

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    @property
    def image_root(self) -> str:
        """Default folder for relative image paths: the input's folder (or the input itself
        when it is a folder)."""
        p = Path(self.path)
        return str(p if p.is_dir() else p.parent)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": self.kind, "split": self.split, "rows": self.num_rows, "files": self.files}

    def read(self, start: int, stop: int) -> Any:
        """Rows ``start`` to ``stop`` (exclusive) as a pyarrow table."""
        stop = min(stop, self.num_rows)
        if start >= stop:
            return self.empty()
        return getattr(self, f"_read_{self.kind}")(start, stop)

    def empty(self) -> Any:

        return self._with_error_column(self.schema.empty_table(), [])

    def _with_error_column(self, table: Any, errors: list[str | None]) -> Any:
        import pyarrow as pa

        if not self.has_row_errors:
            return table
        values = errors or [None] * table.num_rows
        return table.append_column(pa.field(ROW_ERROR, pa.string()), pa.array(values, pa.string()))

    # ---------------------------------------------------------------------------- JSONL
    def _read_jsonl(self, start: int, stop: int) -> Any:
        import pyarrow as pa

        anchor = start // _STRIDE
        rows: list[dict[str, Any]] = []
        errors: list[str | None] = []
        with open(self.path, "rb") as fh:
            fh.seek(self._index[anchor])
            position = anchor * _STRIDE
            for line in fh:
                if not line.strip():
                    continue
                if position >= start:
                    row, error = _parse_line(line, position)
                    rows.append(_encode(row, self.json_columns) if row is not None else {})
                    errors.append(error)
                position += 1
                if position >= stop:
                    break
        table = pa.Table.from_pylist(rows, schema=self.schema)
        return self._with_error_column(table, errors if self.has_row_errors else [])

    # --------------------------------------------------------------------------- Parquet
    def _read_parquet(self, start: int, stop: int) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        starts = self._index  # first row of each (file, row group), in order; last = num_rows
        groups = [(f, g) for f, info in enumerate(self.files) for g in range(info["row_groups"])]
        first = bisect_right(starts, start) - 1
        pieces = []
        i = first
        while i < len(groups) and starts[i] < stop:
            f, g = groups[i]
            table = pq.ParquetFile(Path(self.path, self.files[f]["name"])).read_row_group(g)
            lo, hi = max(start - starts[i], 0), min(stop, starts[i + 1]) - starts[i]
            pieces.append(table.slice(lo, hi - lo).select(self.schema.names).cast(self.schema))
            i += 1
        return pa.concat_tables(pieces)

    # ----------------------------------------------------------------------- HF datasets
    def _read_hf(self, start: int, stop: int) -> Any:
        if self._cache is None:
            self._cache = _load_hf(self.path, self.split)[0].with_format("arrow")
        return self._cache[start:stop].cast(self.schema)


def _parse_line(line: bytes, position: int) -> tuple[dict[str, Any] | None, str | None]:
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"DataError: input row {position} is not valid JSON: {exc}"
    if not isinstance(row, dict):
        return None, f"DataError: input row {position} is a JSON {type(row).__name__}, not an object"
    return row, None


def _encode(row: dict[str, Any], json_columns: tuple[str, ...]) -> dict[str, Any]:
    if not json_columns:
        return row
    return {k: (json.dumps(v, ensure_ascii=False) if k in json_columns and v is not None else v)
            for k, v in row.items()}  # fmt: skip


# ------------------------------------------------------------------------------- opening
def open_source(path: str | os.PathLike[str], *, kind: str = "auto", split: str | None = None) -> Source:
    """Open an input: ``kind`` is ``jsonl``, ``parquet``, ``hf`` (a folder written by
    ``datasets.Dataset.save_to_disk``) or ``auto`` (from the suffix, or the folder's content)."""
    p = Path(path)
    if not p.exists():
        raise ConfigurationError(f"input {str(p)!r} does not exist")
    kind = _detect(p) if kind == "auto" else kind
    if kind == "jsonl":
        return _open_jsonl(p)
    if kind == "parquet":
        return _open_parquet(p)
    if kind == "hf":
        return _open_hf(p, split)
    raise ConfigurationError(f"unknown input format {kind!r}: jsonl, parquet or hf")


def _detect(p: Path) -> str:
    if p.is_dir():
        if (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists() \
                or (p / "state.json").exists():  # fmt: skip
            return "hf"
        if any(p.rglob("*.parquet")):
            return "parquet"
        raise ConfigurationError(f"{str(p)!r}: a folder with neither a saved dataset nor Parquet files")
    if p.suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if p.suffix in (".parquet", ".pq"):
        return "parquet"
    raise ConfigurationError(f"cannot tell the format of {str(p)!r}; give --input-format")


def _open_jsonl(p: Path) -> Source:
    import pyarrow as pa

    digest = hashlib.sha256()
    index: list[int] = []
    types: dict[str, list[Any]] = {}
    order: list[str] = []
    json_columns: set[str] = set()
    chunk: list[dict[str, Any]] = []
    bad = False
    rows = 0

    def infer(rows_: list[dict[str, Any]]) -> None:
        keys = {k for r in rows_ for k in r}
        for name in keys:
            if name not in types:
                types[name] = []
                order.append(name)
            if name in json_columns:
                continue
            try:
                types[name].append(pa.array([r.get(name) for r in rows_]).type)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                json_columns.add(name)

    offset = 0
    with open(p, "rb") as fh:
        for line in fh:
            digest.update(line)
            if line.strip():
                if rows % _STRIDE == 0:
                    index.append(offset)
                row, error = _parse_line(line, rows)
                if error is not None:
                    bad = True
                else:
                    chunk.append(row)  # type: ignore[arg-type]
                rows += 1
                if len(chunk) >= 1024:
                    infer(chunk)
                    chunk = []
            offset += len(line)
    if chunk:
        infer(chunk)
    fields = []
    for name in order:
        if name in json_columns:
            fields.append(pa.field(name, pa.string()))
            continue
        try:
            unified = pa.unify_schemas(
                [pa.schema([(name, t)]) for t in types[name]], promote_options="permissive"
            )
            fields.append(unified.field(name))
        except (pa.ArrowException, TypeError, ValueError):
            json_columns.add(name)
            fields.append(pa.field(name, pa.string()))
    files = [{"name": p.name, "size": offset, "sha256": digest.hexdigest()}]
    return Source(str(p), "jsonl", rows, pa.schema(fields), files, tuple(sorted(json_columns)), bad,
                  _index=index)  # fmt: skip


def _open_parquet(p: Path) -> Source:
    import pyarrow as pa

    pq = require("pyarrow.parquet", extra="batch", package="pyarrow", feature="reading Parquet")
    paths = [p] if p.is_file() else sorted(x for x in p.rglob("*.parquet") if x.is_file())
    root = p.parent if p.is_file() else p
    files, schemas, starts = [], [], [0]
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        schemas.append(pq.read_schema(path))
        files.append({"name": str(path.relative_to(root)), "size": path.stat().st_size,
                      "sha256": _sha256(path), "row_groups": meta.num_row_groups})  # fmt: skip
        for g in range(meta.num_row_groups):
            starts.append(starts[-1] + meta.row_group(g).num_rows)
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    except (pa.ArrowException, TypeError) as exc:
        raise DataError(f"the Parquet files under {str(p)!r} have incompatible schemas: {exc}") from exc
    schema = schema.remove_metadata()
    return Source(str(root), "parquet", starts[-1], schema, files, _index=starts)


def _load_hf(path: str, split: str | None) -> tuple[Any, str | None]:
    datasets = require("datasets", extra="training", feature="reading a Hugging Face dataset")
    loaded = datasets.load_from_disk(path)
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in loaded:
            raise ConfigurationError(f"{path!r} holds the splits {', '.join(names)}: choose one with --split")
        return loaded[split], split
    if split is not None:
        raise ConfigurationError(f"{path!r} is a single dataset, not splits: drop --split")
    return loaded, None


def _open_hf(p: Path, split: str | None) -> Source:
    dataset, split = _load_hf(str(p), split)
    files = [{"name": str(x.relative_to(p)), "size": x.stat().st_size, "sha256": _sha256(x)}
             for x in sorted(p.rglob("*")) if x.is_file()]  # fmt: skip
    schema = dataset.with_format("arrow")[0:0].schema.remove_metadata()
    return Source(str(p), "hf", len(dataset), schema, files, split=split)
