"""SARIF 2.1.0 for GitHub code scanning: valid against the OASIS schema and carrying GitHub's "required" set.

What GitHub needs beyond the schema (``github/docs`` sarif-support.md): ``$schema``; ``driver.rules`` with
``id``, ``shortDescription.text`` and ``fullDescription.text`` (each at most 1024 characters) and ``help.text``;
each result with ``message.text``, at least one location with a repository-relative ``artifactLocation.uri``
and a full ``region``, and ``partialFingerprints``.

Choices:

- ``driver.rules`` lists the rules that fired, in code order; ``ruleIndex`` points into it.
- ``helpUri`` is the rule's section of docs/rules.md when the installed package names its repository
  (``[project.urls]``); SARIF needs an absolute URI there, so it is left out otherwise (``help`` has the text).
- Severities map to levels: error -> ``error``, warning -> ``warning``, info -> ``note``.
- An input error (unreadable file, invalid YAML or JSON) is a result of the pseudo rule ``CFG000``
  (``input-error``, level ``error``) at the position the parser gave, so it shows up as an alert instead
  of vanishing from the code-scanning view.
- A rule that crashed is a ``toolExecutionNotifications`` entry with ``executionSuccessful: false``;
  skipped rules are ``note`` notifications (the rule did not run; nothing was found or cleared).
- ``partialFingerprints["cfglint/keypath/v1"]`` is ``CODE:uri:key``: an alert follows its key when lines
  move. GitHub's own ``primaryLocationLineHash`` is left to the upload-sarif action, which computes it.
- Columns count Unicode code points (``run.columnKind``), which is what Python string indexes are.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from tuner import LLAMAFACTORY_VERSION, __version__
from tuner.lint.rule import Rule, Severity, Violation
from tuner.lint.runner import FileResult
from tuner.report._common import (
    INPUT_ERROR_CODE,
    INPUT_ERROR_NAME,
    Options,
    relative,
    rule_url,
    skipped,
)

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
#: GitHub's limit for shortDescription and fullDescription.
MAX_DESCRIPTION = 1024

LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
PROBLEM_SEVERITY = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "recommendation"}


def information_uri() -> str | None:
    """The project's home page from the installed metadata (optional in SARIF), so it never names a made-up site."""
    try:
        from importlib.metadata import PackageNotFoundError, metadata

        urls: list[str] = [str(u) for u in metadata("cfgtune").get_all("Project-URL") or []]
    except (ImportError, PackageNotFoundError):
        urls = []
    for entry in urls:
        _, _, url = entry.partition(",")
        if url.strip().startswith(("https://", "http://")):
            return url.strip()
    return None


def artifact_uri(path: Path | str, root: Path) -> str:
    """Repository-relative with ``/`` when under ``root`` (what GitHub matches); a ``file:`` URI otherwise."""
    rel = relative(path, root)
    if rel is not None:
        return quote(rel.as_posix())
    p = Path(path)
    return p.as_uri() if p.is_absolute() else quote(p.as_posix())


def clip(text: str, limit: int = MAX_DESCRIPTION) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def prose(cls: type[Rule]) -> str:
    """The "why it matters" paragraphs of a rule's docstring: after the summary, before the examples."""
    lines = cls.doc().splitlines()[1:]
    keep: list[str] = []
    for line in lines:
        s = line.strip()
        if s.startswith("```") or re.fullmatch(r"(Bad|Good)\b.*:", s):
            break
        keep.append(line)
    return "\n".join(keep).strip()


def rule_descriptor(code: str, cls: type[Rule] | None, sample: Violation | None) -> dict[str, Any]:
    if code == INPUT_ERROR_CODE:
        summary = "The file could not be read as a LLaMA-Factory config."
        why = "The file is not valid YAML (or the DeepSpeed JSON it names is not valid JSON), so nothing in it was linted."
        help_text = "Fix the syntax error at the reported position, then run cfglint again."
        return _descriptor(code, INPUT_ERROR_NAME, summary, why, help_text, help_text, Severity.ERROR, "input")
    if cls is not None:
        summary = cls.summary() or cls.name or code
        doc = cls.doc() or summary
        return _descriptor(code, cls.name, summary, prose(cls) or summary, doc, doc, cls.severity, _family(code))
    # a violation whose rule is not in ``rules`` (should not happen): describe it from the violation
    name = sample.name if sample is not None else ""
    severity = sample.severity if sample is not None else Severity.WARNING
    summary = name or code
    return _descriptor(code, name, summary, summary, summary, summary, severity, _family(code))


def _family(code: str) -> str:
    m = re.match(r"[A-Za-z]+", code)
    return m.group(0).lower() if m else code.lower()


def _descriptor(
    code: str, name: str, summary: str, full: str, help_text: str, help_md: str, severity: Severity, tag: str
) -> dict[str, Any]:
    d: dict[str, Any] = {"id": code}
    if name:
        d["name"] = name
    d["shortDescription"] = {"text": clip(summary)}
    d["fullDescription"] = {"text": clip(full)}
    d["help"] = {"text": help_text, "markdown": help_md}
    if code != INPUT_ERROR_CODE:
        url = rule_url(code, name)
        if url.startswith(("https://", "http://")):  # SARIF wants an absolute URI; the help text is there anyway
            d["helpUri"] = url
    d["defaultConfiguration"] = {"level": LEVELS[severity]}
    d["properties"] = {"tags": ["cfglint", tag], "problem.severity": PROBLEM_SEVERITY[severity]}
    return d


def region(line: int, column: int, end_line: int, end_column: int) -> dict[str, int]:
    """A region the schema and GitHub accept: 1-based, never ending before it starts."""
    line, column = max(line, 1), max(column, 1)
    end_line = max(end_line, line)
    end_column = max(end_column, 1)
    if end_line == line:
        end_column = max(end_column, column)
    return {"startLine": line, "startColumn": column, "endLine": end_line, "endColumn": end_column}


def location(uri: str, reg: dict[str, int]) -> dict[str, Any]:
    return {"physicalLocation": {"artifactLocation": {"uri": uri}, "region": reg}}


def document(results: list[FileResult], rules: dict[str, type[Rule]], opts: Options) -> dict[str, Any]:
    root = opts.root if opts.root is not None else Path.cwd()
    uris: dict[str, str] = {}

    def uri_of(path: Path | str) -> str:  # resolving touches the file system: once per file, not per problem
        key = str(path)
        if key not in uris:
            uris[key] = artifact_uri(path, root)
        return uris[key]

    # the rules that fired, in code order, so ruleIndex is stable for the same findings
    samples: dict[str, Violation] = {}
    for r in results:
        for v in r.violations:
            samples.setdefault(v.code, v)
    codes = sorted(samples)
    if any(r.error is not None for r in results):
        codes.insert(0, INPUT_ERROR_CODE)
    descriptors = [rule_descriptor(c, rules.get(c), samples.get(c)) for c in codes]
    index = {c: i for i, c in enumerate(codes)}

    sarif_results: list[dict[str, Any]] = []
    seen: Counter[str] = Counter()

    def fingerprint(base: str) -> dict[str, str]:
        seen[base] += 1  # the same key flagged twice by one rule must still give two alerts
        n = seen[base]
        return {"cfglint/keypath/v1": base if n == 1 else f"{base}:{n}"}

    for r in results:
        if r.error is not None:
            e = r.error
            uri = uri_of(e.path)
            line, col = e.line or 1, e.column or 1
            sarif_results.append(
                {
                    "ruleId": INPUT_ERROR_CODE,
                    "ruleIndex": index[INPUT_ERROR_CODE],
                    "level": "error",
                    "message": {"text": e.message},
                    "locations": [location(uri, region(line, col, line, col))],
                    "partialFingerprints": fingerprint(f"{INPUT_ERROR_CODE}:{uri}"),
                }
            )
        for v in r.violations:
            uri = uri_of(v.path)
            text = v.message if not v.hint else f"{v.message}\n\nHelp: {v.hint}"
            res: dict[str, Any] = {
                "ruleId": v.code,
                "ruleIndex": index[v.code],
                "level": LEVELS[v.severity],
                "message": {"text": text},
                "locations": [location(uri, region(v.line, v.column, v.end_line, v.end_column))],
                "partialFingerprints": fingerprint(f"{v.code}:{uri}:{v.key if v.key else f'line{v.line}'}"),
            }
            props: dict[str, Any] = {}
            if v.key:
                props["key"] = v.key
            if v.fix is not None:
                props["fix"] = {"description": v.fix.description, "safe": v.fix.safe}
            if props:
                res["properties"] = props
            sarif_results.append(res)

    notifications: list[dict[str, Any]] = []
    for r in results:
        uri = uri_of(r.path)
        for msg in r.rule_errors:
            notifications.append(
                {"level": "error", "message": {"text": msg}, "locations": [location(uri, region(1, 1, 1, 1))]}
            )
    for code, why in skipped(results):
        notifications.append({"level": "note", "message": {"text": f"{code} skipped: {why}"}, "associatedRule": {"id": code}})
    invocation: dict[str, Any] = {"executionSuccessful": not any(r.rule_errors for r in results)}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications

    driver: dict[str, Any] = {
        "name": "cfglint",
        "version": __version__,
        "semanticVersion": __version__,
        "rules": descriptors,
        "properties": {"llamafactoryVersion": LLAMAFACTORY_VERSION},
    }
    home = information_uri()
    if home:
        driver["informationUri"] = home
    run: dict[str, Any] = {
        "tool": {"driver": driver},
        "invocations": [invocation],
        "columnKind": "unicodeCodePoints",
        "results": sarif_results,
    }
    if opts.target is not None:  # the versions the findings assume: a run property (SARIF 3.19.x property bag)
        run["properties"] = {"target": opts.target.as_dict(), "lintedFor": opts.target.describe()}
    return {"$schema": SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


def render(results: list[FileResult], rules: dict[str, type[Rule]], stream: TextIO, opts: Options) -> None:
    json.dump(document(results, rules, opts), stream, indent=2)
    stream.write("\n")
