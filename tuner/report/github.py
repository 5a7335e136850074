"""GitHub Actions workflow commands: each problem becomes an annotation on the pull request's diff.

``::error file=P,line=L,col=C,endLine=L2,endColumn=C2,title=cfglint (CODE)::message``; warnings are
``::warning`` and infos ``::notice``. GitHub's escaping (actions/toolkit ``command.ts``): in the message
``%``, CR and LF become ``%25``, ``%0D``, ``%0A``; in property values ``:`` and ``,`` also become ``%3A``
and ``%2C``. Paths are POSIX and relative to ``root`` (the repository) when under it, which is how GitHub
matches them to the diff.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from tuner.lint.rule import Rule, Severity
from tuner.lint.runner import FileResult
from tuner.report._common import Options, grouped_skips, posix_path

_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(kind: str, message: str, **props: object) -> str:
    """One workflow command line; properties that are None are left out."""
    parts = [f"{k}={escape_property(str(v))}" for k, v in props.items() if v is not None]
    head = f"::{kind} {','.join(parts)}" if parts else f"::{kind}"
    return f"{head}::{escape_data(message)}"


def render(results: list[FileResult], rules: dict[str, type[Rule]], stream: TextIO, opts: Options) -> None:
    root = opts.root if opts.root is not None else Path.cwd()  # GitHub matches paths against the checkout
    seen: dict[str, str] = {}

    def rel(path: Path | str) -> str:  # resolving touches the file system: once per file, not per problem
        key = str(path)
        if key not in seen:
            seen[key] = posix_path(path, root)
        return seen[key]

    out: list[str] = []
    for r in results:
        if r.error is not None:
            e = r.error
            out.append(
                command(
                    "error",
                    e.message,
                    file=rel(e.path),
                    line=e.line,
                    col=e.column if e.line is not None else None,
                    title="cfglint (input error)",
                )
            )
        for v in r.violations:
            message = v.message if not v.hint else f"{v.message}\nhelp: {v.hint}"
            out.append(
                command(
                    _COMMAND[v.severity],
                    message,
                    file=rel(v.path),
                    line=v.line,
                    col=v.column,
                    endLine=v.end_line,
                    endColumn=v.end_column,
                    title=f"cfglint ({v.code})",
                )
            )
        for msg in r.rule_errors:
            out.append(command("error", msg, file=rel(r.path), title="cfglint (internal error)"))
        if opts.show_skipped:
            if r.not_a_config:
                why = r.skip_reason or "no LLaMA-Factory keys"
                out.append(command("notice", f"not a LLaMA-Factory config, not linted ({why})", file=rel(r.path), title="cfglint (skipped)"))
            for why, codes in grouped_skips(r.skipped.items()):
                out.append(
                    command("notice", f"{', '.join(codes)} skipped: {why}", file=rel(r.path), title="cfglint (skipped)")
                )
    if opts.target is not None:  # no summary line in this format: a notice on the run says what was assumed
        out.append(command("notice", f"cfglint: linted for {opts.target.describe()}", title="cfglint"))
    stream.write("".join(line + "\n" for line in out))
