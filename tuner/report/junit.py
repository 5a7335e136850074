"""JUnit XML for CI systems that show test reports (GitLab ``reports: junit``, Jenkins, Azure Pipelines).

Shape: one ``<testsuites name="cfglint">`` with a ``<testsuite>`` per file (``name`` is the path). Choices:

- Each error or warning is a ``<testcase>`` (``name`` is ``CODE key``, ``classname`` the path, plus ``file``
  and ``line``) holding a ``<failure>`` whose ``type`` is the severity and whose ``message`` is the finding;
  the text is the concise line with the help. Infos are passing test cases with the finding in
  ``<system-out>``: they never fail a run, so they do not show as failed tests either.
- A file with no error or warning has one passing ``<testcase name="cfglint">``.
- A file that could not be read or parsed is a ``<testcase name="CFG000">`` with an ``<error>``.
- A file that is not a LLaMA-Factory config is a ``<testcase>`` with ``<skipped message="why">``.
- Each suite's ``<properties>`` names the LLaMA-Factory and transformers versions linted for.
- Counts (``tests``, ``failures``, ``errors``, ``skipped``) are on every suite and on the root.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TextIO

from tuner.lint.rule import Rule, Severity
from tuner.lint.runner import FileResult
from tuner.report._common import INPUT_ERROR_CODE, Options, one_line, posix_path


def _case(suite: ET.Element, name: str, path: str, line: int | None = None) -> ET.Element:
    attrs = {"name": name, "classname": path, "file": path}
    if line is not None:
        attrs["line"] = str(line)
    return ET.SubElement(suite, "testcase", attrs)


def document(results: list[FileResult], opts: Options) -> ET.Element:
    root = opts.root if opts.root is not None else Path.cwd()
    top = ET.Element("testsuites", {"name": "cfglint"})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for r in results:
        path = posix_path(r.path, root)
        suite = ET.SubElement(top, "testsuite", {"name": path})
        if opts.target is not None:  # the versions the findings assume, as every format names them
            props = ET.SubElement(suite, "properties")
            ET.SubElement(props, "property", {"name": "linted_for", "value": opts.target.describe()})
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        if r.error is not None:
            e = r.error
            case = _case(suite, INPUT_ERROR_CODE, path, e.line)
            ET.SubElement(case, "error", {"message": one_line(e.message), "type": "input-error"}).text = str(e)
            counts["tests"] += 1
            counts["errors"] += 1
        elif r.not_a_config:
            case = _case(suite, "cfglint", path)
            why = r.skip_reason or "no LLaMA-Factory keys"
            ET.SubElement(case, "skipped", {"message": f"not a LLaMA-Factory config ({why})"})
            counts["tests"] += 1
            counts["skipped"] += 1
        failed = False
        for v in r.violations:
            vpath = posix_path(v.path, root)
            case = _case(suite, f"{v.code} {v.key}" if v.key else f"{v.code} line {v.line}", vpath, v.line)
            text = f"{vpath}:{v.line}:{v.column}: {v.severity.value}: {v.code} {one_line(v.message)}"
            if v.hint:
                text += f"\nhelp: {v.hint}"
            counts["tests"] += 1
            if v.severity is Severity.INFO:
                ET.SubElement(case, "system-out").text = text
                continue
            ET.SubElement(case, "failure", {"message": one_line(v.message), "type": v.severity.value}).text = text
            counts["failures"] += 1
            failed = True
        for msg in r.rule_errors:
            case = _case(suite, "internal-error", path)
            ET.SubElement(case, "error", {"message": one_line(msg), "type": "internal-error"})
            counts["tests"] += 1
            counts["errors"] += 1
        if r.error is None and not r.not_a_config and not failed and not r.rule_errors:
            _case(suite, "cfglint", path)
            counts["tests"] += 1
        for key, n in counts.items():
            suite.set(key, str(n))
            totals[key] += n
    for key, n in totals.items():
        top.set(key, str(n))
    return top


def render(results: list[FileResult], rules: dict[str, type[Rule]], stream: TextIO, opts: Options) -> None:
    tree = document(results, opts)
    ET.indent(tree)
    stream.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    stream.write(ET.tostring(tree, encoding="unicode"))
    stream.write("\n")
