"""`cfgtune data run.yaml` (also `cfglint data`): token-length statistics of a config's datasets.

Reads the datasets the way LLaMA-Factory will (dataset_info.json, the chat template, the model's tokenizer)
and prints the prompt/response/total length percentiles, a histogram with ``cutoff_len`` marked, what
``cutoff_len`` truncates, a suggested value, and any problem in the files. ``--json`` prints the same numbers
as one JSON object.

Exit codes: 0 ok; 1 the datasets have problems (the same ones DATA001/DATA002 report); 2 bad input: the config
cannot be read, no tokenizer, no dataset_info.json, nothing local to read.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from tuner.data.info import shown

if TYPE_CHECKING:
    from rich.console import Console

    from tuner.data.pipeline import DatasetStats

ROUND_TO = 64


def _fail(message: str) -> NoReturn:
    click.echo(f"cfgtune data: error: {message}", err=True)
    sys.exit(2)


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)


def suggested_cutoff(stats: DatasetStats) -> int | None:
    """p90 of the training samples rounded up to a multiple of 64 (+1 with explicit packing), as DATA003 fixes."""
    if stats.train.count == 0:
        return None
    extra = 1 if stats.request.packing_explicit else 0
    return max(ROUND_TO, math.ceil((stats.train.p(90) + extra) / ROUND_TO) * ROUND_TO)


@click.command("data")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--tokenizer", default=None, type=click.Path(), help="Tokenizer dir or tokenizer.json [default: the model's].")
@click.option("--dataset-dir", default=None, type=click.Path(), help="Overrides the config's dataset_dir.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@click.option("--no-cache", is_flag=True, help="Recompute instead of reading the statistics cache.")
@click.option("--bins", type=click.IntRange(5, 60), default=20, show_default=True, help="Histogram buckets.")
def data(config: str, tokenizer: str | None, dataset_dir: str | None, as_json: bool, no_cache: bool, bins: int) -> None:
    """Token-length statistics of the datasets in CONFIG, tokenized like LLaMA-Factory will."""
    from tuner.config.document import InputError
    from tuner.config.loader import load_config
    from tuner.config.context import Context, LintOptions

    try:
        doc = load_config(Path(config))
        ctx = Context(doc, LintOptions(tokenizer=tokenizer, dataset_dir=dataset_dir))
    except InputError as exc:
        _fail(str(exc))
    from tuner.data.lint_stats import request_from_context

    try:
        req = request_from_context(ctx)
    except LookupError as exc:
        _fail(f"{config}: {exc.args[0] if exc.args else exc}")
    req.use_cache = not no_cache
    from tuner.data.pipeline import compute

    try:
        stats = compute(req)
    except LookupError as exc:
        _fail(f"{config}: {exc.args[0] if exc.args else exc}")
    bad = any(r.problems or r.status == "failed" for r in stats.reports)
    if as_json:
        out = stats.to_dict()
        out["config"] = config
        out["suggested_cutoff_len"] = suggested_cutoff(stats)
        out["suggested_cutoff_rule"] = f"p90 of total lengths rounded up to a multiple of {ROUND_TO}"
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        render(stats, config, _console(), bins=bins)
    sys.exit(1 if bad else 0)


def unique_problems(stats: DatasetStats) -> list[tuple[str, Any]]:
    """Each dataset's problems once, even when it is both a training and an evaluation dataset."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for r in stats.reports:
        for p in r.problems:
            key = (r.name, p.kind, p.message)
            if key not in seen:
                seen.add(key)
                out.append((r.name, p))
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{round(v):,}"


def render(stats: DatasetStats, config: str, console: Console, *, bins: int = 20) -> None:
    from rich.table import Table
    from rich.text import Text

    req = stats.request
    console.print(Text(f"Dataset statistics: {config}", style="bold"))
    console.print(Text(f"tokenizer: {req.tokenizer.describe()}"))
    note = f" ({stats.template.note})" if stats.template.note else ""
    pack = " (packing: LLaMA-Factory truncates at cutoff_len - 1)" if req.packing_explicit else ""
    console.print(Text(f"template: {stats.template.name}{note}"))
    console.print(Text(f"stage: {req.stage}   cutoff_len: {req.cutoff_len}{pack}   dataset_info: {shown(req.info.path, req.cwd)}"))
    console.print()

    t = Table(title="Datasets", title_justify="left", show_edge=False)
    for col in ("name", "split", "format", "files", "rows", "samples", "status"):
        t.add_column(col, justify="right" if col in ("rows", "samples") else "left")
    for r in stats.reports:
        status = r.status + (" (cached)" if r.cached else "")
        if r.reason:
            status += f": {r.reason}"
        if r.problems:
            status += f", {len(r.problems)} problem(s)"
        files = ", ".join(Path(f).name for f in r.files[:3]) + (" ..." if len(r.files) > 3 else "")
        split = "train" if r.key == "dataset" else "eval"
        t.add_row(Text(r.name), split, r.formatting or "-", Text(files or "-"), f"{r.rows:,}", f"{r.samples:,}", Text(status))
    console.print(t)
    console.print()

    for split, s in (("train", stats.train), ("eval", stats.eval)):
        if s is None or s.count == 0:
            continue
        lt = Table(title=f"Token lengths ({split}: {s.count:,} samples, {s.multi_turn:,} multi-turn)",
                   title_justify="left", show_edge=False)  # fmt: skip
        lt.add_column("")
        for c in ("p50", "p90", "p95", "p99", "max", "mean"):
            lt.add_column(c, justify="right")
        for which in ("prompt", "response", "total"):
            p = s.percentiles(which)
            lt.add_row(which, *(_fmt(p.get(c)) for c in ("p50", "p90", "p95", "p99", "max", "mean")))
        console.print(lt)
        tr = stats.truncation(split=split)
        console.print(
            f"at cutoff_len {tr.cutoff_len}: {tr.truncated:,} samples truncated ({100 * tr.share(tr.truncated):.1f}%), "
            f"{tr.response_truncated:,} with a shortened last response, {tr.response_lost:,} with it cut away entirely"
            + (f", {tr.turns_lost:,} losing whole turns" if tr.turns_lost else "")
        )
        if split == "train":
            sug = suggested_cutoff(stats)
            if sug is not None:
                at = stats.truncation(sug - (1 if req.packing_explicit else 0))
                whole = max(ROUND_TO, math.ceil((int(s.total.max()) + (1 if req.packing_explicit else 0)) / ROUND_TO) * ROUND_TO)
                console.print(
                    f"suggested cutoff_len: {sug} (p90 rounded up to a multiple of {ROUND_TO}; truncates "
                    f"{100 * at.share(at.truncated):.1f}%); {whole} keeps every sample whole"
                )
            console.print()
            _histogram(console, s, tr.cutoff_len, bins)
        console.print()

    problems = unique_problems(stats)
    if problems:
        console.print(Text("Problems", style="bold red"))
        for name, p in problems:
            console.print(Text(f"  {name}: {p.summary()}", style="red" if p.fatal else "yellow"))
            if p.hint:
                console.print(Text(f"      hint: {p.hint}"))
    for r in stats.reports:
        if r.media_rows:
            console.print(Text(f"note: {r.name}: {r.media_rows:,} rows have images/videos/audios; their tokens are not counted"))
    console.print(f"computed in {stats.seconds:.2f} s", style="dim")


def _histogram(console: Console, s: Any, cutoff: int, bins: int) -> None:
    from rich.text import Text

    buckets = s.histogram(bins=bins)
    if not buckets:
        return
    top = max(c for _, _, c in buckets) or 1
    width = 40
    console.print(Text("total length histogram (▲ marks cutoff_len)", style="bold"))
    label_w = len(f"{buckets[-1][1]:,}") * 2 + 3
    for lo, hi, c in buckets:
        bar = "█" * max(1 if c else 0, round(width * c / top))
        mark = " ▲" if lo <= cutoff <= hi else ""
        label = f"{lo:,}-{hi:,}".rjust(label_w)
        style = "red" if lo > cutoff else None
        line = Text(f"{label} │")
        line.append(bar.ljust(width), style=style)
        line.append(f" {c:,}{mark}")
        console.print(line)
    if cutoff > buckets[-1][1]:
        console.print(f"{'':>{label_w}}   (cutoff_len {cutoff:,} is above the longest sample)")
