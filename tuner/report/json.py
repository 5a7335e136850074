"""Machine-readable results. Other tools parse this: the required fields and their types never change.

Shape (``version`` 1)::

    {"version": 1,
     "files": [{"path": str,
                "violations": [{"code": str, "name": str, "severity": "error"|"warning"|"info",
                                "message": str, "key": str|null, "line": int, "column": int,
                                "fix": null | {"safe": bool, "description": str},
                                # extras:
                                "end_line": int, "end_column": int, "hint": str|null, "path": str,
                                "url": str}],
                # extras:
                "error": null | {"message": str, "line": int|null, "column": int|null, "path": str},
                "skipped": {code: reason}, "not_a_config": bool, "not_a_config_reason": str|null,
                "rule_errors": [str],
                "fixes_applied": int, "kind": "train"|"export"|"infer"|"eval"|null}],
     "summary": {"errors": int, "warnings": int, "infos": int,
                 # extra, when the caller states the versions linted for:
                 "target": {"llamafactory": str, "transformers": str}, "linted_for": str}}

Lines and columns are 1-based; ``end_column`` is one past the last character of the key..value span.
``url`` is the rule's section of docs/rules.md (``cfglint explain CODE`` prints the same text): an absolute
URL when the installed package names its repository, else the path relative to the repository root.
A violation's ``path`` differs from its file's when the problem is in the DeepSpeed JSON the file names.
``summary`` counts violations only; input errors are in each file's ``error``.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from tuner.lint.rule import Rule, Violation
from tuner.lint.runner import FileResult
from tuner.report._common import Options, rule_url, totals

VERSION = 1


def violation_dict(v: Violation, opts: Options) -> dict[str, Any]:
    return {
        "code": v.code,
        "name": v.name,
        "severity": v.severity.value,
        "message": v.message,
        "key": v.key,
        "line": v.line,
        "column": v.column,
        "fix": None if v.fix is None else {"safe": bool(v.fix.safe), "description": v.fix.description},
        "end_line": v.end_line,
        "end_column": v.end_column,
        "hint": v.hint,
        "path": str(v.path),
        "url": rule_url(v.code, v.name),
    }


def file_dict(r: FileResult, opts: Options) -> dict[str, Any]:
    error = None
    if r.error is not None:
        error = {
            "message": r.error.message,
            "line": r.error.line,
            "column": r.error.column,
            "path": str(r.error.path),
        }
    return {
        "path": str(r.path),
        "violations": [violation_dict(v, opts) for v in r.violations],
        "error": error,
        "skipped": dict(sorted(r.skipped.items())),
        "not_a_config": r.not_a_config,
        "not_a_config_reason": r.skip_reason if r.not_a_config else None,
        "rule_errors": list(r.rule_errors),
        "fixes_applied": r.fixes_applied,
        "kind": r.kind.kind if r.kind is not None else None,
    }


def document(results: list[FileResult], opts: Options) -> dict[str, Any]:
    t = totals(results)
    summary: dict[str, Any] = {"errors": t.errors, "warnings": t.warnings, "infos": t.infos}
    if opts.target is not None:
        summary["target"] = opts.target.as_dict()
        summary["linted_for"] = opts.target.describe()
    return {
        "version": VERSION,
        "files": [file_dict(r, opts) for r in results],
        "summary": summary,
    }


def render(results: list[FileResult], rules: dict[str, type[Rule]], stream: TextIO, opts: Options) -> None:
    json.dump(document(results, opts), stream, indent=2)  # ASCII: safe on any stream encoding
    stream.write("\n")
