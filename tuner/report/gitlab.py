"""GitLab code-quality report (``artifacts: reports: codequality``): a JSON array of issues.

Each issue carries what GitLab's report format requires (docs.gitlab.com, "Code Quality", "Code Quality
report format"): ``description``, ``check_name``, ``fingerprint``, ``severity`` and ``location.path`` with
``location.lines.begin``. Choices:

- Severities: error -> ``major``, warning -> ``minor``, info -> ``info``; a file that could not be read or
  parsed (exit 2) is ``critical`` under the pseudo rule ``CFG000``.
- ``fingerprint`` is a SHA-256 of ``CODE:path:key`` (the line when a finding has no key), so a finding keeps its
  identity when lines move and GitLab shows it as unchanged between the merge request and its target branch;
  a second finding with the same identity gets ``:2`` and so on.
- Paths are POSIX and relative to ``root`` (the checkout, ``$CI_PROJECT_DIR``), which is what GitLab matches
  against the diff.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from tuner.lint.rule import Rule, Severity
from tuner.lint.runner import FileResult
from tuner.report._common import INPUT_ERROR_CODE, Options, one_line, posix_path, rule_url

SEVERITY = {Severity.ERROR: "major", Severity.WARNING: "minor", Severity.INFO: "info"}
INPUT_ERROR_SEVERITY = "critical"


def document(results: list[FileResult], opts: Options) -> list[dict[str, Any]]:
    root = opts.root if opts.root is not None else Path.cwd()
    seen: Counter[str] = Counter()
    paths: dict[str, str] = {}

    def rel(path: Path | str) -> str:
        key = str(path)
        if key not in paths:
            paths[key] = posix_path(path, root)
        return paths[key]

    def fingerprint(identity: str) -> str:
        seen[identity] += 1
        n = seen[identity]
        return hashlib.sha256((identity if n == 1 else f"{identity}:{n}").encode()).hexdigest()

    issues: list[dict[str, Any]] = []
    for r in results:
        if r.error is not None:
            path = rel(r.error.path)
            issues.append(
                {
                    "description": f"{INPUT_ERROR_CODE}: {one_line(r.error.message)}",
                    "check_name": INPUT_ERROR_CODE,
                    "fingerprint": fingerprint(f"{INPUT_ERROR_CODE}:{path}"),
                    "severity": INPUT_ERROR_SEVERITY,
                    "location": {"path": path, "lines": {"begin": r.error.line or 1}},
                }
            )
        for v in r.violations:
            path = rel(v.path)
            issue: dict[str, Any] = {
                "description": f"{v.code}: {one_line(v.message)}",
                "check_name": v.code,
                "fingerprint": fingerprint(f"{v.code}:{path}:{v.key if v.key else f'line{v.line}'}"),
                "severity": SEVERITY[v.severity],
                "location": {"path": path, "lines": {"begin": v.line, "end": max(v.end_line, v.line)}},
                "categories": ["Bug Risk"],
            }
            body = [v.hint] if v.hint else []
            body.append(f"See {rule_url(v.code, v.name)} or `cfglint explain {v.code}`.")
            issue["content"] = {"body": "\n\n".join(body)}
            issues.append(issue)
    return issues


def render(results: list[FileResult], rules: dict[str, type[Rule]], stream: TextIO, opts: Options) -> None:
    json.dump(document(results, opts), stream, indent=2)
    stream.write("\n")
