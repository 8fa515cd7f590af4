"""The output folder of a batch job: data files, manifest, lock, and what is already done.

Layout::

    OUT/manifest.json      what the output is made of (input hash, options); written first
    OUT/summary.json       the last run's summary
    OUT/.lock              held by the running job (a second job on the same folder refuses)
    OUT/data/*.parquet     the rows: input columns + verdict columns (or *.jsonl)

Every data file holds its rows' input index (``row_index``). A rerun reads those indexes
(Parquet: that column only), removes what an interruption left unfinished (temporary files, a
file that does not read to its end) and moderates only the rows found nowhere: no row is lost,
none is written twice. The local engine writes each file under a temporary name and renames it
when complete; Ray's writers write in place, so an unfinished Ray file is recognised by not
reading (no Parquet footer, a JSON line cut short) and its rows are redone.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import hashlib
import json
import os
import re
import shutil
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from guardrail.errors import ConfigurationError, DataError

__all__ = ["Output", "jsonl_bytes", "options_hash"]

MANIFEST_VERSION = 1
# Names of the data files this module and the Ray engine write (nothing else is ever removed).
_DATA_FILE = re.compile(r"^(local|ray)-[0-9a-f]{8,32}-[0-9]+(-[0-9]+)?\.(parquet|jsonl)$")
_TEMP_PREFIX = ".tmp-"


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, datetime.timedelta)):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def jsonl_bytes(table: Any) -> bytes:
    """A table as JSON lines (bytes base64-encoded, dates ISO 8601), the same whichever engine
    writes it."""
    lines = [json.dumps(row, ensure_ascii=False, default=_json_default) for row in table.to_pylist()]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def options_hash(manifest: dict[str, Any]) -> str:
    canonical = json.dumps({"input": manifest["input"], "options": manifest["options"]}, sort_keys=True,
                           default=str)  # fmt: skip
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _differences(before: Any, now: Any, where: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(before) | set(now), key=str):
            out += _differences(before.get(key), now.get(key), f"{where}.{key}" if where else str(key))
        return out
    return [] if before == now else [f"{where}: {before!r} in the output, {now!r} now"]


class Output:
    """The output folder ``root`` for rows in ``fmt`` (``parquet`` or ``jsonl``)."""

    def __init__(self, root: str | os.PathLike[str], fmt: str):
        if fmt not in ("parquet", "jsonl"):
            raise ConfigurationError(f"output format must be parquet or jsonl, not {fmt!r}")
        self.root = Path(root).resolve()
        self.fmt = fmt
        self.data = self.root / "data"
        self._lock_fh: Any = None

    # ------------------------------------------------------------------------ lifecycle
    def lock(self) -> None:
        """Hold ``OUT/.lock`` for this process; refuse when another job holds it."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        fh = open(self.root / ".lock", "a+")  # noqa: SIM115 - held until unlock()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise ConfigurationError(
                f"another batch job is writing to {str(self.root)!r}; wait for it or use another --output"
            ) from None
        self._lock_fh = fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def prepare(self, manifest: dict[str, Any], *, overwrite: bool = False) -> None:
        """Check that the folder holds output of the same input and options (or nothing), or
        with ``overwrite`` empty it; then write the manifest."""
        manifest = dict(manifest, version=MANIFEST_VERSION)
        manifest["hash"] = options_hash(manifest)
        path = self.root / "manifest.json"
        has_data = self.data.exists() and any(self.data.iterdir())
        if overwrite:
            if self.data.exists():
                shutil.rmtree(self.data)
            for name in ("manifest.json", "summary.json"):
                (self.root / name).unlink(missing_ok=True)
        elif path.exists():
            try:
                before = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigurationError(
                    f"{str(path)!r} is unreadable ({exc}); rerun with --overwrite"
                ) from exc
            if before.get("hash") != manifest["hash"]:
                diff = _differences({"input": before.get("input"), "options": before.get("options")},
                                    {"input": manifest["input"], "options": manifest["options"]})  # fmt: skip
                raise ConfigurationError(
                    f"{str(self.root)!r} holds the output of another job; mixing them would give rows "
                    "decided differently. Differences: "
                    + "; ".join(diff or ["the manifest hash"])
                    + ". Use another --output, or --overwrite to discard that output and start over"
                )
        elif has_data:
            raise ConfigurationError(
                f"{str(self.data)!r} holds files but no manifest says how they were made; use another "
                "--output, or --overwrite to discard them"
            )
        self.data.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{_TEMP_PREFIX}manifest.json"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str), encoding="utf-8")
        os.replace(tmp, path)

    # ------------------------------------------------------------------------- scanning
    def data_files(self) -> list[Path]:
        if not self.data.exists():
            return []
        return sorted(p for p in self.data.iterdir() if _DATA_FILE.match(p.name))

    def _read_column(self, path: Path, column: str) -> list[Any]:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path, columns=[column]).column(column).to_pylist()
        values = []
        with open(path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    raise DataError(f"{path.name}: the last line is cut short")
                values.append(json.loads(line)[column])
        return values

    def done_rows(self, row_column: str, num_rows: int) -> bytearray:
        """One flag per input row: 1 when some data file holds it. Temporary files and data
        files that do not read completely (an interrupted write) are removed first. A row found
        twice, or outside the input, raises DataError (the folder is not this job's output)."""
        done = bytearray(num_rows)
        if not self.data.exists():
            return done
        for p in self.data.iterdir():
            if p.name.startswith(_TEMP_PREFIX):
                p.unlink(missing_ok=True)
        for path in self.data_files():
            try:
                rows = self._read_column(path, row_column)
            except Exception:  # noqa: BLE001 - any unreadable file is an unfinished write
                path.unlink(missing_ok=True)
                continue
            for row in rows:
                if not isinstance(row, int) or not 0 <= row < num_rows:
                    raise DataError(
                        f"{path.name} holds row {row!r}, not a row of this input (0..{num_rows - 1})"
                    )
                if done[row]:
                    raise DataError(
                        f"row {row} is written twice in {str(self.data)!r} (last seen in {path.name})"
                    )
                done[row] = 1
        return done

    # -------------------------------------------------------------------------- writing
    def new_name(self, engine: str, run_id: str, index: int) -> str:
        return f"{engine}-{run_id}-{index:06d}.{self.fmt}"

    def write(self, table: Any, name: str) -> Path:
        """Write ``table`` as data file ``name``, atomically (temporary file, then rename)."""
        final = self.data / name
        tmp = self.data / f"{_TEMP_PREFIX}{name}"
        try:
            if self.fmt == "parquet":
                import pyarrow.parquet as pq

                pq.write_table(table, tmp)
            else:
                tmp.write_bytes(jsonl_bytes(table))
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return final

    # -------------------------------------------------------------------------- summary
    def summarize(self, prefix: str, categories: bool) -> dict[str, Any]:
        """Counts over every row of the output (whatever run wrote them)."""
        names = ["allowed", "decided_by", "error", "path"] + (["categories"] if categories else [])
        counts: Counter[str] = Counter()
        decided: Counter[str] = Counter()
        paths: Counter[str] = Counter()
        per_category: Counter[str] = Counter()
        for path in self.data_files():
            columns = {n: self._read_column(path, prefix + n) for n in names}
            for i in range(len(columns["allowed"])):
                counts["rows"] += 1
                counts["allowed" if columns["allowed"][i] else "blocked"] += 1
                decided[str(columns["decided_by"][i])] += 1
                if columns["path"][i]:
                    paths[columns["path"][i]] += 1
                if categories:
                    for cat in columns["categories"][i] or ():
                        per_category[cat] += 1
        rows = counts["rows"]
        summary: dict[str, Any] = {
            "rows": rows,
            "allowed": counts["allowed"],
            "blocked": counts["blocked"],
            "blocked_share": round(counts["blocked"] / rows, 6) if rows else 0.0,
            "errors": {"input": decided.get("input", 0), "policy": decided.get("policy", 0)},
            "decided_by": dict(sorted(decided.items())),
            "path": dict(sorted(paths.items())),
            "files": len(self.data_files()),
        }
        if categories:
            summary["categories"] = dict(sorted(per_category.items()))
        return summary

    def write_summary(self, summary: dict[str, Any]) -> Path:
        path = self.root / "summary.json"
        tmp = self.root / f"{_TEMP_PREFIX}summary.json"
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
        return path


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
