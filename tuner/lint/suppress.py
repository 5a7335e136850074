"""Inline suppressions written as YAML comments.

* ``key: value  # cfglint: disable=LORA001`` silences LORA001 on that line only;
* a comment alone on its line, ``# cfglint: disable=LORA001,PREC``, silences the codes (or prefixes) on the
  next line;
* ``# cfglint: disable-file=TMPL001`` anywhere silences them in the whole file;
* ``disable`` or ``disable-file`` without ``=`` silences every code.

A trailing directive used to cover the next line as well, so a typo'd key right after a suppressed line
passed unnoticed. Each directive remembers which of its codes silenced something, so that directives that
silence nothing can be reported (as ruff's RUF100 does): a stale suppression hides the next real problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_DIRECTIVE = re.compile(r"#\s*cfglint:\s*(disable-file|disable)\s*(?:=\s*([A-Za-z0-9_,\s]+?))?\s*(?:#|$)")

ALL = "ALL"


@dataclass
class Directive:
    """One ``# cfglint: disable...`` comment."""

    line: int  # 1-based line of the comment
    selectors: tuple[str, ...]  # codes or prefixes, upper-case; (ALL,) when none is given
    scope: str  # "line" (trailing), "next" (alone on its line) or "file"
    target_line: int | None  # the line it covers (None for file-wide)
    comment_start: int  # offset of the comment's '#' in the file text
    comment_end: int  # offset just past the comment (end of line)
    codes_span: tuple[int, int] | None  # offsets of the code list after '=', when given
    whole_line: bool  # the comment is alone on its line
    used: set[str] = field(default_factory=set)  # selectors that silenced at least one finding

    def covers(self, code: str, line: int) -> str | None:
        """The selector that silences ``code`` on ``line``, or None."""
        if self.scope != "file" and line != self.target_line:
            return None
        for s in self.selectors:
            if s == ALL or code.startswith(s):
                return s
        return None


@dataclass
class Suppressions:
    directives: list[Directive] = field(default_factory=list)

    def suppressed(self, code: str, line: int) -> bool:
        """Whether a directive silences ``code`` on ``line``; marks the directive's selector as used."""
        hit = False
        for d in self.directives:
            s = d.covers(code, line)
            if s is not None:
                d.used.add(s)
                hit = True
        return hit


def _comment_start(line: str) -> int | None:
    """The index of a YAML comment's '#', skipping '#' inside quoted scalars."""
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"" and (i == 0 or line[i - 1] in " \t:[{,-"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return i
    return None


def parse_suppressions(text: str) -> Suppressions:
    sup = Suppressions()
    if "cfglint:" not in text:
        return sup
    offset = 0
    for lineno, raw in enumerate(text.splitlines(keepends=True), 1):
        line_offset = offset
        offset += len(raw)
        line = raw.rstrip("\r\n")
        if "cfglint:" not in line:
            continue
        start = _comment_start(line)
        if start is None:
            continue
        m = _DIRECTIVE.search(line, start)
        if not m:
            continue
        kind, codes = m.group(1), m.group(2)
        selectors = tuple(dict.fromkeys(c.strip().upper() for c in (codes or "").split(",") if c.strip())) or (ALL,)
        whole_line = not line[:start].strip()
        scope = "file" if kind == "disable-file" else ("next" if whole_line else "line")
        target = None if scope == "file" else (lineno + 1 if scope == "next" else lineno)
        span = (line_offset + m.start(2), line_offset + m.end(2)) if codes else None
        sup.directives.append(
            Directive(
                line=lineno,
                selectors=selectors,
                scope=scope,
                target_line=target,
                comment_start=line_offset + start,
                comment_end=line_offset + len(line),
                codes_span=span,
                whole_line=whole_line,
            )
        )
    return sup
