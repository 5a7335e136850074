"""One line per problem, ``path:line:col: severity: CODE [*] message``: what editors, grep and pre-commit logs
parse (the ``file:line:col: severity: text`` shape compilers print, which Vim's and Emacs' error parsers know).

With ``--show-skipped``, rules skipped for the same reason are one line per file, and a file that is not a
LLaMA-Factory config says why it was not linted.
"""

from __future__ import annotations

from typing import TextIO

from tuner.lint.rule import Rule
from tuner.lint.runner import FileResult
from tuner.report._common import (
    Options,
    applicable,
    fixable_line,
    grouped_skips,
    one_line,
    plural,
    severity_counts,
    totals,
    with_versions,
)


def render(results: list[FileResult], rules: dict[str, type[Rule]], stream: TextIO, opts: Options) -> None:
    out: list[str] = []
    for r in results:
        path = str(r.path)
        if r.error is not None:
            err = r.error
            where = str(err.path)
            if err.line is not None:
                where += f":{err.line}"
                if err.column is not None:
                    where += f":{err.column}"
            out.append(f"{where}: error: {one_line(err.message)}")
        for v in r.violations:
            mark = " [*]" if applicable(v, opts.unsafe_fixes) else ""
            vpath = str(v.path)
            out.append(f"{vpath}:{v.line}:{v.column}: {v.severity.value}: {v.code}{mark} {one_line(v.message)}")
        for msg in r.rule_errors:
            out.append(f"{path}: error: {one_line(msg)}")
        if opts.show_skipped:
            if r.not_a_config:
                out.append(f"{path}: skipped: not a LLaMA-Factory config ({r.skip_reason or 'no LLaMA-Factory keys'})")
            for why, codes in grouped_skips(r.skipped.items()):
                out.append(f"{path}: {', '.join(codes)} skipped: {one_line(why)}")

    t = totals(results)
    if t.violations:
        out.append(with_versions(f"Found {severity_counts(t, keep_zero=False)}.", opts))
        if (line := fixable_line(t, opts.unsafe_fixes)) is not None:
            out.append(line)
    if t.fixes_applied:
        out.append(f"Applied {plural(t.fixes_applied, 'fix', 'fixes')}.")
    if t.input_errors:
        out.append(f"{plural(t.input_errors, 'file')} could not be linted.")
    rule_errors = sum(len(r.rule_errors) for r in results)
    if not t.violations and not t.input_errors and not rule_errors:
        out.append(with_versions("All checks passed!", opts))
    elif not t.violations and opts.target is not None:
        out.append(f"Linted for {opts.target.describe()}.")
    stream.write("".join(line + "\n" for line in out))
