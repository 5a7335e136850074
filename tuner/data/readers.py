"""Read local dataset files into rows the way ``datasets.load_dataset`` hands them to LLaMA-Factory.

Supported: json (a JSON array, or JSON Lines), jsonl, csv, parquet, txt, arrow. What ``datasets`` does that
changes the rows we see:

* Columns are the union over all rows; a row without a key gets ``None`` for it.
* A CSV cell that is empty becomes ``None`` (pandas reads it as NaN, Arrow stores a null).
* A file that cannot be parsed is not loaded at all, so LLaMA-Factory stops.

Rows keep where they came from (``path:line``, or ``path:row N`` for columnar files) so that a bad row can be
pointed at. Line numbers of JSON array elements are only computed when a problem needs them.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.data.problems import Problem


@dataclass
class Table:
    """The rows of one or more files of a dataset, in order."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)
    #: per file: (first row index, locator of a row index within that file)
    _parts: list[tuple[int, Callable[[int], str]]] = field(default_factory=list)

    def extend(self, other: Table) -> None:
        start = len(self.rows)
        self.rows.extend(other.rows)
        self.columns |= other.columns
        for first, loc in other._parts:
            self._parts.append((start + first, loc))

    def locate(self, indexes: list[int]) -> list[str]:
        """``path:line`` of rows, by their index in :attr:`rows`."""
        out = []
        starts = [p[0] for p in self._parts]
        for i in indexes:
            k = bisect.bisect_right(starts, i) - 1
            if k < 0:
                out.append(f"row {i + 1}")
                continue
            first, loc = self._parts[k]
            out.append(loc(i - first))
        return out


def read_bytes(dataset: str, path: Path, raw: bytes, ftype: str) -> tuple[Table, list[Problem]]:
    if not raw.strip():
        return Table(), [Problem(dataset, "empty", f"{path} is empty: LLaMA-Factory finds no samples in it")]
    reader = {"json": _read_json, "csv": _read_csv, "parquet": _read_parquet, "text": _read_text, "arrow": _read_arrow}
    try:
        table, problems = reader[ftype](dataset, path, raw)
    except _Unreadable as exc:
        return Table(), [Problem(dataset, "unreadable", f"{path}{exc.where}: {exc}", hint=exc.hint)]
    if not table.rows and not problems:
        problems.append(Problem(dataset, "empty", f"{path} has no rows: LLaMA-Factory finds no samples in it"))
    return table, problems


class _Unreadable(Exception):
    def __init__(self, message: str, where: str = "", hint: str | None = None) -> None:
        super().__init__(message)
        self.where = where
        self.hint = hint


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _Unreadable("not UTF-8 text; `datasets` cannot load it", where=f":{line}") from None


def _line_locator(path: Path, lines: list[int]) -> Callable[[int], str]:
    return lambda i: f"{path}:{lines[i]}" if i < len(lines) else f"{path}:row {i + 1}"


# -- JSON ----------------------------------------------------------------------------------------------------
def _read_json(dataset: str, path: Path, raw: bytes) -> tuple[Table, list[Problem]]:
    text = _decode(raw)
    stripped = text.lstrip()
    if stripped.startswith("["):
        return _read_json_array(dataset, path, text)
    return _read_json_lines(dataset, path, text)


def _read_json_array(dataset: str, path: Path, text: str) -> tuple[Table, list[Problem]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Unreadable(
            f"invalid JSON: {exc.msg}", where=f":{exc.lineno}:{exc.colno}", hint="fix the JSON; `datasets` loads nothing"
        ) from None
    if not isinstance(data, list):
        raise _Unreadable("expected a JSON array of objects")
    table = Table(rows=data)
    problems: list[Problem] = []
    bad = [i for i, r in enumerate(data) if not isinstance(r, dict)]
    if bad:
        table.rows = [r for r in data if isinstance(r, dict)]
        lines = _array_element_lines(text)
        where = [f"{path}:{lines[i]}" for i in bad[:5] if i < len(lines)]
        message = f"{path}: {len(bad)} array elements are not JSON objects; `datasets` cannot load the file"
        problems.append(Problem(dataset, "unreadable", message, count=len(bad), total=len(data), where=where))
        keep = [i for i, r in enumerate(data) if isinstance(r, dict)]
        element_lines = [lines[i] for i in keep if i < len(lines)]
        table._parts = [(0, _line_locator(path, element_lines))]
    else:
        cache: dict[str, list[int]] = {}

        def locate(i: int) -> str:  # line numbers are only needed for bad rows: compute once, on demand
            if "lines" not in cache:
                cache["lines"] = _array_element_lines(text)
            lines = cache["lines"]
            return f"{path}:{lines[i]}" if i < len(lines) else f"{path}:row {i + 1}"

        table._parts = [(0, locate)]
    for r in table.rows:
        table.columns.update(r.keys())
    return table, problems


def _array_element_lines(text: str) -> list[int]:
    """The 1-based line on which each top-level element of a JSON array starts."""
    decoder = json.JSONDecoder()
    newlines = _newlines(text)
    out: list[int] = []
    pos = text.index("[") + 1
    n = len(text)
    ws = " \t\r\n"
    while pos < n:
        while pos < n and text[pos] in ws:
            pos += 1
        if pos >= n or text[pos] == "]":
            break
        out.append(bisect.bisect_right(newlines, pos - 1) + 1)
        try:
            _, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        while pos < n and text[pos] in ws:
            pos += 1
        if pos < n and text[pos] == ",":
            pos += 1
    return out


def _newlines(text: str) -> list[int]:
    out = []
    i = text.find("\n")
    while i != -1:
        out.append(i)
        i = text.find("\n", i + 1)
    return out


def _read_json_lines(dataset: str, path: Path, text: str) -> tuple[Table, list[Problem]]:
    lines = text.split("\n")
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    rows: list[Any]
    try:  # the fast path: one parse of the whole file
        rows = json.loads("[" + ",".join(ln for _, ln in numbered) + "]")
        if len(rows) != len(numbered):  # a line held two values ("{}, {}"): find it the slow way
            raise ValueError
    except (json.JSONDecodeError, ValueError):
        rows = []
        bad: list[tuple[int, str]] = []
        good_lines: list[tuple[int, str]] = []
        for no, ln in numbered:
            try:
                rows.append(json.loads(ln))
                good_lines.append((no, ln))
            except json.JSONDecodeError as exc:
                bad.append((no, exc.msg))
        if bad:
            msg = bad[0][1]
            if len(numbered) == len(bad) and len(numbered) > 1 and numbered[0][1].strip() in ("{", "{\n"):
                raise _Unreadable(
                    "a single pretty-printed JSON object, not JSON Lines or an array of rows",
                    hint="write one JSON object per line, or a JSON array of objects",
                ) from None
            problem = Problem(
                dataset, "unreadable",
                f"{path}: {len(bad)} of {len(numbered)} lines are not valid JSON ({msg}); `datasets` cannot load the "
                "file, so LLaMA-Factory stops", hint="fix or remove those lines",
                count=len(bad), total=len(numbered), where=[f"{path}:{no}" for no, _ in bad[:5]],
            )  # fmt: skip
            numbered = good_lines
            problems = [problem]
        else:
            problems = []
    else:
        problems = []
    table = Table()
    line_of: list[int] = []
    not_obj: list[int] = []
    for (no, _), r in zip(numbered, rows, strict=True):
        if isinstance(r, dict):
            table.rows.append(r)
            line_of.append(no)
            table.columns.update(r.keys())
        else:
            not_obj.append(no)
    if not_obj:
        problems.append(
            Problem(dataset, "unreadable", f"{path}: {len(not_obj)} lines are JSON but not objects; `datasets` cannot "
                    "load the file", count=len(not_obj), total=len(numbered), where=[f"{path}:{n}" for n in not_obj[:5]])
        )  # fmt: skip
    table._parts = [(0, _line_locator(path, line_of))]
    return table, problems


# -- CSV, text, parquet, arrow ---------------------------------------------------------------------------------
def _read_csv(dataset: str, path: Path, raw: bytes) -> tuple[Table, list[Problem]]:
    text = _decode(raw)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return Table(), []
    except csv.Error as exc:
        raise _Unreadable(f"invalid CSV: {exc}", where=":1") from None
    table = Table(columns=set(header))
    line_of: list[int] = []
    short: list[int] = []
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise _Unreadable(f"invalid CSV: {exc}", where=f":{reader.line_num}") from None
        if not values:
            continue
        if len(values) > len(header):
            short.append(start)
        table.rows.append({k: (v if v != "" else None) for k, v in zip(header, values, strict=False)})
        line_of.append(start)
    table._parts = [(0, _line_locator(path, line_of))]
    problems = []
    if short:
        problems.append(
            Problem(dataset, "unreadable", f"{path}: {len(short)} rows have more fields than the header; pandas "
                    "cannot load the file", count=len(short), total=len(table.rows),
                    where=[f"{path}:{n}" for n in short[:5]])
        )  # fmt: skip
    return table, problems


def _read_text(dataset: str, path: Path, raw: bytes) -> tuple[Table, list[Problem]]:
    text = _decode(raw)
    lines = text.splitlines()
    table = Table(rows=[{"text": ln} for ln in lines], columns={"text"})
    table._parts = [(0, lambda i: f"{path}:{i + 1}")]
    return table, []


def _read_parquet(dataset: str, path: Path, raw: bytes) -> tuple[Table, list[Problem]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise _Unreadable("reading parquet needs pyarrow: pip install 'cfgtune[data]'") from None
    try:
        t = pq.read_table(pa.BufferReader(raw))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for corrupt files
        raise _Unreadable(f"not a readable parquet file ({exc.__class__.__name__}: {exc})") from None
    return _arrow_table(path, t), []


def _read_arrow(dataset: str, path: Path, raw: bytes) -> tuple[Table, list[Problem]]:
    try:
        import pyarrow as pa
        from pyarrow import ipc
    except ImportError:
        raise _Unreadable("reading arrow files needs pyarrow: pip install 'cfgtune[data]'") from None
    try:
        t = ipc.open_stream(pa.BufferReader(raw)).read_all()
    except Exception:  # noqa: BLE001 - not the stream format: try the file format
        try:
            t = ipc.open_file(pa.BufferReader(raw)).read_all()
        except Exception as exc:  # noqa: BLE001
            raise _Unreadable(f"not a readable Arrow file ({exc.__class__.__name__}: {exc})") from None
    return _arrow_table(path, t), []


def _arrow_table(path: Path, t: Any) -> Table:
    table = Table(rows=t.to_pylist(), columns=set(t.column_names))
    table._parts = [(0, lambda i: f"{path}:row {i + 1}")]
    return table
