"""Reporters: turn lint results into what a person, an editor, or a CI system reads.

One module per format, imported only when that format is asked for: ``concise`` in pre-commit must not pay
for ``rich``, which only ``full`` imports.

Formats:

- ``full``: grouped by file, source snippet with carets, help and fix lines (the default on a terminal).
- ``concise``: ``path:line:col: severity: CODE [*] message``, one per line (the default otherwise, e.g. pre-commit).
- ``json``: ``{"version": 1, "files": [...], "summary": {...}}``, a stable shape for other tools.
- ``sarif``: SARIF 2.1.0 for GitHub code scanning.
- ``github``: GitHub Actions workflow annotations (``::error file=...::message``).
- ``gitlab``: GitLab code-quality report (a JSON array of issues with fingerprints).
- ``junit``: JUnit XML (a test suite per file, a failed test case per error or warning).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tuner.report._common import Options

if TYPE_CHECKING:
    from tuner.config.versions import TargetVersions
    from tuner.lint.rule import Rule
    from tuner.lint.runner import FileResult

FORMATS: tuple[str, ...] = ("full", "concise", "json", "sarif", "github", "gitlab", "junit")


def default_format(stream: TextIO) -> str:
    """``full`` for a person at a terminal, ``concise`` for pipes, files and pre-commit."""
    isatty = getattr(stream, "isatty", None)
    try:
        return "full" if isatty is not None and isatty() else "concise"
    except (ValueError, OSError):  # a closed or odd stream
        return "concise"


def render(
    fmt: str,
    results: list[FileResult],
    rules: dict[str, type[Rule]],
    stream: TextIO,
    *,
    color: bool | None = None,
    show_skipped: bool = False,
    unsafe_fixes: bool = False,
    root: Path | None = None,
    target: TargetVersions | None = None,
) -> None:
    """Write ``results`` to ``stream`` in format ``fmt`` (one of :data:`FORMATS`, or ``"auto"``).

    ``rules`` maps codes to rule classes (names, docs and default severities for SARIF). ``color`` None
    means: decide from the stream and the environment (``NO_COLOR``, ``FORCE_COLOR``). ``root`` is the
    repository root: SARIF and GitHub annotations give paths relative to it (default: the current
    directory); the other formats print paths as they were given. ``target`` is the LLaMA-Factory and
    transformers versions linted for: every format names them in its summary (a line, a JSON field, a SARIF
    run property, a GitHub notice).
    """
    if fmt == "auto":
        fmt = default_format(stream)
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    module = importlib.import_module(f"tuner.report.{fmt}")
    opts = Options(color=color, show_skipped=show_skipped, unsafe_fixes=unsafe_fixes, root=root, target=target)
    module.render(results, rules, stream, opts)


__all__ = ["FORMATS", "default_format", "render"]
