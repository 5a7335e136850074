"""Span edits on the original text: build them for rules, and apply them to files.

Fixes never re-serialise the YAML. They replace the exact characters of a value, a key or a line, so the
user's comments, key order, quoting and indentation survive.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
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


def _flow_text(ctx: Context, text: str) -> str:
    """A key or value for a config written as one flow mapping (JSON syntax): JSON, which YAML reads alike.

    LLaMA-Factory before v0.9.4 reads a ``.json`` config with ``json.loads``, so a fix must keep it JSON.
    """
    if ctx.doc.flow_end is None:
        return text
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return text


def replace_value(ctx: Context, key: str, new_text: str, description: str, *, safe: bool = True) -> Fix | None:
    """Replace a key's value text (the comment after it stays)."""
    entry = ctx.doc.entry(key)
    if entry is None:
        return None
    new_text = _flow_text(ctx, new_text)
    return Fix(description, (Edit(entry.value_span.start.offset, entry.value_span.end.offset, new_text),), safe)


def rename_key(ctx: Context, key: str, new_key: str, description: str, *, safe: bool = True) -> Fix | None:
    entry = ctx.doc.entry(key)
    if entry is None:
        return None
    if ctx.doc.flow_end is not None:
        new_key = json.dumps(new_key)
    return Fix(description, (Edit(entry.key_span.start.offset, entry.key_span.end.offset, new_key),), safe)


def _entry_lines(ctx: Context, key: str) -> tuple[int, int] | None:
    """The offsets of the whole lines a top-level entry occupies, newline included."""
    entry = ctx.doc.entry(key)
    if entry is None:
        return None
    doc = ctx.doc
    if doc.flow_end is not None:
        return _flow_entry(ctx, key)
    start = doc.line_start(entry.key_span.start.line)
    end = doc.line_end(entry.value_span.end.line, with_newline=True)
    # Only remove whole lines when nothing else shares the first one (flow mappings do).
    if doc.text[start : entry.key_span.start.offset].strip():
        return None
    return start, end


def _flow_entry(ctx: Context, key: str) -> tuple[int, int] | None:
    """The text of one entry of a flow mapping with one of the commas beside it, so the rest stays valid JSON."""
    doc, text = ctx.doc, ctx.doc.text
    entry = doc.entry(key)
    if entry is None or "." in key:
        return None
    start, end = entry.key_span.start.offset, entry.value_span.end.offset
    j = end
    while j < len(text) and text[j] in " \t\r\n":
        j += 1
    if j < len(text) and text[j] == ",":
        end = j + 1
        while end < len(text) and text[end] in " \t":
            end += 1
    else:
        i = start
        while i > 0 and text[i - 1] in " \t\r\n":
            i -= 1
        if i > 0 and text[i - 1] == ",":
            start = i - 1
    first, last = doc.pos(start).line, doc.pos(end).line
    line_start, line_end = doc.line_start(first), doc.line_end(last, with_newline=False)
    if not text[line_start:start].strip() and not text[end:line_end].strip():
        return line_start, doc.line_end(last, with_newline=True)
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
    """Add ``key: value`` on a new line after the entry ``after`` (or at the end of the file).

    In a config written as one flow mapping (JSON syntax) the entry goes before the closing brace instead.
    """
    doc = ctx.doc
    if doc.flow_end is not None:
        return _flow_insert(ctx, key, value_text, description, safe=safe)
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


def _flow_insert(ctx: Context, key: str, value_text: str, description: str, *, safe: bool) -> Fix:
    doc, text = ctx.doc, ctx.doc.text
    assert doc.flow_end is not None
    pos = doc.flow_end
    while pos > 0 and text[pos - 1] in " \t\r\n":
        pos -= 1
    comma = "" if text[pos - 1] in "{," else ","
    item = f"{json.dumps(key)}: {_flow_text(ctx, value_text)}"
    if "\n" in text[: doc.flow_end].strip():  # one entry a line: keep to it
        last = doc.pos(pos).line
        line = doc.line_text(last)
        indent = line[: len(line) - len(line.lstrip())] or "  "
        newline = "\r\n" if "\r\n" in text else "\n"
        return Fix(description, (Edit(pos, pos, f"{comma}{newline}{indent}{item}"),), safe)
    return Fix(description, (Edit(pos, pos, f"{comma} {item}" if comma or text[pos - 1] != "{" else item),), safe)


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


def _target(path: Path) -> Path:
    """The file a write must change: a symlink's target (the link stays a link), else the path itself."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into exceptions while files are written, so the temporary files are removed.

    (SIGKILL cannot be caught; the temporary files are hidden, ``.NAME.*.tmp``, next to the originals.)
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum} while writing fixes")

    saved = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            saved[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _stage(path: Path, data: bytes) -> str:
    """Write ``data`` to a temporary file beside ``path`` with its mode; return the temporary file's name."""
    import tempfile

    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _unlink(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


def write_files(texts: dict[Path, str], boms: dict[Path, bool] | None = None) -> None:
    """Write several files as one transaction: all of them, or (on any error) none.

    Each text is first written to a temporary file beside its target; only when all are written are they
    renamed over the originals, and a rename that fails puts back the files already replaced. Symlinks are
    followed (the target changes, the link stays), a read-only file is refused (``PermissionError``), and a
    byte-order mark is written back where ``boms`` says the original had one.
    """
    boms = boms or {}
    targets = {path: _target(path) for path in texts}
    for path, target in targets.items():
        # The mode bits too: root may write anything, but a file marked read-only is not to be rewritten.
        if target.exists() and (not os.access(target, os.W_OK) or not target.stat().st_mode & 0o222):
            raise PermissionError(13, "file is read-only", str(path))
    staged: dict[Path, str] = {}
    backups: dict[Path, str] = {}  # target -> a copy of its old content, to undo a partial transaction
    done: list[Path] = []
    with _interruptible():
        try:
            for path, text in texts.items():
                data = (("\ufeff" if boms.get(path, False) else "") + text).encode("utf-8")
                staged[targets[path]] = _stage(targets[path], data)
            if len(staged) > 1:
                for target in staged:
                    if target.exists():
                        backups[target] = _stage(target, target.read_bytes())
            for target, tmp in staged.items():
                os.replace(tmp, target)
                done.append(target)
        except BaseException:
            for target in reversed(done):
                if target in backups:
                    with contextlib.suppress(OSError):
                        os.replace(backups.pop(target), target)
            for tmp in staged.values():
                _unlink(tmp)
            raise
        finally:
            for backup in backups.values():
                _unlink(backup)


def write_atomic(path: Path, text: str, *, bom: bool = False) -> None:
    """Write through a temporary file in the same directory and rename it over the original."""
    write_files({Path(path): text}, {Path(path): bom})
