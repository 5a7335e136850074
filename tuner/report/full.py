"""The report a person reads at a terminal: each problem with its source line, a caret under the span, why
it matters and how to fix it, then a summary. The only module that imports ``rich``.

One violation looks like ruff's full output::

    KEY001 [*] unknown key `lora_rnk`
     --> configs/a.yaml:3:1
      |
    3 | lora_rnk: 8
      | ^^^^^^^^^^^ error: unknown-key
      |
    help: did you mean `lora_rank`?
    fix: rename `lora_rnk` to `lora_rank` (unsafe)
"""

from __future__ import annotations

from typing import TextIO

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from tuner.lint.rule import Rule, Severity, Violation
from tuner.lint.runner import FileResult
from tuner.report._common import (
    Options,
    applicable,
    fixable_line,
    grouped_skips,
    not_configs,
    plural,
    severity_counts,
    skipped,
    totals,
    with_versions,
)

#: Tabs are expanded the same way in the source line and under it, so carets stay aligned.
TAB = 4

COLORS = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "blue"}
GUTTER = "bright_blue"


def make_console(stream: TextIO, color: bool | None) -> Console:
    """``color=False`` must give plain text whatever the environment says (tests, ``--no-color``)."""
    if color is False:
        return Console(
            file=stream,
            color_system=None,
            force_terminal=False,
            no_color=True,
            highlight=False,
            markup=False,
            emoji=False,
            soft_wrap=True,
        )
    return Console(
        file=stream,
        force_terminal=True if color else None,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=True,
    )


def caret_span(v: Violation) -> tuple[str, int, int]:
    """The source line as shown, and the cell offset and width of the key..value span in it."""
    src = v.source_line
    shown = src.expandtabs(TAB)
    start = max(v.column - 1, 0)
    if v.end_line == v.line and v.end_column > v.column:
        end = v.end_column - 1
    elif v.end_line > v.line:  # the span runs past this line: underline to its end
        end = len(src)
    else:
        end = start
    pad = cell_len(src[:start].expandtabs(TAB)) if start <= len(src) else cell_len(shown) + (start - len(src))
    width = cell_len(src[: min(end, len(src))].expandtabs(TAB)) - pad if end > start else 0
    return shown, pad, max(width, 1)


def wrap(text: str, width: int | None, first: int = 0, indent: int = 0) -> str:
    """``text`` broken on word boundaries to fit ``width`` cells (None: one line, the reader's pager decides).

    ``first`` cells of the first line are taken by a prefix printed before it (``help: ``), ``indent`` spaces
    start every further line. Words longer than a line (a path, a URL) are kept whole.
    """
    if width is None or width <= 20:
        return text
    import textwrap

    lines = textwrap.wrap(
        " " * first + text,
        width=width,
        subsequent_indent=" " * indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join(lines)[first:] if lines else text


def violation_text(v: Violation, opts: Options, gutter: int = 0, columns: int | None = None) -> Text:
    """One diagnostic; ``gutter`` is the line-number width shared by the diagnostics of a file, ``width`` the
    terminal's ``columns`` (messages wrap between words, never inside one; None leaves them on one line)."""
    color = COLORS[v.severity]
    out = Text()
    out.append(v.code, style=f"bold {color}")
    mark = applicable(v, opts.unsafe_fixes)
    if mark:
        out.append(" [*]", style="cyan")
    out.append(" ")
    out.append(wrap(v.message, columns, first=len(v.code) + (5 if mark else 1)), style="bold")
    out.append("\n")

    width = max(gutter, len(str(v.line)))
    blank = " " * (width + 1)
    out.append(" " * width + "--> ", style=GUTTER)
    out.append(f"{v.path}:{v.line}:{v.column}\n")
    label = f"{v.severity.value}: {v.name}" if v.name else v.severity.value
    if v.source_line:
        shown, pad, span = caret_span(v)
        out.append(blank + "|\n", style=GUTTER)
        out.append(f"{v.line:>{width}} | ", style=GUTTER)
        out.append(shown + "\n")
        out.append(blank + "| ", style=GUTTER)
        out.append(" " * pad + "^" * span + " " + label, style=color)
        out.append("\n")
        out.append(blank + "|\n", style=GUTTER)
    else:  # nothing to point at (an empty line, or a problem of the file as a whole)
        out.append(blank + "= ", style=GUTTER)
        out.append(label + "\n", style=color)
    if v.hint:
        out.append("help", style="bold cyan")
        out.append(f": {wrap(v.hint, columns, first=6, indent=6)}\n")
    if v.fix is not None:
        out.append("fix", style="bold green")
        out.append(f": {wrap(v.fix.description, columns, first=5, indent=5)} ")
        out.append("(safe)" if v.fix.safe else "(unsafe)", style="green" if v.fix.safe else "yellow")
        out.append("\n")
    return out


def render(results: list[FileResult], rules: dict[str, type[Rule]], stream: TextIO, opts: Options) -> None:
    console = make_console(stream, opts.color)
    width = console.width if console.is_terminal else None
    for r in results:
        path = str(r.path)
        if r.error is not None:
            console.print(Text(f"error: {r.error}", style="bold red"))
            console.print()
            continue
        if r.not_a_config:
            continue  # summed up below: pre-commit hands over every YAML, and most of it is not a config
        if not r.violations and not r.rule_errors:
            continue
        head = Text()
        head.append(path, style="bold underline")
        counts = [plural(r.count(s), s.value) for s in Severity if r.count(s)]
        if counts:
            head.append(f" ({', '.join(counts)})", style="dim")
        console.print(head)
        console.print()
        gutter = max((len(str(v.line)) for v in r.violations), default=1)
        for v in r.violations:
            console.print(violation_text(v, opts, gutter, width))
        for msg in r.rule_errors:
            console.print(Text(f"error: {path}: {msg}", style="bold red"))
        if r.rule_errors:
            console.print()

    t = totals(results)
    if t.violations:
        console.print(
            Text(
                with_versions(f"Found {severity_counts(t, keep_zero=True)} in {plural(t.files_with_violations, 'file')}.", opts),
                style="bold",
            )
        )
        if (line := fixable_line(t, opts.unsafe_fixes)) is not None:
            console.print(Text(line))
    elif not t.input_errors and not any(r.rule_errors for r in results):
        console.print(Text(with_versions("All checks passed!", opts), style="bold green"))
    elif opts.target is not None:
        console.print(Text(f"Linted for {opts.target.describe()}.", style="dim"))
    if t.fixes_applied:
        console.print(Text(f"Applied {plural(t.fixes_applied, 'fix', 'fixes')}.", style="green"))
    if t.input_errors:
        console.print(Text(f"{plural(t.input_errors, 'file')} could not be linted.", style="red"))
    others = not_configs(results)
    if others and opts.show_skipped:
        for why, paths in others:
            console.print(Text(wrap(f"not LLaMA-Factory configs, not linted ({why}): {', '.join(paths)}", width, indent=2), style="dim"))
    elif others:
        n = sum(len(paths) for _, paths in others)
        console.print(Text(f"{plural(n, 'file')} not LLaMA-Factory configs, not linted (pass --show-skipped to see which)", style="dim"))
    skips = skipped(results)
    if skips:
        if opts.show_skipped:
            for why, codes in grouped_skips(skips):
                console.print(Text(wrap(f"{', '.join(codes)} skipped: {why}", width, indent=2), style="dim"))
        else:
            n = len({code for code, _ in skips})
            console.print(Text(f"{plural(n, 'rule')} skipped (pass --show-skipped to see why)", style="dim"))
