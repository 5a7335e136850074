"""The live view of a study: a rich table redrawn as trials start and finish, or plain lines in logs.

A terminal gets a table (parameters, peak memory against the ceiling, tokens/s, state); anything else (CI logs,
``| tee``, tests) gets one line per event, because redrawn tables turn into noise in a file.
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, Protocol

from tuner.search.records import RUNNING, TrialRecord
from tuner.search.sizes import format_bytes
from tuner.search.space import DIMENSIONS

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table


class TrialView(Protocol):
    def started(self, record: TrialRecord) -> None: ...
    def finished(self, record: TrialRecord) -> None: ...
    def note(self, text: str) -> None: ...
    def close(self) -> None: ...


def describe_point(r: TrialRecord, *, lora: bool = True) -> str:
    """``batch 4×2, rank 16, ckpt off``: each dimension's brief form (the rank only for LoRA)."""
    ga = r.grad_accum if r.grad_accum is not None else "?"
    parts = []
    for dim in DIMENSIONS:
        if dim.field == "rank" and not lora:
            continue
        text = dim.brief(r.point.get(dim))
        if text is not None:
            parts.append(f"{text}×{ga}" if dim.field == "micro" else text)
    return ", ".join(parts)


def memory_text(r: TrialRecord) -> str:
    if r.peak_bytes is not None:
        frac = f" ({r.peak_fraction:.0%})" if r.peak_fraction is not None else ""
        return f"{format_bytes(r.peak_bytes)} / {format_bytes(r.ceiling_bytes)}{frac}"
    if r.calibrated_bytes is not None or r.predicted_bytes is not None:
        est = r.calibrated_bytes if r.calibrated_bytes is not None else r.predicted_bytes
        return f"~{format_bytes(est)} est. / {format_bytes(r.ceiling_bytes)}"
    return f"- / {format_bytes(r.ceiling_bytes)}"


def tps_text(r: TrialRecord) -> str:
    return f"{r.tokens_per_s:,.0f}" if r.tokens_per_s is not None else "-"


class PlainView:
    """One line per event, flushed at once, for logs and tests."""

    def __init__(self, stream: IO[str] | None = None, *, lora: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.lora = lora

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def started(self, record: TrialRecord) -> None:
        self._line(f"trial {record.number:>3} start   {describe_point(record, lora=self.lora)} [{record.origin}]")

    def finished(self, record: TrialRecord) -> None:
        tail = f" - {record.reason}" if record.reason and not record.feasible else ""
        self._line(
            f"trial {record.number:>3} {record.fate_text:<18} {describe_point(record, lora=self.lora)}"
            f" | peak {memory_text(record)} | {tps_text(record)} tokens/s{tail}"
        )

    def note(self, text: str) -> None:
        self._line(text)

    def close(self) -> None:
        pass


_STYLE = {"ok": "green", "running": "cyan", "pruned": "dim", "duplicate": "dim", "interrupted": "yellow"}


class LiveView:
    """A rich table of every trial so far, redrawn in place; the newest trials at the bottom."""

    MAX_ROWS = 30

    def __init__(self, console: Console, *, title: str = "cfgtune auto", lora: bool = True) -> None:
        from rich.live import Live

        self.console = console
        self.title = title
        self.lora = lora
        self.rows: dict[int, TrialRecord] = {}
        self.notes: list[str] = []
        self.live: Live = Live(self._table(), console=console, refresh_per_second=4, transient=False)
        self.live.start()

    def _table(self) -> Table:
        from rich.table import Table

        table = Table(title=self.title, caption="\n".join(self.notes[-3:]) or None, expand=False)
        for col, justify in (("#", "right"), ("origin", "left"), ("configuration", "left"),
                             ("peak / ceiling", "right"), ("tokens/s", "right"), ("state", "left")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        records = sorted(self.rows.values(), key=lambda r: r.number)[-self.MAX_ROWS:]
        for r in records:
            style = _STYLE.get(r.fate, "red" if not r.feasible else "")
            state = r.fate_text if r.fate == "ok" or not r.reason or r.fate == RUNNING else f"{r.fate_text}: {r.reason[:60]}"
            frac = r.peak_fraction
            mem = memory_text(r)
            if frac is not None and frac > 1:
                mem = f"[red]{mem}[/red]"
            table.add_row(str(r.number), r.origin, describe_point(r, lora=self.lora), mem, tps_text(r), state, style=style)
        return table

    def _refresh(self) -> None:
        self.live.update(self._table(), refresh=True)

    def started(self, record: TrialRecord) -> None:
        self.rows[record.number] = record
        self._refresh()

    def finished(self, record: TrialRecord) -> None:
        self.rows[record.number] = record
        self._refresh()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self._refresh()

    def close(self) -> None:
        self.live.stop()


def make_view(*, lora: bool = True, title: str = "cfgtune auto", force_plain: bool = False) -> TrialView:
    """A live table on a terminal, plain lines otherwise."""
    if not force_plain and sys.stdout.isatty():
        from rich.console import Console

        return LiveView(Console(), title=title, lora=lora)
    return PlainView(lora=lora)
