"""`cfgtune auto`: tune a LLaMA-Factory config with short real training trials, and write the result.

Exit codes: 0 a tuned config was written and lints clean; 1 no feasible configuration, or the tuned config has
lint errors; 2 bad input (no GPU without --device cpu, an unknown model, a malformed config, a study that
exists without --resume); 130 interrupted (what was measured is kept: --resume continues).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from tuner.search.policy import DEFAULT_WITHIN, POLICIES, POLICY_HELP

if TYPE_CHECKING:
    from tuner.search.policy import Choice, Policy
    from tuner.search.setup import Prepared
    from tuner.search.study import SearchOutcome

PROG = "cfgtune auto"


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"{PROG}: error: {message}", err=True)
    sys.exit(code)


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    from tuner.search.sizes import parse_size

    ctx.meta.setdefault("cfgtune.raw", {})[param.name] = value  # shown as written in the resume command
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _ranks(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    from tuner.search.space import SpaceError, parse_int_list

    try:
        return parse_int_list(value, "--ranks")
    except SpaceError as exc:
        raise click.BadParameter(str(exc)) from None


@dataclass
class Finished:
    exit_code: int
    choice: Choice | None
    paths: dict[str, Path]
    lint_errors: int = 0


def resume_command(ctx: click.Context) -> str:
    """The command line that continues this study: the options given, plus --resume."""
    parts = ["cfgtune", "auto"]
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or p.name in ("resume", "help"):
            continue
        value = ctx.params.get(p.name or "")
        source = ctx.get_parameter_source(p.name or "")
        if source is not None and source.name != "COMMANDLINE":
            continue
        flag = p.opts[0]
        if p.is_flag:
            if value:
                parts.append(flag)
            elif p.secondary_opts:
                parts.append(p.secondary_opts[0])
        elif value is not None:
            raw = ctx.meta.get("cfgtune.raw", {}).get(p.name, value)
            if isinstance(raw, tuple):
                raw = ",".join(str(v) for v in raw)
            parts += [flag, str(raw)]
    parts.append("--resume")
    return " ".join(shlex.quote(x) for x in parts)


@click.command("auto", context_settings={"max_content_width": 110})
@click.option("--model", "model", metavar="SPEC", help="The model: a catalog alias (qwen2.5-7b, deepseek-32b, ...), a "
              "local directory with config.json, or a hub id already in the Hugging Face cache. Only its architecture "
              "is used; no weights are read. [default: model_name_or_path of --config]")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), metavar="BASE.yaml",
              help="A LLaMA-Factory training YAML to start from. tuned.yaml is this file with the tuned keys edited in "
              "place (comments kept). Without it, a complete LoRA SFT config is generated.")
@click.option("--dataset-dir", metavar="DIR", help="The directory with dataset_info.json. With a dataset, cutoff_len "
              "comes from its token statistics (p90 rounded up to 64; needs the model's tokenizer.json).")
@click.option("--dataset", metavar="NAMES", help="Dataset name(s) in dataset_info.json, for a generated config "
              "[default: the base config's `dataset`, else the first local entry in --dataset-dir].")
@click.option("--tokenizer", metavar="PATH", help="tokenizer.json or its directory, for the dataset statistics "
              "[default: the model's].")
@click.option("--cutoff-len", type=click.IntRange(8), metavar="N", help="Fix cutoff_len instead of deriving it from the "
              "data or the config.")
@click.option("--gpus", type=click.IntRange(1), default=1, show_default=True, metavar="N",
              help="GPUs per trial (and for the tuned run). With several, the ZeRO stage and offload are searched too.")
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True,
              help="Where trials run. Without a GPU, cfgtune auto exits 2 unless --device cpu is given: the CPU demo runs "
              "the same search on the CPU, measuring each trial's peak RSS against --memory-budget.")
@click.option("--memory-budget", "memory_budget", callback=_size, metavar="SIZE",
              help="CPU mode: the memory a trial may use, e.g. 2GiB, 1500MB, 3g [default: 4GiB]. The ceiling is "
              "--vram-ceiling of it.")
@click.option("--vram-ceiling", type=click.FloatRange(0.05, 1.0), default=0.90, show_default=True, metavar="F",
              help="A trial is feasible iff its measured peak memory per device is at most F × the device memory "
              "(or F × --memory-budget on the CPU).")
@click.option("--global-batch", type=click.IntRange(1), metavar="N", help="Sequences per optimizer step over all GPUs; "
              "gradient_accumulation_steps is derived so that micro batch × accumulation × GPUs = N "
              "[default: the base config's, else 16].")
@click.option("--ranks", callback=_ranks, default="8,16,32,64,128", show_default=True, metavar="R,R,...",
              help="LoRA ranks to consider (lora_alpha = 2 × rank). Rank is a second objective, traded for speed only by "
              "--policy.")
@click.option("--policy", type=click.Choice(POLICIES), default="balanced", show_default=True, help=POLICY_HELP)
@click.option("--within", type=click.FloatRange(0.0, 0.99), default=DEFAULT_WITHIN, show_default=True, metavar="F",
              help="For --policy balanced: how much throughput (a fraction of the best) a higher rank may cost.")
@click.option("--liger/--no-liger", default=True, show_default=True,
              help="Search the Liger kernel on and off (only when liger-kernel is installed, on a GPU).")
@click.option("--zero/--no-zero", default=True, show_default=True,
              help="With --gpus > 1: search DeepSpeed ZeRO-2/3 and offload besides plain DDP.")
@click.option("--n-trials", type=click.IntRange(1), default=20, show_default=True, metavar="N",
              help="Exploration trials that run a process, over the whole study (a resumed study continues to N). "
              "Points pruned by the memory estimate and repeated proposals do not count; re-measurements do (below).")
@click.option("--race-trials", type=click.IntRange(0), default=8, show_default=True, metavar="N",
              help="Re-measurements at the end: the points the measurements cannot tell apart from the choice run "
              "again interleaved (A B A B ...) until they separate, then the choice and the baseline back to back "
              "for the gain. 0: choose from the exploration runs alone.")
@click.option("--target-ci", type=click.FloatRange(0.001, 0.5), default=0.02, show_default=True, metavar="F",
              help="A trial measures steps until the 95% interval of its tokens/s is within F of the median "
              "(warm-up steps detected and skipped), or --measure-time has passed.")
@click.option("--measure-time", type=click.FloatRange(1), default=30.0, show_default=True, metavar="S",
              help="The most seconds a trial spends on measured steps once it has the minimum (5).")
@click.option("--timeout", type=click.FloatRange(1), metavar="S", help="Start no new trial after S seconds.")
@click.option("--trial-timeout", type=click.FloatRange(1), default=600, show_default=True, metavar="S",
              help="Stop a trial after S seconds; it is recorded as timed out (infeasible) and the study goes on.")
@click.option("--patience", type=click.IntRange(0), default=0, show_default=True, metavar="N",
              help="Stop after N trials in a row that add nothing to the Pareto front (0: never).")
@click.option("--storage", metavar="URL", help="Any Optuna storage: sqlite:///f.db, postgresql://..., mysql://..., "
              "journal:/shared/f.log, redis://host:port, grpc://host:port. Several machines can share one study "
              "(see `cfgtune worker`). [default: sqlite:///OUTPUT_DIR/study.db]")
@click.option("--study", "study", metavar="NAME", help="The study name [default: cfgtune-MODEL].")
@click.option("--resume", is_flag=True, help="Continue the study after a Ctrl-C or a crash (same options, same "
              "--output-dir/--storage); trials already measured are kept.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Receives tuned.yaml (+ the DeepSpeed JSON when ZeRO is chosen), report.md, pareto.png, memory.png, "
              "study.db and the trials' logs [default: cfgtune-runs/MODEL].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler and the trials' weights.")
@click.pass_context
def auto(ctx: click.Context, **kw: Any) -> None:
    """Tune a LLaMA-Factory config for this machine with short real training trials.

    Each trial trains a randomly initialised model of the same architecture on worst-case batches (every
    sequence cutoff_len tokens) in its own process, until the 95% interval of its tokens/s is within
    --target-ci (warm-up steps skipped) or --measure-time passes, and measures peak memory over every step.
    The search (Optuna, multi-objective: tokens/s and LoRA rank) varies the micro batch (gradient
    accumulation keeps the global batch), the LoRA rank, gradient checkpointing, Liger and, on several GPUs
    (or on one GPU the model does not fit otherwise), the ZeRO stage and offload. A point is feasible iff its
    measured peak is within the ceiling. The hand-written recipe (batch 1, accumulation to the global batch,
    checkpointing on) runs first as the baseline. At the end, the points the measurements cannot tell apart
    are re-measured interleaved, and the choice and the baseline back to back (--race-trials); the choice is
    made on intervals, and gives way to a cheaper neighbour it does not beat beyond noise.

    \b
    Examples:
      cfgtune auto --model qwen2.5-7b --config train.yaml --dataset-dir data --output-dir tuned/
      cfgtune auto --model ./tiny-llama --device cpu --memory-budget 2GiB --n-trials 6 --measure-time 5  # CPU demo
    """
    from tuner.search.policy import Policy
    from tuner.search.setup import AutoOptions, SetupError, prepare

    opts = AutoOptions(
        model=kw["model"], config=kw["config"], dataset_dir=kw["dataset_dir"], dataset=kw["dataset"],
        tokenizer=kw["tokenizer"], cutoff_len=kw["cutoff_len"], gpus=kw["gpus"], device=kw["device"],
        memory_budget=kw["memory_budget"], vram_ceiling=kw["vram_ceiling"], global_batch=kw["global_batch"],
        ranks=kw["ranks"], liger=kw["liger"], zero=kw["zero"], output_dir=kw["output_dir"], storage=kw["storage"],
        study=kw["study"], resume=kw["resume"], seed=kw["seed"], target_ci=kw["target_ci"],
        measure_time_s=kw["measure_time"], cwd=Path.cwd(),
    )  # fmt: skip
    try:
        policy = Policy(kw["policy"], kw["within"])
    except ValueError as exc:
        _fail(str(exc))
    try:
        prep = prepare(opts)
    except SetupError as exc:
        _fail(str(exc))
    outcome = run_search(prep, kw, policy, resume_command(ctx))
    done = finish(prep, outcome, policy, resume_command(ctx))
    sys.exit(done.exit_code)


def run_search(prep: Prepared, kw: dict[str, Any], policy: Policy, resume_cmd: str) -> SearchOutcome:
    from tuner.search.prune import estimate_peak
    from tuner.search.setup import describe_space
    from tuner.search.sizes import format_bytes
    from tuner.search.study import Budget, Search, StudyError, open_study
    from tuner.search.view import make_view
    from tuner.trial.runner import run_trial

    out = prep.output_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"--output-dir {out}: {exc.strerror or exc}")
    echo = click.echo
    echo(f"{PROG}: {prep.model.describe()}")
    echo(f"  device: {prep.device.description}; ceiling {prep.options.vram_ceiling:.0%} = {format_bytes(prep.ceiling_bytes)} per device")
    echo(f"  space: {describe_space(prep.space)}")
    echo(f"  cutoff_len {prep.space.template.cutoff_len} ({prep.cutoff_source})")
    for n in prep.notes:
        echo(f"  note: {n}")
    echo(f"  study `{prep.study_name}` in {prep.storage}")
    try:
        study, _meta = open_study(prep.storage, prep.study_name, space=prep.space, meta=prep.meta(),
                                  resume=prep.options.resume, seed=prep.options.seed)  # fmt: skip
    except StudyError as exc:
        _fail(str(exc))
    from tuner.search.study import META_KEY

    study.set_user_attr(f"{META_KEY}.n_trials", kw["n_trials"])  # what `cfgtune worker` defaults to
    budget = Budget(n_trials=kw["n_trials"], timeout_s=kw["timeout"], trial_timeout_s=kw["trial_timeout"],
                    patience=kw["patience"], race_trials=kw["race_trials"])  # fmt: skip
    view = make_view(lora=prep.space.is_lora, title=f"{PROG}: {prep.model.name}")
    search = Search(study=study, space=prep.space, ceiling_bytes=prep.ceiling_bytes, runner=run_trial,
                    trials_dir=out / "trials", budget=budget, estimator=estimate_peak, view=view,
                    baseline=prep.baseline, within=policy.within, policy=policy)  # fmt: skip
    try:
        outcome = search.run()
    finally:
        view.close()
    if outcome.interrupted:
        echo(f"{PROG}: interrupted; {sum(r.ran for r in outcome.records)} trial(s) are stored. Continue with:\n  {resume_cmd}", err=True)
    else:
        echo(f"{PROG}: stopped: {outcome.stop_reason}")
    return outcome


def finish(prep: Prepared, outcome: SearchOutcome, policy: Policy, resume_cmd: str) -> Finished:
    """Choose, write tuned.yaml (+ DeepSpeed JSON), lint it, and write the report; the exit code says how it went."""
    from tuner.launch.emit import EmitError, emit, lint_emitted
    from tuner.launch.report import ReportContext, write_report
    from tuner.lint.rule import Severity
    from tuner.search.policy import choose
    from tuner.search.sizes import format_bytes

    from tuner.search.candidates import Pool

    records = outcome.records
    pool = Pool.build(records, prep.ceiling_bytes)
    choice = choose(pool, policy)
    out = prep.output_dir
    rctx = ReportContext(
        model=model_text(prep, out), hardware=prep.device.description, device=prep.device.kind,
        ceiling_bytes=prep.ceiling_bytes, ceiling_fraction=prep.options.vram_ceiling,
        memory_total_bytes=prep.device.memory_total, memory_method=prep.device.memory_method,
        global_batch=prep.space.global_batch, world_size=prep.space.world_size,
        cutoff_len=prep.space.template.cutoff_len, cutoff_source=relativize(prep.cutoff_source, prep, out),
        ranks=prep.space.ranks,
        is_lora=prep.space.is_lora, study_name=prep.study_name, storage=shown_storage(prep.storage, out),
        stop_reason=outcome.stop_reason, elapsed_s=outcome.elapsed_s, resume_command=resume_cmd,
        calibration=outcome.calibration, notes=[relativize(n, prep, out) for n in prep.notes],
        space_size=prep.space.size,
        noise=pool.summary().text(), race_note=outcome.race_note, target_ci=prep.space.template.target_rel_ci,
        space=prep.space,
    )  # fmt: skip
    code = 0
    paths: dict[str, Path] = {}
    lint_errors = 0
    if choice is not None:
        c = choice.record
        spec = c.spec or prep.space.spec(c.point)
        header = [
            f"tuned by cfgtune auto for {prep.model.name} on {prep.device.description}",
            f"trial #{c.number}: measured peak {format_bytes(c.peak_bytes)} of a {format_bytes(prep.ceiling_bytes)} ceiling "
            f"({prep.options.vram_ceiling:.0%}), {tps_with_interval(c)}" + gain_text(choice, ", ", " the hand-written baseline"),
            (f"policy {policy.name}: {policy.describe()}; {sum(r.ran for r in records)} trials in study "
            f"`{prep.study_name}`; details in report.md"),
        ]
        try:
            emitted = emit(output_dir=out, base_text=prep.base_text, base_path=prep.options.config,
                           generated_text=prep.generated_text, space=prep.space, point=c.point, spec=spec,
                           header=header, cwd=prep.options.cwd, template=prep.template)  # fmt: skip
        except (EmitError, OSError) as exc:
            _fail(str(exc))
        paths["tuned"] = emitted.yaml_path
        if emitted.deepspeed_path:
            paths["deepspeed"] = emitted.deepspeed_path
        try:  # provenance for `cfgtune launch`: what the trial measured, for this exact text
            from tuner.launch.provenance import write_for_choice

            paths["provenance"] = write_for_choice(prep, c, emitted.yaml_path, emitted.deepspeed_path)
        except OSError as exc:
            click.echo(f"{PROG}: warning: could not write the provenance next to {emitted.yaml_path}: {exc}", err=True)
        rctx.tuned_yaml = relative_to(emitted.yaml_path, out)
        rctx.deepspeed_json = relative_to(emitted.deepspeed_path, out) if emitted.deepspeed_path else None
        rctx.changes = emitted.changed + [f"removed {r}" for r in emitted.removed]
        result = lint_emitted(emitted.yaml_path, cwd=prep.options.cwd, hw=prep.device.profile,
                              gpus=prep.space.world_size if prep.device.kind == "cuda" else None,
                              model=None, dataset_dir=prep.options.dataset_dir)  # fmt: skip
        if result.error is not None:
            lint_errors = 1
            rctx.lint_summary = f"could not lint: {result.error}"
        else:
            lint_errors = result.count(Severity.ERROR)
            warnings = result.count(Severity.WARNING)
            rctx.lint_summary = "clean" if not lint_errors and not warnings else f"{lint_errors} error(s), {warnings} warning(s)"
        if lint_errors:
            code = 1
            click.echo(f"{PROG}: error: {emitted.yaml_path} has {lint_errors} lint error(s):", err=True)
            for v in getattr(result, "violations", []):
                if v.severity is Severity.ERROR:
                    click.echo(f"  {v.code} {getattr(v, 'key', '')}: {v.message}", err=True)
    else:
        code = 1
    paths.update(write_report(records, choice, rctx, out))
    _summary(prep, choice, paths, rctx)
    if outcome.interrupted:
        code = 130
    elif choice is None:
        click.echo(f"{PROG}: no feasible configuration under the ceiling; see {paths['report']}", err=True)
    return Finished(code, choice, paths, lint_errors)


def tps_with_interval(c: Any) -> str:
    """``1,234 tokens/s (95% interval 1,200-1,270, 3 runs)``, or the bare figure for an exact measurement."""
    e = c.estimate
    if e is None:
        return "- tokens/s"
    if e.exact:
        return f"{e.center:,.0f} tokens/s"
    return f"{e.center:,.0f} tokens/s (95% interval {e.lo:,.0f}-{e.hi:,.0f}, {e.runs} run{'s' if e.runs > 1 else ''})"


def gain_text(choice: Choice, prefix: str, what: str) -> str:
    g = choice.gain
    if g is None or choice.record is choice.baseline:
        return ""
    if g.lo == g.hi:
        return f"{prefix}{g.center:.2f}x{what}"
    return f"{prefix}{g.center:.2f}x{what} (95% interval {g.lo:.2f}-{g.hi:.2f}x)"


def relative_to(path: Path, directory: Path) -> str:
    """How an output names a file: relative to the output directory that holds both."""
    import os

    return os.path.relpath(Path(path).resolve(), Path(directory).resolve())


def model_text(prep: Prepared, out: Path) -> str:
    """The model's description, a local model directory named from the output directory."""
    text = prep.model.describe()
    path = prep.model.path
    if prep.model.source == "config.json" and path is not None:
        text = text.replace(str(path), relative_to(path, out))
    return relativize(text, prep, out)


def relativize(text: str, prep: Prepared, out: Path) -> str:
    """Paths below the launch directory in a message, named from the output directory instead."""
    import os

    cwd = str(Path(prep.options.cwd).resolve())
    return text.replace(cwd + os.sep, relative_to(Path(cwd), out) + os.sep) if cwd != os.sep else text


def shown_storage(storage: str, out: Path) -> str:
    """The default storage (a SQLite file in the output directory) as the output directory's file name."""
    from tuner.search.study import default_storage

    return "study.db" if storage == default_storage(out) else storage


def _summary(prep: Prepared, choice: Choice | None, paths: dict[str, Path], rctx: Any) -> None:
    from tuner.search.sizes import format_bytes

    if choice is None:
        return
    c = choice.record
    click.echo(f"{PROG}: chose trial #{c.number}: {prep.space.describe(c.point)}")
    click.echo(f"  measured: peak {format_bytes(c.peak_bytes)} ({c.peak_fraction:.0%} of the ceiling), {tps_with_interval(c)}"
               + gain_text(choice, ", ", " the baseline"))  # fmt: skip
    for line in choice.gave_way:
        click.echo(f"  {line}")
    for key in ("tuned", "deepspeed", "provenance", "report", "pareto", "memory"):
        if key in paths:
            click.echo(f"  {key}: {paths[key]}")
    if rctx.lint_summary:
        click.echo(f"  cfglint: {rctx.lint_summary}")
    if "tuned" in paths:
        click.echo(f"  run it: cfgtune launch {paths['tuned']}" + (f" --gpus {prep.space.world_size}" if prep.space.world_size > 1 else ""))
