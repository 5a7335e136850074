#!/usr/bin/env python3
"""How good is `cfgtune auto`'s choice, how stable across seeds, and how cheap? Auto against a repeated grid.

For one model (default on the CPU: a Llama-style stand-in, 4 layers, hidden 256, vocabulary 32000; on a GPU:
Qwen2.5-1.5B), LoRA SFT, the same search space is measured two ways with the same trial runner and settings:

* **grid**: every point, ``--grid-repeats`` times, in passes over the whole grid in a shuffled order (so a slow
  spell of the machine spreads over all points instead of sinking one). Each point's figure is its runs
  combined (geometric mean, with an interval carrying the run-to-run noise) - the ground truth. Feasibility is
  the same rule as auto's: the median peak over the runs within the ceiling.
* **auto**: `cfgtune auto`'s search (planner, sampler, racing, the gain rounds), once per seed, each in a fresh
  study, with a total budget of ``--budget`` of the grid's points (exploration + re-measurements).

The choice of each seed is scored by the grid's repeated measurement of the chosen point: *choice / grid best*
(the grid's best feasible point under the throughput policy, or the grid's own choice under ``--policy``). It
also records the trials (runs) and wall time of each seed, whether the choices of all seeds agree within noise
(the grid's intervals of the chosen points overlap), and auto's own estimate of its choice and of the gain.

Targets (issue 13): on the CPU, every seed within 5% of the grid's best with at most half the grid's trials,
and the seeds' choices agreeing within noise; on a GPU, at least 98% with at most a quarter.

The CPU memory budget defaults to ``auto``: after the grid, the ceiling is set so that about
``--rule-out`` of the points (default 7 of 40, the issue's setting) are over it, which gives the memory side
something to do.

    python benchmarks/tuner_quality.py --out bench/tq              # CPU stand-in (or CUDA when present)
    python benchmarks/tuner_quality.py --out bench/tq --quick      # a smoke run: 16 points, 2 repeats, 1 seed
    python benchmarks/tuner_quality.py --out bench/tq --device cuda --models qwen2.5-1.5b --budget 0.25

Grid runs are cached in OUT/<model>/grid.json, so an interrupted run continues where it stopped (delete it to
measure again). Writes OUT/results.json and OUT/results.md; ``--record`` appends the table to
benchmarks/RESULTS.md. The exact command and the load average are printed and recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: The CPU stand-in of issue 13: Llama-style, 4 layers, hidden 256 (cutoff 64 and global batch 8 by default).
STANDIN = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "intermediate_size": 688,
    "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 32000,
    "max_position_embeddings": 2048, "torch_dtype": "float32", "tie_word_embeddings": False,
}  # fmt: skip

TARGETS = {"cpu": (0.95, 0.5), "cuda": (0.98, 0.25)}  # (share of the grid's best, share of its trials)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cuda_available() -> tuple[bool, str]:
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "CUDA is not available"
    return True, torch.cuda.get_device_name(0)


# -- the grid ---------------------------------------------------------------------------------------------------------


def run_grid(prep: Any, out_dir: Path, repeats: int, trial_timeout: float, log: Any) -> tuple[list[Any], float, int]:
    """Every point ``repeats`` times in shuffled passes (cached in grid.json); returns the records (one per run),
    the wall time of the runs made now and before, and how many runs were made now."""
    from tuner.search.loop import judge_result
    from tuner.search.records import TrialRecord
    from tuner.trial.runner import run_trial
    from tuner.trial.spec import TrialResult

    cache_path = out_dir / "grid.json"
    cache: dict[str, Any] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    runs: dict[str, list[dict[str, Any]]] = cache.setdefault("runs", {})
    wall = float(cache.get("wall_s", 0.0))
    space = prep.space
    points = list(space.points())
    made = 0
    # The grid's trials are judged against no ceiling (the budget may be chosen from them afterwards); the CPU
    # watchdog stops a trial far over the limit, so the limit the trials carry is generous.
    limit = prep.device.memory_total * 4 if prep.device.kind == "cpu" else None
    ooms: list[Any] = []
    for rep in range(repeats):
        order = points[:]
        random.Random(1000 + rep).shuffle(order)
        for i, p in enumerate(order):
            have = runs.setdefault(p.key, [])
            if len(have) > rep:
                continue
            implied = next((o for o in ooms if p.needs_at_least_as_much_memory_as(o)), None)
            if implied is not None:  # memory is monotone in these knobs: no run needed to know it
                have.append(TrialResult(status="oom", reason=f"implied: needs at least the memory of {implied.key}").to_dict())
                continue
            spec = space.spec(p)
            if limit is not None:
                import dataclasses

                spec = dataclasses.replace(spec, memory_limit_bytes=limit)
            t0 = time.monotonic()
            result = run_trial(spec, timeout_s=trial_timeout, workdir=(out_dir / "grid-trials" / f"{p.key}-{rep}").resolve())
            wall += time.monotonic() - t0
            made += 1
            have.append(result.to_dict())
            if result.status == "oom":
                ooms.append(p)
            cache["wall_s"] = wall
            cache_path.write_text(json.dumps(cache, indent=1))
            tps = (result.throughput or {}).get("median")
            print(f"  grid pass {rep + 1}/{repeats} {i + 1:>3}/{len(order)} {p.key:<24} {result.status:<12} "
                  f"{(tps or 0):>10,.0f} tok/s  {((result.peak_bytes or 0) / 2**20):8.0f} MiB  load {load_average()}",
                  file=log, flush=True)  # fmt: skip
    records = []
    n = 0
    for p in points:
        for d in runs.get(p.key, [])[:repeats]:
            spec = space.spec(p)
            rec = TrialRecord(number=n, point=p, fate="", origin="grid", spec=spec, ceiling_bytes=prep.ceiling_bytes,
                              grad_accum=spec.gradient_accumulation_steps)  # fmt: skip
            judge_result(rec, spec, TrialResult.from_dict(d), prep.ceiling_bytes)
            records.append(rec)
            n += 1
    return records, wall, made


def auto_budget_bytes(grid_records: list[Any], rule_out: float) -> int:
    """A ceiling that about ``rule_out`` of the grid's points exceed (by their median peaks)."""
    from statistics import median

    peaks: dict[str, list[int]] = {}
    for r in grid_records:
        if r.peak_bytes:
            peaks.setdefault(r.point.key, []).append(int(r.peak_bytes))
    meds = sorted(int(median(v)) for v in peaks.values())
    if not meds:
        raise SystemExit("tuner_quality: the grid measured no peak; see the grid trials' logs")
    k = max(0, min(len(meds) - 1, len(meds) - 1 - int(round(rule_out * len(meds)))))
    # halfway between the largest point that stays feasible and the next one up
    nxt = meds[k + 1] if k + 1 < len(meds) else meds[k] * 1.05
    return int((meds[k] + nxt) / 2)


# -- auto --------------------------------------------------------------------------------------------------------------


@dataclass
class SeedResult:
    seed: int
    choice: str | None
    choice_grid_tps: float | None  # the grid's estimate of the chosen point
    share_of_grid_best: float | None
    share_interval: list[float] | None  # 95% interval of that share from the grid's runs (the best is a noisy max too)
    share_of_grid_choice: float | None
    runs: int  # every trial process: exploration + race + gain
    exploration: int
    remeasured: int
    pruned: int
    repeats: int
    wall_s: float
    auto_tps: float | None  # auto's own estimate of its choice
    auto_interval: list[float] | None
    gain: float | None
    gain_interval: list[float] | None
    race_note: str
    load_before: str
    load_after: str


def run_auto(prep: Any, out_dir: Path, seed: int, n_trials: int, race: int, trial_timeout: float, policy: Any,
             log: Any) -> tuple[list[Any], float, str]:  # fmt: skip
    from tuner.search.prune import estimate_peak
    from tuner.search.study import Budget, Search, open_study
    from tuner.search.view import PlainView
    from tuner.trial.runner import run_trial

    db = out_dir / f"auto-seed{seed}.db"
    db.unlink(missing_ok=True)  # a fresh study every run: its wall time is a figure of merit
    study, _ = open_study(f"sqlite:///{db.resolve()}", "bench", space=prep.space, meta=prep.meta(), resume=False, seed=seed)
    search = Search(study=study, space=prep.space, ceiling_bytes=prep.ceiling_bytes, runner=run_trial,
                    trials_dir=out_dir / f"auto-seed{seed}-trials",
                    budget=Budget(n_trials=n_trials, trial_timeout_s=trial_timeout, race_trials=race),
                    estimator=estimate_peak, view=PlainView(log), baseline=prep.baseline, policy=policy)  # fmt: skip
    t0 = time.monotonic()
    outcome = search.run()
    return outcome.records, time.monotonic() - t0, outcome.race_note


# -- one model -----------------------------------------------------------------------------------------------------


@dataclass
class ModelResult:
    model: str
    device: str
    space_size: int
    grid_repeats: int
    grid_runs_now: int
    grid_wall_s: float
    ceiling_bytes: int
    feasible_points: int
    grid_best: str | None
    grid_best_tps: float | None
    grid_best_interval: list[float] | None
    grid_choice: str | None
    grid_choice_tps: float | None
    grid_noise: str
    budget_runs: int
    n_trials: int
    race_trials: int
    policy: str
    seeds: list[SeedResult] = field(default_factory=list)
    choices_agree: bool | None = None
    agreement_note: str = ""

    def checks(self) -> dict[str, bool | None]:
        share_target, trial_target = TARGETS["cuda" if self.device == "cuda" else "cpu"]
        out: dict[str, bool | None] = {}
        for s in self.seeds:
            out[f"seed {s.seed}: choice >= {share_target:.0%} of the grid's best"] = (
                None if s.share_of_grid_best is None else s.share_of_grid_best >= share_target
            )
            out[f"seed {s.seed}: runs <= {trial_target:.0%} of the grid's points"] = s.runs <= trial_target * self.space_size + 1e-9
        out["the seeds' choices agree within noise"] = self.choices_agree
        return out


def prepare_model(model: str, args: argparse.Namespace, out_dir: Path, budget: int | None) -> Any:
    from tuner.search.setup import AutoOptions, prepare
    from tuner.search.space import parse_int_list

    opts = AutoOptions(model=model, device=args.device, cutoff_len=args.cutoff, global_batch=args.global_batch,
                       ranks=parse_int_list(args.ranks, "--ranks"), liger=not args.no_liger, output_dir=out_dir,
                       memory_budget=budget if args.device == "cpu" else None, vram_ceiling=0.90,
                       target_ci=args.target_ci, measure_time_s=args.measure_time, cwd=out_dir)  # fmt: skip
    return prepare(opts)


def bench_model(model: str, args: argparse.Namespace, log: Any) -> ModelResult:
    from tuner.launch.emit import safe_name
    from tuner.search.candidates import Pool
    from tuner.search.policy import Policy, choose
    from tuner.search.sizes import format_bytes, parse_size

    if model == "standin":
        model_dir = args.out / "standin-llama"
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.json").write_text(json.dumps(STANDIN, indent=1))
        model = str(model_dir.resolve())
    out_dir = args.out / safe_name(Path(model).name)
    out_dir.mkdir(parents=True, exist_ok=True)
    auto_budget = args.device == "cpu" and args.memory_budget == "auto"
    # the grid runs against a generous budget; the ceiling is set afterwards (auto) or given
    first_budget = 64 * 1024**3 if auto_budget else (parse_size(args.memory_budget) if args.device == "cpu" else None)
    prep = prepare_model(model, args, out_dir, first_budget)
    space = prep.space
    print(f"\n== {prep.model.describe()}\n   {prep.device.description}; space {space.size} points; "
          f"grid x{args.grid_repeats}; load {load_average()}", file=log, flush=True)  # fmt: skip
    print("-- grid", file=log, flush=True)
    grid, grid_wall, grid_now = run_grid(prep, out_dir, args.grid_repeats, args.trial_timeout, log)
    if auto_budget:
        ceiling = auto_budget_bytes(grid, args.rule_out)
        budget = int(math.ceil(ceiling / 0.90))
        prep = prepare_model(model, args, out_dir, budget)
        grid, grid_wall, _ = run_grid(prep, out_dir, args.grid_repeats, args.trial_timeout, log)  # cached: re-judged
        print(f"   memory budget {format_bytes(budget)} (ceiling {format_bytes(prep.ceiling_bytes)}): "
              f"about {args.rule_out:.0%} of the points over it", file=log, flush=True)  # fmt: skip
    policy = Policy(args.policy, 0.10)
    gpool = Pool.build(grid, prep.ceiling_bytes)
    feas = gpool.feasible()
    gbest = max(feas, key=lambda c: c.tokens_per_s or 0.0) if feas else None
    gchoice = choose(gpool, policy)
    total = max(2, int(args.budget * space.size))
    race = args.race_trials if args.race_trials is not None else min(8, max(2, total // 3))
    n_trials = max(1, total - race)
    res = ModelResult(
        model=prep.model.name, device=prep.device.kind, space_size=space.size, grid_repeats=args.grid_repeats,
        grid_runs_now=grid_now, grid_wall_s=grid_wall, ceiling_bytes=prep.ceiling_bytes, feasible_points=len(feas),
        grid_best=gbest.key if gbest else None, grid_best_tps=gbest.tokens_per_s if gbest else None,
        grid_best_interval=[gbest.estimate.lo, gbest.estimate.hi] if gbest and gbest.estimate else None,
        grid_choice=gchoice.record.key if gchoice else None,
        grid_choice_tps=gchoice.record.tokens_per_s if gchoice else None, grid_noise=gpool.summary().text(),
        budget_runs=total, n_trials=n_trials, race_trials=race, policy=policy.name,
    )  # fmt: skip
    print(f"   grid: {len(feas)}/{space.size} feasible; best {res.grid_best} {res.grid_best_tps or 0:,.0f} tok/s; "
          f"{res.grid_noise}", file=log, flush=True)  # fmt: skip
    for seed in args.seeds:
        print(f"-- auto, seed {seed}: --n-trials {n_trials} --race-trials {race} (load {load_average()})", file=log, flush=True)
        before = load_average()
        records, wall, race_note = run_auto(prep, out_dir, seed, n_trials, race, args.trial_timeout, policy, log)
        after = load_average()
        apool = Pool.build(records, prep.ceiling_bytes)
        ch = choose(apool, policy)
        c = ch.record if ch else None
        in_grid = gpool.get(c.point) if c is not None else None
        gtps = in_grid.tokens_per_s if in_grid is not None and in_grid.feasible else None
        ran = [r for r in records if r.ran]
        res.seeds.append(SeedResult(
            seed=seed, choice=c.key if c else None, choice_grid_tps=gtps,
            share_of_grid_best=(gtps / res.grid_best_tps) if gtps and res.grid_best_tps else None,
            share_interval=_share_interval(in_grid, gbest),
            share_of_grid_choice=(gtps / res.grid_choice_tps) if gtps and res.grid_choice_tps else None,
            runs=len(ran), exploration=sum(1 for r in ran if r.origin not in ("race", "gain")),
            remeasured=sum(1 for r in ran if r.origin in ("race", "gain")),
            pruned=sum(1 for r in records if r.fate == "pruned"), repeats=sum(1 for r in records if r.fate == "duplicate"),
            wall_s=wall, auto_tps=c.tokens_per_s if c else None,
            auto_interval=[c.estimate.lo, c.estimate.hi] if c is not None and c.estimate else None,
            gain=ch.gain.center if ch and ch.gain else None,
            gain_interval=[ch.gain.lo, ch.gain.hi] if ch and ch.gain else None, race_note=race_note,
            load_before=before, load_after=after,
        ))  # fmt: skip
        s = res.seeds[-1]
        print(f"   seed {seed}: chose {s.choice} = {pct(s.share_of_grid_best)} of the grid's best; {s.runs} runs; "
              f"{s.wall_s / 60:.1f} min; load {before} -> {after}", file=log, flush=True)  # fmt: skip
    chosen = [gpool.get_key(s.choice) for s in res.seeds if s.choice]
    if len(chosen) >= 2 and all(x is not None and x.estimate is not None for x in chosen):
        from tuner.trial.stats import unpaired_ratio

        worst = None
        agree = True
        for i, a in enumerate(chosen):
            for b in chosen[i + 1 :]:
                if a is b:
                    continue
                r = unpaired_ratio(a.estimate, b.estimate)  # type: ignore[union-attr]
                agree &= not r.separated
                if worst is None or abs(math.log(r.center)) > abs(math.log(worst.center)):
                    worst = r
        res.choices_agree = agree
        res.agreement_note = ("the same point" if worst is None else
                              f"largest difference {worst.text()} (grid estimates of the chosen points)")  # fmt: skip
    return res


def _share_interval(choice: Any, best: Any) -> list[float] | None:
    from tuner.trial.stats import unpaired_ratio

    if choice is None or best is None or choice.estimate is None or best.estimate is None or not choice.feasible:
        return None
    if choice is best:
        return [1.0, 1.0]
    r = unpaired_ratio(choice.estimate, best.estimate)
    return [r.lo, r.hi]


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def render(results: list[ModelResult], device: str, args: argparse.Namespace, command: str) -> str:
    lines = [
        f"## Tuner quality ({time.strftime('%Y-%m-%d')}, {device})",
        "",
        f"Command: `{command}`",
        "",
        (f"LoRA SFT, cutoff_len {args.cutoff}, global batch {args.global_batch}, ranks {args.ranks}, ceiling 90%; "
         f"policy `{args.policy}`; trials measure until ±{args.target_ci:.0%} (95%) or {args.measure_time:g} s; grid "
         f"measured {args.grid_repeats}x per point in shuffled passes. Python {platform.python_version()}."),
        "",
    ]
    for r in results:
        lines += [
            f"### {r.model}: {r.space_size} points, {r.feasible_points} feasible under {r.ceiling_bytes / 2**20:,.0f} MiB",
            "",
            f"- grid best: `{r.grid_best}` {r.grid_best_tps or 0:,.0f} tok/s "
            + (f"[{r.grid_best_interval[0]:,.0f}, {r.grid_best_interval[1]:,.0f}]" if r.grid_best_interval else ""),
            f"- grid's own choice under `{r.policy}`: `{r.grid_choice}`; grid noise: {r.grid_noise}",
            f"- grid wall time {r.grid_wall_s / 60:.1f} min ({r.space_size * r.grid_repeats} runs); auto budget "
            f"{r.budget_runs} runs (--n-trials {r.n_trials} --race-trials {r.race_trials})",
            "",
            "| seed | choice | choice / grid best [95%] | choice / grid's choice | runs (explore + re-measure) | pruned | "
            "repeats | wall | auto's estimate | gain over recipe | load before -> after |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in r.seeds:
            est = f"{s.auto_tps:,.0f} [{s.auto_interval[0]:,.0f}, {s.auto_interval[1]:,.0f}]" if s.auto_tps and s.auto_interval else "-"
            gain = f"{s.gain:.2f}x [{s.gain_interval[0]:.2f}, {s.gain_interval[1]:.2f}]" if s.gain and s.gain_interval else "-"
            share = pct(s.share_of_grid_best) + (f" [{s.share_interval[0]:.0%}, {s.share_interval[1]:.0%}]" if s.share_interval else "")
            lines.append(f"| {s.seed} | `{s.choice}` | {share} | {pct(s.share_of_grid_choice)} | "
                         f"{s.runs} ({s.exploration} + {s.remeasured}) | {s.pruned} | {s.repeats} | {s.wall_s / 60:.1f} min | "
                         f"{est} | {gain} | {s.load_before} -> {s.load_after} |")  # fmt: skip
        lines += ["", f"Choices agree within noise: {r.choices_agree} ({r.agreement_note or 'one seed'})", "", "Targets:", ""]
        for name, ok in r.checks().items():
            lines.append(f"- {name}: {'n/a' if ok is None else 'PASS' if ok else 'FAIL'}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="Output directory (grid caches, studies, results).")
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None, help="[default: cuda when available, else cpu]")
    ap.add_argument("--models", default=None, help="Comma-separated model specs [default: standin on the CPU, "
                    "qwen2.5-1.5b on a GPU]; `standin` is the 4-layer Llama stand-in.")  # fmt: skip
    ap.add_argument("--memory-budget", default="auto", help="CPU: the memory budget, or `auto` (see --rule-out).")
    ap.add_argument("--rule-out", type=float, default=7 / 40, help="CPU auto budget: the share of points over the ceiling.")
    ap.add_argument("--cutoff", type=int, default=None, help="[default: 64 on the CPU, 2048 on a GPU]")
    ap.add_argument("--global-batch", type=int, default=None, help="[default: 8 on the CPU, 32 on a GPU]")
    ap.add_argument("--ranks", default="8,16,32,64,128")
    ap.add_argument("--no-liger", action="store_true", help="Leave Liger out of the space even when installed.")
    ap.add_argument("--policy", default="throughput", choices=["throughput", "balanced", "quality"])
    ap.add_argument("--seeds", default="0,1,2", help="Seeds of auto's sampler, one study each.")
    ap.add_argument("--grid-repeats", type=int, default=3, help="Runs per grid point.")
    ap.add_argument("--budget", type=float, default=None, help="auto's runs as a share of the grid's points "
                    "[default: 0.5 on the CPU, 0.25 on a GPU]")  # fmt: skip
    ap.add_argument("--race-trials", type=int, default=None, help="[default: a third of the budget, at most 8]")
    ap.add_argument("--target-ci", type=float, default=0.02)
    ap.add_argument("--measure-time", type=float, default=None, help="[default: 10 s on the CPU, 60 s on a GPU]")
    ap.add_argument("--trial-timeout", type=float, default=600.0)
    ap.add_argument("--quick", action="store_true", help="A smoke run: ranks 8,32 (16 points), 2 grid repeats, "
                    "seed 0, 3 s of measuring per trial.")  # fmt: skip
    ap.add_argument("--record", action="store_true", help="Append the table to benchmarks/RESULTS.md.")
    ap.add_argument("--strict", action="store_true", help="Exit 1 when a target fails.")
    args = ap.parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *(sys.argv[1:] if argv is None else argv)])

    if args.device is None:
        args.device = "cuda" if cuda_available()[0] else "cpu"
    if args.device == "cuda":
        ok, device = cuda_available()
        if not ok:
            print(f"tuner_quality: skipped: {device} (--device cpu runs the CPU stand-in)")
            return 0
    else:
        device = f"CPU ({os.cpu_count()} cores)"
    gpu = args.device == "cuda"
    args.models = args.models or ("qwen2.5-1.5b" if gpu else "standin")
    args.cutoff = args.cutoff or (2048 if gpu else 64)
    args.global_batch = args.global_batch or (32 if gpu else 8)
    args.budget = args.budget if args.budget is not None else TARGETS[args.device][1]
    args.measure_time = args.measure_time or (60.0 if gpu else 10.0)
    if args.quick:  # smaller where not given explicitly
        given = set(sys.argv[1:] if argv is None else argv)
        args.ranks = args.ranks if "--ranks" in given else "8,32"
        args.grid_repeats = args.grid_repeats if "--grid-repeats" in given else 2
        args.seeds = args.seeds if "--seeds" in given else "0"
        args.measure_time = args.measure_time if "--measure-time" in given else 3.0
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    log = sys.stdout
    print(f"tuner_quality: {command}\n  {device}; load average {load_average()}", file=log, flush=True)
    t0 = time.monotonic()
    results = [bench_model(m.strip(), args, log) for m in args.models.split(",") if m.strip()]
    md = render(results, device, args, command) + f"\nTotal wall time {(time.monotonic() - t0) / 60:.1f} min; load average at the end {load_average()}.\n"
    (args.out / "results.md").write_text(md)
    (args.out / "results.json").write_text(json.dumps(
        {"command": command, "device": device, "args": {k: str(v) for k, v in vars(args).items()},
         "results": [{**asdict(r), "checks": r.checks()} for r in results]}, indent=2))  # fmt: skip
    print("\n" + md)
    if args.record:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write("\n" + md + "\n")
    failed = any(ok is False for r in results for ok in r.checks().values())
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
