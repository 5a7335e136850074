"""The study report: ``report.md`` with two PNG plots (the Pareto front of tokens/s against rank, and the memory
headroom of every trial), written next to ``tuned.yaml``.

Every number says how it was obtained: *measured* by a trial, *estimated* by the memory model, or *calibrated*
(the estimate corrected by measured trials).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.search.candidates import Pool
from tuner.search.policy import Choice, baseline_of, pareto_front
from tuner.search.records import DUPLICATE, PRUNED, TrialRecord
from tuner.search.sizes import format_bytes

if TYPE_CHECKING:
    from tuner.search.space import SearchSpace

GIB = 1024**3


@dataclass
class ReportContext:
    """What the report says about the study beyond its trials."""

    model: str
    hardware: str
    device: str  # cuda | cpu
    ceiling_bytes: int
    ceiling_fraction: float
    memory_total_bytes: int
    memory_method: str  # how peaks were measured
    global_batch: int
    world_size: int
    cutoff_len: int
    cutoff_source: str
    ranks: Sequence[int]
    is_lora: bool
    study_name: str
    storage: str
    stop_reason: str
    elapsed_s: float
    resume_command: str = ""
    tuned_yaml: str | None = None
    deepspeed_json: str | None = None
    lint_summary: str = ""
    changes: list[str] = field(default_factory=list)
    calibration: str = ""
    notes: list[str] = field(default_factory=list)
    space_size: int = 0
    noise: str = ""  # the study's measurement noise in words (tuner.trial.stats.Summary)
    race_note: str = ""  # how racing ended
    target_ci: float = 0.02
    space: SearchSpace | None = None  # for the dimension table (labels, which dimensions to show)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def _mb(v: int | None) -> str:
    return format_bytes(v, unit="GiB") if v is not None and v >= 256 * 1024**2 else format_bytes(v)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _dims(lora: bool, space: SearchSpace | None = None) -> list[Any]:
    """The dimensions the report shows: the space's, else every dimension (the rank only for LoRA)."""
    from tuner.search.space import DIMENSIONS

    if space is not None:
        return space.shown()
    return [d for d in DIMENSIONS if d.field != "rank" or lora]


def _dim_label(d: Any) -> str:
    return "micro batch × accumulation" if d.field == "micro" else d.label


def _config_cells(r: Any, lora: bool, space: SearchSpace | None = None) -> list[str]:
    dims = _dims(lora, space)
    if r is None:
        return ["-"] * len(dims)
    cells = []
    for d in dims:
        v = r.point.get(d)
        if d.field == "micro":
            cells.append(f"{v} × {r.grad_accum if r.grad_accum is not None else '?'}")
        else:
            cells.append(d.show(v))
    return cells


def _tps_cell(r: Any) -> str:
    """A point's or a run's tokens/s with its 95% interval (a bare figure when it has none)."""
    e = getattr(r, "estimate", None)
    if e is not None:
        return r.interval_text()
    m = r.measurement if isinstance(r, TrialRecord) else None
    if m is None:
        return "-"
    if m.exact:
        return f"{m.median:,.0f}"
    return f"{m.median:,.0f} [{m.lo:,.0f}, {m.hi:,.0f}] n={m.n}"


def plot_pareto(records: Sequence[TrialRecord], choice: Choice | None, path: Path) -> Path:
    """Tokens/s against LoRA rank for every feasible point (with its 95% interval), the Pareto front joined, the
    choice starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pool = Pool.build(records)
    feas = pool.feasible()
    front = pareto_front(pool)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    if feas:
        xs = [c.point.rank for c in feas]
        ys = [c.tokens_per_s or 0.0 for c in feas]
        lo = [max(0.0, y - (c.estimate.lo if c.estimate else y)) for c, y in zip(feas, ys, strict=True)]
        hi = [max(0.0, (c.estimate.hi if c.estimate else y) - y) for c, y in zip(feas, ys, strict=True)]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", ms=5, color="#9bb7d4", ecolor="#c5d5e6", capsize=2,
                    label="feasible points (95% interval)", zorder=2)  # fmt: skip
    if front:
        pts = sorted(front, key=lambda c: c.point.rank)
        ax.plot([c.point.rank for c in pts], [c.tokens_per_s or 0.0 for c in pts], "-o", color="#1f5fa8", lw=1.6,
                ms=6, label="Pareto front", zorder=3)  # fmt: skip
    base = pool.baseline()
    if base is not None and base.feasible:
        ax.scatter([base.point.rank], [base.tokens_per_s or 0.0], marker="s", s=70, color="#888888",
                   label=f"baseline (#{base.number})", zorder=4)  # fmt: skip
    if choice is not None:
        ax.scatter([choice.record.point.rank], [choice.record.tokens_per_s or 0.0], marker="*", s=260, color="#e8a317",
                   edgecolors="black", linewidths=0.6, label=f"chosen (#{choice.record.number})", zorder=5)  # fmt: skip
    ranks = sorted({r.point.rank for r in records}) or [1]
    if min(ranks) > 0:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks)
        ax.set_xticklabels([str(r) for r in ranks])
    ax.set_xlabel("LoRA rank")
    ax.set_ylabel("tokens/s (measured)")
    ax.set_title("Throughput against rank: feasible points")
    ax.grid(alpha=0.3)
    if not feas:
        ax.text(0.5, 0.5, "no feasible trial", transform=ax.transAxes, ha="center", va="center")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_memory(records: Sequence[TrialRecord], ceiling_bytes: int, memory_total: int, path: Path) -> Path:
    """Peak memory of every trial against the ceiling: measured bars, estimated (hatched) where nothing was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in records if r.fate != DUPLICATE]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.32 * len(shown) + 2), 4.5), dpi=110)
    colors = {"ok": "#4c9a4c", "over_budget": "#c0392b", "oom": "#c0392b", PRUNED: "#bbbbbb"}
    unit = GIB if ceiling_bytes >= 2 * GIB else 1024**2
    uname = "GiB" if unit == GIB else "MiB"
    top = max(ceiling_bytes, memory_total)
    for i, r in enumerate(shown):
        measured = r.peak_bytes is not None
        value = r.peak_bytes if r.peak_bytes is not None else (r.calibrated_bytes or r.predicted_bytes or 0)
        top = max(top, value)
        color = colors.get(r.fate, "#e67e22")
        ax.bar(i, value / unit, color=color if measured else "white", edgecolor=color, hatch=None if measured else "//",
               linewidth=1.0)  # fmt: skip
    ax.axhline(ceiling_bytes / unit, color="#c0392b", ls="--", lw=1.2, label=f"ceiling {ceiling_bytes / unit:.1f} {uname}")
    if memory_total:
        ax.axhline(memory_total / unit, color="#555555", ls=":", lw=1.0, label=f"device / budget {memory_total / unit:.1f} {uname}")
    ax.set_ylim(0, top / unit * 1.3)  # room for the legends above the bars
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels([f"#{r.number}" for r in shown], rotation=90 if len(shown) > 14 else 0, fontsize=8)
    ax.set_ylabel(f"peak memory per device ({uname})")
    from matplotlib.patches import Patch

    ax.set_title("Peak memory per trial against the ceiling")
    ax.add_artist(ax.legend(handles=[
        Patch(facecolor="#4c9a4c", label="measured, feasible"), Patch(facecolor="#c0392b", label="measured, over"),
        Patch(facecolor="#e67e22", label="crashed / timed out"),
        Patch(facecolor="white", edgecolor="#888888", hatch="//", label="estimated (not run)"),
    ], loc="upper left", fontsize=7))  # fmt: skip
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def render_markdown(records: Sequence[TrialRecord], choice: Choice | None, ctx: ReportContext) -> str:
    lora = ctx.is_lora
    space = ctx.space
    pool = Pool.build(records, ctx.ceiling_bytes)
    ran = [r for r in records if r.ran]
    explored = [r for r in ran if r.origin not in ("race", "gain")]
    remeasured = [r for r in ran if r.origin in ("race", "gain")]
    pruned = [r for r in records if r.fate == PRUNED]
    repeats = [r for r in records if r.fate == DUPLICATE]
    others = [r for r in records if not r.ran and r.fate not in (PRUNED, DUPLICATE)]
    out: list[str] = ["# cfgtune auto report", ""]
    out += [
        f"- **Model**: {ctx.model}",
        (f"- **Hardware**: {ctx.hardware}; {ctx.world_size} {'GPU' if ctx.device == 'cuda' else 'process'}"
        f"{'s' if ctx.world_size > 1 else ''}"),
        (f"- **Ceiling**: {ctx.ceiling_fraction:.0%} of {format_bytes(ctx.memory_total_bytes)} = "
        f"**{format_bytes(ctx.ceiling_bytes)}** per device; a point is feasible iff its measured peak ({ctx.memory_method}; "
        "the median over its runs) is at or below it"),
        (f"- **Fixed**: global batch {ctx.global_batch} (micro batch × accumulation × {ctx.world_size}), "
        f"cutoff_len {ctx.cutoff_len} ({ctx.cutoff_source}), every sequence padded to it (worst case)"),
        (f"- **Search**: {len(ran)} trial(s) run ({len(explored)} exploring, {len(remeasured)} re-measuring finalists "
        f"and the baseline), {len(pruned)} pruned without running, {len(repeats)} repeated proposal(s) answered from "
        f"earlier trials; space of {ctx.space_size} points; stopped: {ctx.stop_reason}; {ctx.elapsed_s / 60:.1f} min"),
        f"- **Study**: `{ctx.study_name}` in `{ctx.storage}`" + (f"; continue with `{ctx.resume_command}`" if ctx.resume_command else ""),
        f"- **Measurement noise**: {ctx.noise or 'n/a'}",
        "",
    ]
    out += ["## Choice", ""]
    base = baseline_of(pool)
    dims = _dims(lora, space)
    if choice is None:
        out += [("**No feasible configuration was found**: every trial ran out of memory, passed the ceiling, or "
                "failed (see the table below). Lower `--global-batch` or `cutoff_len`, raise `--vram-ceiling`, "
                "or use more GPUs."), ""]  # fmt: skip
    else:
        c = choice.record
        head = ["", "baseline (hand-written recipe)", "chosen"]
        rows = [["trial", f"#{base.number}" if base else "-", f"#{c.number}"]]
        for d, b, x in zip(dims, _config_cells(base, lora, space), _config_cells(c, lora, space), strict=True):
            rows.append([_dim_label(d) + (" (alpha = 2 × rank)" if d.field == "rank" else ""), b, x])
        base_feasible = base is not None and base.feasible
        rows.append(["peak memory (measured)",
                     f"{_mb(base.peak_bytes)} ({_pct(base.peak_fraction)} of ceiling)" if base and base.peak_bytes else (base.fate_text if base else "-"),
                     f"{_mb(c.peak_bytes)} ({_pct(c.peak_fraction)} of ceiling)"])  # fmt: skip
        rows.append(["tokens/s (measured, 95% interval)", _tps_cell(base) if base_feasible else "-", _tps_cell(c)])
        rows.append(["runs", str(getattr(base, "n_runs", 0)) if base_feasible else "-", str(c.n_runs)])
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        out += ["| " + " | ".join(_cell(x) for x in row) + " |" for row in rows]
        out.append("")
        g = choice.gain
        if g is not None and c is not base:
            interval = "" if g.lo == g.hi else f" (95% interval {g.lo:.2f}-{g.hi:.2f}×; {g.method})"
            out.append(f"**Gain over the baseline: {g.center:.2f}×** tokens/s ({(g.center - 1):+.0%}){interval}, "
                       "at the same global batch.")  # fmt: skip
        elif g is not None:
            out.append("**Gain over the baseline: 1.00×**: the hand-written recipe is the choice.")
        elif base is None:
            out.append("The baseline did not run, so there is no gain to report.")
        else:
            out.append(f"The baseline (trial #{base.number}) was not feasible ({base.fate_text}: {base.reason}), so every "
                       "feasible configuration is a gain over a recipe that would not run.")  # fmt: skip
        best = choice.best
        if best is not c:
            out.append(f"The fastest feasible point is trial #{best.number} ({_tps_cell(best)} tokens/s, rank {best.point.rank}).")
        out += ["", (f"**Policy** `{choice.policy.name}`: {choice.policy.describe()}. {choice.explanation}. "
                "Change it with `--policy throughput|balanced|quality` and `--within`.")]  # fmt: skip
        out += ["", "### Why this point and not its neighbours", "",
                ("Each row is a measured, feasible point one dimension away from the choice. The ratio is the choice's "
                 "tokens/s over the neighbour's with its 95% interval: paired when the two ran back to back in two "
                 "or more rounds, else from their estimates over all runs. A choice that does not beat a cheaper "
                 "neighbour (checkpointing off, a smaller rank under `throughput`, less ZeRO) beyond noise gives way "
                 "to it."), ""]  # fmt: skip
        if choice.comparisons:
            out += ["| neighbour | differs in | its tokens/s | choice / neighbour | verdict |", "|---|---|---|---|---|"]
            for cmp in choice.comparisons:
                o = cmp.other
                d = next((d for d in dims if _dim_label(d) == cmp.dimension or d.label == cmp.dimension), None)
                what = f"{cmp.dimension} {d.show(o.point.get(d))}" if d is not None else cmp.dimension
                out.append(f"| #{o.number} | {_cell(what)} | {_tps_cell(o)} | {cmp.ratio.text()} | {_cell(cmp.verdict)} |")
        else:
            out.append("No neighbour of the choice was measured (its neighbours were pruned, over the ceiling or not tried).")
        for line in choice.gave_way:
            out += ["", f"- {line}"]
        if ctx.race_note:
            out += ["", f"Racing: {ctx.race_note}."]
        if ctx.tuned_yaml:
            out += ["", f"**Tuned config**: `{ctx.tuned_yaml}`" + (f" with `{ctx.deepspeed_json}`" if ctx.deepspeed_json else "")
                    + (f"; cfglint: {ctx.lint_summary}" if ctx.lint_summary else "")]  # fmt: skip
            if ctx.changes:
                out += ["", "Changed keys:", ""] + [f"- `{ch}`" for ch in ctx.changes]
        out.append("")

    if lora:
        out += ["## Pareto front: tokens/s against LoRA rank", "",
                ("Rank is a quality choice, so it is kept as a second objective: these feasible points are the ones no "
                "other point beats on both speed and rank (by estimate)."), "", "![Pareto front](pareto.png)", ""]  # fmt: skip
        front = pareto_front(pool)
        if front:
            cols = ["trial", "rank", "tokens/s (95% interval)", "runs", "peak (measured)"] + [
                _dim_label(d) for d in dims if d.field != "rank"]  # fmt: skip
            out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for c in front:
                cells = [f"#{c.number}", str(c.point.rank), _tps_cell(c), str(c.n_runs), _mb(c.peak_bytes)]
                cells += [x for d, x in zip(dims, _config_cells(c, lora, space), strict=True) if d.field != "rank"]
                out.append("| " + " | ".join(_cell(x) for x in cells) + " |")
            out.append("")
    else:
        out += ["## Throughput", "", "![Throughput](pareto.png)", ""]

    out += ["## Memory headroom", "", "![Memory headroom](memory.png)", ""]

    out += ["## Every trial", "",
            ("Peaks are per device. *Estimated* is the memory model's number, *calibrated* that number corrected by the "
            "trials measured before this one was decided, *measured* what the trial process reached. tokens/s is the "
            "run's median over its measured steps with its 95% interval and the number of steps (n). Origins `race` "
            "and `gain` are re-measurements (round in brackets), `recheck` a second run of a peak within the memory "
            "noise of the ceiling."), ""]  # fmt: skip
    cols = ["#", "origin", *(_dim_label(d) if d.field != "micro" else "micro × accum" for d in dims)] + [
        "estimated", "calibrated", "measured", "of ceiling", "tokens/s", "fate", "reason"]  # fmt: skip
    out.append("| " + " | ".join(cols) + " |")
    out.append("|" + "---|" * len(cols))
    for r in sorted([*ran, *pruned, *others], key=lambda r: r.number):
        origin = (r.origin or "-") + (f" [{r.round_id}]" if r.round_id is not None else "")
        cells = [str(r.number), origin] + _config_cells(r, lora, space) + [
            _mb(r.predicted_bytes), _mb(r.calibrated_bytes), _mb(r.peak_bytes), _pct(r.peak_fraction),
            _tps_cell(r), r.fate_text, _cell(r.reason[:160]) if r.reason else ""]  # fmt: skip
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    out.append("")
    if repeats:
        pairs = ", ".join(f"#{r.number} → #{r.duplicate_of}" for r in repeats if r.duplicate_of is not None)
        out += [f"Repeated proposals (not run, answered with the earlier trial's values): {pairs or len(repeats)}.", ""]
    out += ["## How the numbers were obtained", "",
            (f"- **tokens/s** (measured): each trial trains a randomly initialised model of the same architecture on "
            f"batches of {ctx.cutoff_len}-token sequences, one optimizer step (accumulation × micro-steps + the optimizer "
            "step) at a time, over all ranks. Leading steps slower than the rest (warm-up) are detected and skipped; "
            f"the trial measures until the 95% interval of the steps' median is within ±{ctx.target_ci:.0%} or its "
            "time cap passes. A point measured several times is the geometric mean of its runs, with an interval "
            "that also carries the run-to-run noise."),
            ("- **choice**: by the policy on these estimates; the points the measurements could not tell apart from "
            "the choice were re-measured interleaved (race rounds), and the baseline was re-measured back to back "
            "with the choice (gain rounds), so the gain is a paired ratio."),
            f"- **peak** (measured): {ctx.memory_method}, per device, the largest over ranks; the median over a point's runs.",
            ("- **estimated / calibrated**: `tuner.memory.estimate`, corrected per memory regime by the trials measured so far "
            "(a fitted line once a regime has two measurements, a ratio before that). Points whose calibrated estimate is "
            "far over the ceiling, or that need at least the memory of a point confirmed over it, are pruned without "
            "running; a single run over the ceiling by less than the memory noise is re-checked first."),
            f"- **estimator calibration**: {ctx.calibration or 'n/a'}"]  # fmt: skip
    for n in ctx.notes:
        out.append(f"- {n}")
    out.append("")
    return "\n".join(out)


def write_report(records: Sequence[TrialRecord], choice: Choice | None, ctx: ReportContext, output_dir: Path) -> dict[str, Path]:
    """Write report.md, pareto.png and memory.png; returns their paths."""
    from tuner.lint.fixes import write_atomic

    output_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Any] = {}
    paths["pareto"] = plot_pareto(records, choice, output_dir / "pareto.png")
    paths["memory"] = plot_memory(records, ctx.ceiling_bytes, ctx.memory_total_bytes, output_dir / "memory.png")
    md = render_markdown(records, choice, ctx)
    paths["report"] = output_dir / "report.md"
    write_atomic(paths["report"], md)
    return paths
