"""Span edits on the original text: build them for rules, and apply them to files.

Fixes never re-serialise the YAML. They replace the exact characters of a value, a key or a line, so the
user's comments, key order, quoting and indentation survive.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.lint.rule import Edit, Fix

if TYPE_CHECKING:
    from tuner.config.context import Context


def yaml_scalar(value: Any) -> str:
    """Render a Python value as a YAML scalar that LLaMA-Factory reads back as the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exp = text.split("e")
            text = f"{mantissa}.0e{exp}"
        return text
    if isinstance(value, list):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    s = str(value)
    if s == "" or s.strip() != s or any(c in s for c in ":#{}[],&*!|>'\"%@`") or s.lower() in {
        "null", "~", "true", "false", "yes", "no", "on", "off", "y", "n"
    }:
        return json.dumps(s)
    try:
        float(s)
        return json.dumps(s)
    except ValueError:
        return s


def replace_value(ctx: Context, key: str, new_text: str, description: str, *, safe: bool = True) -> Fix | None:
    """Replace a key's value text (the comment after it stays)."""
    entry = ctx.doc.entry(key)
    if entry is None:
        return None
    return Fix(description, (Edit(entry.value_span.start.offset, entry.value_span.end.offset, new_text),), safe)


def rename_key(ctx: Context, key: str, new_key: str, description: str, *, safe: bool = True) -> Fix | None:
    entry = ctx.doc.entry(key)
    if entry is None:
        return None
    return Fix(description, (Edit(entry.key_span.start.offset, entry.key_span.end.offset, new_key),), safe)


def _entry_lines(ctx: Context, key: str) -> tuple[int, int] | None:
    """The offsets of the whole lines a top-level entry occupies, newline included."""
    entry = ctx.doc.entry(key)
    if entry is None:
        return None
    doc = ctx.doc
    start = doc.line_start(entry.key_span.start.line)
    end = doc.line_end(entry.value_span.end.line, with_newline=True)
    # Only remove whole lines when nothing else shares the first one (flow mappings do).
    if doc.text[start : entry.key_span.start.offset].strip():
        return None
    return start, end


def remove_key(ctx: Context, key: str, description: str, *, safe: bool = True) -> Fix | None:
    """Delete a top-level key and its value, with the comment on its line."""
    span = _entry_lines(ctx, key)
    if span is None:
        return None
    return Fix(description, (Edit(span[0], span[1], ""),), safe)


def insert_key(
    ctx: Context, key: str, value_text: str, description: str, *, after: str | None = None, safe: bool = True
) -> Fix:
    """Add ``key: value`` on a new line after the entry ``after`` (or at the end of the file)."""
    doc = ctx.doc
    indent = ""
    if after and doc.entry(after) is not None:
        span = _entry_lines(ctx, after)
        entry = doc.entry(after)
        assert entry is not None
        pos = span[1] if span else doc.line_end(entry.value_span.end.line, with_newline=True)
        indent = " " * (entry.key_span.start.column - 1)
    else:
        pos = len(doc.text)
    prefix = "" if pos == 0 or doc.text[pos - 1] == "\n" else "\n"
    newline = "\r\n" if "\r\n" in doc.text else "\n"
    return Fix(description, (Edit(pos, pos, f"{prefix}{indent}{key}: {value_text}{newline}"),), safe)


def set_key(
    ctx: Context, key: str, value_text: str, description: str, *, after: str | None = None, safe: bool = True
) -> Fix:
    """Set a key: replace its value if present, else insert it."""
    return replace_value(ctx, key, value_text, description, safe=safe) or insert_key(
        ctx, key, value_text, description, after=after, safe=safe
    )


def combine(description: str, fixes: Iterable[Fix | None], *, safe: bool | None = None) -> Fix | None:
    parts = [f for f in fixes if f is not None]
    if not parts:
        return None
    edits = tuple(e for f in parts for e in f.edits)
    return Fix(description, edits, all(f.safe for f in parts) if safe is None else safe)


# -- applying ------------------------------------------------------------------------------------------------
def apply_edits(text: str, edits: Iterable[Edit]) -> tuple[str, int]:
    """Apply non-overlapping edits bottom-up; an edit that overlaps one already taken is skipped.

    Returns the new text and how many edits were applied. Skipped edits are picked up by the next pass
    (``--fix`` re-lints until nothing changes).
    """
    chosen: list[Edit] = []
    for e in sorted(edits, key=lambda e: (e.start, e.end)):
        if chosen and e.start < chosen[-1].end:
            continue
        if chosen and e.start == chosen[-1].end == chosen[-1].start == e.end:
            continue  # two insertions at one point: one per pass keeps the order deterministic
        chosen.append(e)
    out = text
    for e in reversed(chosen):
        out = out[: e.start] + e.content + out[e.end :]
    return out, len(chosen)


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory and rename it over the original."""
    import tempfile

    path = Path(path)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
