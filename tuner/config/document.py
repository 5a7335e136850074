"""A parsed file that remembers where every key and value came from.

Both the training YAML and the DeepSpeed JSON it names become a :class:`Document`, so rules, reporters and
fixes can treat them the same way: look a key path up, get its value and its span in the original text.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.config.positions import Pos, Span


class InputError(Exception):
    """Input cfglint cannot lint: it is reported as ``file:line:col: message`` with exit code 2."""

    def __init__(
        self, path: str | Path, message: str, line: int | None = None, column: int | None = None
    ) -> None:
        if len(message.splitlines()) > 1:  # always one line, whatever line ends the quoted text had
            message = " ".join(message.split())
        super().__init__(message)
        self.path = str(path)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


@dataclass
class Entry:
    """One key of a mapping, with the spans of the key and of its value."""

    path: str
    value: Any
    key_span: Span
    value_span: Span


@dataclass
class Duplicate:
    """A key written twice in one mapping. The later value is the one kept (``data`` holds it); ``first_*`` is
    where the earlier one is, ``key_span`` where the later one is."""

    path: str
    first_key_span: Span
    first_value_span: Span
    key_span: Span


@dataclass
class Document:
    """The original text, the values as the consuming program reads them, and a key-path index."""

    path: Path
    text: str
    data: dict[str, Any]
    entries: dict[str, Entry] = field(default_factory=dict)
    #: Keys written twice (the loader keeps the last value, as PyYAML does; a rule reports them).
    duplicates: list[Duplicate] = field(default_factory=list)
    #: The file began with a UTF-8 byte-order mark (``text`` does not hold it; a fix writes it back).
    bom: bool = False
    #: The offset of the closing ``}`` when the whole file is one flow mapping (JSON syntax), else None:
    #: a key a fix adds goes inside the braces, not after them.
    flow_end: int | None = None
    _line_starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self._line_starts:
            self._line_starts = line_starts(self.text)

    # -- lookups -----------------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self.entries

    def entry(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def pos(self, offset: int) -> Pos:
        """The 1-based line and column of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        idx = bisect.bisect_right(self._line_starts, offset) - 1
        return Pos(line=idx + 1, column=offset - self._line_starts[idx] + 1, offset=offset)

    def offset(self, line0: int, column0: int) -> int:
        """The character offset of a 0-based line and column (as YAML marks report them)."""
        if line0 >= len(self._line_starts):
            return len(self.text)
        return min(self._line_starts[line0] + column0, len(self.text))

    def line_text(self, line: int) -> str:
        """The text of a 1-based line without its newline."""
        if line < 1 or line > len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self._line_starts[line] if line < len(self._line_starts) else len(self.text)
        return self.text[start:end].rstrip("\r\n")

    def line_start(self, line: int) -> int:
        return self._line_starts[line - 1] if 1 <= line <= len(self._line_starts) else len(self.text)

    def line_end(self, line: int, *, with_newline: bool = True) -> int:
        """The offset just past a 1-based line (past its newline when ``with_newline``)."""
        if line >= len(self._line_starts):
            return len(self.text)
        end = self._line_starts[line]
        if not with_newline:
            end -= 1
            if end > 0 and self.text[end - 1] == "\r":
                end -= 1
        return end

    @property
    def line_count(self) -> int:
        return len(self._line_starts)


def line_starts(text: str) -> list[int]:
    starts = [0]
    find = text.find
    i = find("\n")
    while i != -1:
        starts.append(i + 1)
        i = find("\n", i + 1)
    if starts[-1] == len(text) and len(starts) > 1:
        starts.pop()
    return starts
