"""``cfglint check --statistics``: how often each rule fired, most frequent first, as ruff prints it.

Text: ``COUNT<TAB>CODE<TAB>[*] name`` per rule (``[*]`` when ``--fix`` would fix every one of them), then the
input errors. JSON (``--format json``): ``[{"code", "name", "count", "fixable"}]``.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from tuner.lint.runner import FileResult
from tuner.report._common import applicable, plural


def statistics(results: list[FileResult], unsafe_fixes: bool = False) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        for v in r.violations:
            row = rows.setdefault(v.code, {"code": v.code, "name": v.name, "count": 0, "fixable": True})
            row["count"] += 1
            row["fixable"] = row["fixable"] and applicable(v, unsafe_fixes)
    return sorted(rows.values(), key=lambda row: (-row["count"], row["code"]))


def render_statistics(results: list[FileResult], stream: TextIO, *, as_json: bool = False, unsafe_fixes: bool = False) -> None:
    rows = statistics(results, unsafe_fixes)
    if as_json:
        json.dump(rows, stream, indent=2)
        stream.write("\n")
        return
    width = max((len(str(row["count"])) for row in rows), default=1)
    code_width = max((len(row["code"]) for row in rows), default=1)
    for row in rows:
        mark = "[*]" if row["fixable"] else "[ ]"
        stream.write(f"{row['count']:>{width}}\t{row['code']:<{code_width}}\t{mark} {row['name']}\n")
    errors = [r for r in results if r.error is not None]
    for r in errors:
        stream.write(f"{r.error}\n")
    if errors:
        stream.write(f"{plural(len(errors), 'file')} could not be linted.\n")
