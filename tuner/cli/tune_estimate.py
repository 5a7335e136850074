"""`cfgtune estimate`: the predicted peak GPU memory of a training config, component by component.

It reads the YAML (and its DeepSpeed JSON) exactly as the linter does, resolves the model offline, and
prints where the memory goes, the headroom under the ceiling (90% of the device by default), and the largest
``per_device_train_batch_size`` and ``cutoff_len`` that still fit. Bad input is one line on stderr and exit 2.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from tuner.config.context import Context
    from tuner.memory.estimator import MemoryEstimate
    from tuner.memory.setup import TrainSetup

GIB = 1024**3


def _fail(message: str) -> NoReturn:
    click.echo(f"cfgtune estimate: error: {message}", err=True)
    sys.exit(2)


def _gib(b: float | None, signed: bool = False) -> str:
    if b is None:
        return "-"
    return f"{b / GIB:+.2f} GiB" if signed else f"{b / GIB:.2f} GiB"


def _detected_profile() -> Any:
    """The profile of this machine's first GPU, if NVML finds one that matches a profile."""
    try:
        from tuner.hardware.detect import detect_gpus

        det = detect_gpus()
    except Exception:  # noqa: BLE001 - no NVML, no driver: estimate without a device
        return None
    return next((g.profile for g in det.gpus if g.profile is not None), None) if det.found else None


class EstimateError(Exception):
    """The config cannot be estimated (it does not parse, the model or the hardware is unknown)."""


@dataclass
class ConfigEstimate:
    """The estimator's view of one config file: what ``cfgtune estimate`` prints, for other commands to reuse."""

    ctx: Context
    hardware: Any  # a HardwareProfile, or None
    setup: TrainSetup
    est: MemoryEstimate

    @property
    def model_name(self) -> str | None:
        return getattr(self.ctx.model, "name", None)


def _context(config: str, hw: str | None, gpus: int | None, nodes: int, model: str | None,
             env: dict[str, str] | None = None, target: Any = None) -> Context:  # fmt: skip
    from tuner.config.document import InputError
    from tuner.config.loader import load_config
    from tuner.config.context import Context, LintOptions
    from tuner.lint.rule import Need

    try:
        doc = load_config(config)
        options = LintOptions(hw=hw, gpus=gpus, nodes=nodes, model=model, cwd=Path.cwd(),
                              env=dict(os.environ) if env is None else env)  # fmt: skip
        if target is not None:
            options.target = target
        ctx = Context(doc, options)
    except InputError as exc:
        raise EstimateError(str(exc)) from None
    if ctx.model is None:
        raise EstimateError(f"{config}: {ctx.skip_reason(Need.MODEL)}")
    if hw and ctx.hardware is None:
        raise EstimateError(ctx.skip_reason(Need.HARDWARE) or f"unknown hardware profile {hw!r}")
    return ctx


def estimate_config(config: str | Path, *, hw: str | None = None, gpus: int | None = None, nodes: int = 1,
                    model: str | None = None, ceiling: float = 0.90, hardware: Any = None, detect: bool = True,
                    env: dict[str, str] | None = None, target: Any = None) -> ConfigEstimate:  # fmt: skip
    """Estimate a config file exactly as ``cfgtune estimate`` does; raises :class:`EstimateError`.

    The hardware is ``--hw`` when given, else ``hardware``, else (with ``detect``) this machine's first GPU.
    ``target``: the LLaMA-Factory and transformers releases (:class:`tuner.config.versions.TargetVersions`;
    default: cfglint's fixed defaults), which decide defaults such as the optimizer and the loss's logits copy.
    """
    from tuner.memory.estimator import estimate as run_estimate
    from tuner.memory.from_config import setup_from_context

    ctx = _context(str(config), hw, gpus, nodes, model, env, target)
    if hw:
        hardware = ctx.hardware
    elif hardware is None and detect:
        hardware = _detected_profile()
    try:
        setup = setup_from_context(ctx)
        est = run_estimate(setup, hardware, ceiling=ceiling)
    except (ValueError, LookupError) as exc:
        raise EstimateError(f"{config}: {exc}") from None
    return ConfigEstimate(ctx, hardware, setup, est)


def history_calibration(model: str | None, hardware: Any) -> Any:
    """What past `cfgtune launch` runs of this model on this hardware say about the estimator (or None)."""
    if not model or hardware is None:
        return None
    from tuner.launch.history import calibration_for

    return calibration_for(model, str(getattr(hardware, "name", hardware)))


@click.command("estimate")
@click.argument("config", type=click.Path(dir_okay=False, path_type=str))
@click.option("--hw", "hw", metavar="NAME", help="GPU profile (see `cfgtune hw --list`); default: this machine's GPU.")
@click.option("--gpus", type=click.IntRange(min=1), help="GPUs per node the run uses (default: CUDA_VISIBLE_DEVICES, else 1).")
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True, help="Nodes the run uses.")
@click.option("--model", "model", metavar="SPEC", help="Catalog alias or directory with config.json, instead of model_name_or_path.")
@click.option("--ceiling", type=click.FloatRange(0, 1, min_open=True), default=0.90, show_default=True,
              help="Fraction of device memory a run may use.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--no-history", is_flag=True, help="Ignore the history of real runs (`cfgtune launch`) that otherwise "
              "calibrates the peak for this model and hardware.")
@click.option("--target-llamafactory", "lf", metavar="VERSION", help="LLaMA-Factory release the run uses: X.Y[.Z] or `auto` [default: 0.9.5].")
@click.option("--target-transformers", "tf", metavar="VERSION",
              help="transformers release the run uses: X.Y[.Z], a major or `auto` [default: the newest the LLaMA-Factory release accepts].")
def estimate(config: str, hw: str | None, gpus: int | None, nodes: int, model: str | None, ceiling: float, as_json: bool,
             no_history: bool, lf: str | None, tf: str | None) -> None:  # fmt: skip
    """Predict the peak GPU memory per device of a LLaMA-Factory training CONFIG.

    Every component says how it was obtained (estimated from shapes, or calibrated against measurements).
    The prediction is for the worst micro-batch: every sequence `cutoff_len` tokens long. Real runs started
    with `cfgtune launch` on the same model and hardware calibrate the peak (see --no-history).
    """
    from tuner.config.versions import TargetError, resolve_target
    from tuner.memory.fit import max_batch_that_fits, max_cutoff_that_fits

    try:
        target, warnings = resolve_target(lf, tf, llamafactory_from="--target-llamafactory",
                                          transformers_from="--target-transformers", doing="estimating")  # fmt: skip
    except TargetError as exc:
        _fail(str(exc))
    for line in warnings:
        click.echo(f"cfgtune: warning: {line}", err=True)
    try:
        ce = estimate_config(config, hw=hw, gpus=gpus, nodes=nodes, model=model, ceiling=ceiling, target=target)
    except EstimateError as exc:
        _fail(str(exc))
    ctx, hardware, setup, est = ce.ctx, ce.hardware, ce.setup, ce.est
    max_batch = max_cutoff = None
    if hardware is not None:
        max_batch = max_batch_that_fits(setup, hardware, ceiling=ceiling, limit=1024)
        max_cutoff = max_cutoff_that_fits(setup, hardware, ceiling=ceiling, multiple=64)
    cal = None if no_history else history_calibration(ce.model_name, hardware)
    if as_json:
        out = est.to_dict()
        out.update(
            config=str(config),
            model=ce.model_name,
            hardware_display=getattr(hardware, "display", None),
            setup=_setup_summary(setup),
            target={"llamafactory": str(target.llamafactory), "transformers": str(target.transformers)},
            max_per_device_train_batch_size=max_batch,
            max_cutoff_len=max_cutoff,
            history=None if cal is None else {**cal.to_dict(), "calibrated_peak_bytes": int(est.peak_bytes * cal.factor)},
        )
        click.echo(json.dumps(out, indent=2))
        return
    _print(config, ctx, hardware, est, max_batch, max_cutoff)
    if cal is not None:
        click.echo(_history_line(cal, est))


def _history_line(cal: Any, est: MemoryEstimate) -> str:
    calibrated = est.peak_bytes * cal.factor
    line = (f"calibrated by {cal.describe()} on this model and hardware: ×{cal.factor:.2f} → "
            f"{calibrated / GIB:.1f} GiB")  # fmt: skip
    if est.ceiling_bytes:
        line += (f" ({'fits under' if calibrated <= est.ceiling_bytes else 'over'} the "
                 f"{est.ceiling_bytes / GIB:.1f} GiB ceiling)")  # fmt: skip
    return line + " (--no-history to ignore)"


def _setup_summary(s: Any) -> dict[str, Any]:
    return {
        "finetuning_type": s.finetuning_type,
        "stage": s.stage,
        "per_device_train_batch_size": s.batch_size,
        "cutoff_len": s.cutoff_len,
        "varying_lengths": s.varying_lengths,
        "gradient_accumulation_steps": s.gradient_accumulation_steps,
        "precision": s.precision,
        "quantization_bit": s.quantization_bit,
        "upcast_layernorm": s.upcast_layernorm,
        "loss_shift": s.loss_shift,
        "lora_rank": s.lora_rank if s.finetuning_type == "lora" else None,
        "gradient_checkpointing": s.gradient_checkpointing,
        "attention": s.attention,
        "liger": s.liger,
        "optim": s.optim,
        "zero_stage": s.zero_stage,
        "offload_optimizer": s.offload_optimizer,
        "offload_param": s.offload_param,
        "world_size": s.world_size,
    }


def _print(config: str, ctx: Context, hardware: Any, est: MemoryEstimate, max_batch: int | None, max_cutoff: int | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)
    s = est.setup
    what = s.finetuning_type + (f" r={s.lora_rank}" if s.finetuning_type == "lora" else "")
    if s.quantization_bit:
        what += f", {s.quantization_bit}-bit"
    ds = "no DeepSpeed" if s.zero_stage is None else f"ZeRO-{s.zero_stage}" + (
        " + offload" if s.offload_optimizer or s.offload_param else "")
    model_line = ctx.model.describe() if hasattr(ctx.model, "describe") else str(getattr(ctx.model, "name", "model"))
    console.print(escape(model_line), soft_wrap=True)
    console.print(
        escape(
            f"{config}: {what}, batch {s.batch_size} x {s.cutoff_len} tokens, {s.precision}, "
            f"{'gradient checkpointing' if s.gradient_checkpointing else 'no gradient checkpointing'}, {s.attention}, "
            f"{s.optim}, {ds}, {s.world_size} GPU{'s' if s.world_size > 1 else ''}"
        ),
        soft_wrap=True,
    )
    console.print(f"estimated for {escape(ctx.options.target.describe())}", soft_wrap=True)
    if est.params is not None:
        console.print(escape(est.params.line()) + " (as LLaMA-Factory counts them)", soft_wrap=True)
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("Component", no_wrap=True)
    table.add_column("GiB", justify="right", no_wrap=True)
    table.add_column("Phase", no_wrap=True)
    table.add_column("Source", no_wrap=True)
    table.add_column("How", overflow="fold")
    for c in est.components:
        row = [escape(c.label), f"{c.gib:.2f}", c.phase, c.source, escape(c.detail)]
        if not c.at_peak:
            row = [f"[dim]{escape(c.label)} (not at peak)[/dim]", f"[dim]{c.gib:.2f}[/dim]", f"[dim]{c.phase}[/dim]",
                   f"[dim]{c.source}[/dim]", f"[dim]{escape(c.detail)}[/dim]"]
        table.add_row(*row)
    table.add_section()
    table.add_row("[bold]peak per GPU[/bold]", f"[bold]{est.peak_gib:.2f}[/bold]", est.peak_phase, "", "sum of the components at the peak")
    console.print(table)

    if hardware is None:
        console.print("No GPU given or detected: pass --hw NAME to compare against a device (`cfgtune hw --list`).", soft_wrap=True)
    else:
        dev = est.device_bytes or 0
        verdict = "[green]fits[/green]" if est.fits else "[red]does not fit[/red]"
        console.print(
            f"{escape(getattr(hardware, 'display', hardware.name))}: {_gib(dev)}; ceiling {est.ceiling:.0%} = {_gib(est.ceiling_bytes)}; "
            f"headroom {_gib(est.headroom_bytes, signed=True)}: {verdict}",
            soft_wrap=True,
        )
        console.print(
            f"largest per_device_train_batch_size that fits at cutoff_len {s.cutoff_len}: {max_batch if max_batch else 'none'}",
            soft_wrap=True,
        )
        cut = "none" if not max_cutoff else str(max_cutoff)
        if max_cutoff and max_cutoff > s.arch.max_position_embeddings:
            cut += f" (beyond the model's max_position_embeddings {s.arch.max_position_embeddings})"
        console.print(f"largest cutoff_len (multiple of 64) that fits at batch {s.batch_size}: {cut}", soft_wrap=True)
    console.print(f"host RAM per node: {_gib(est.host_ram_bytes)} ("
                  + escape("; ".join(f"{c.label} {_gib(c.bytes)}" for c in est.host_components)) + ")", soft_wrap=True)
    for note in est.notes:
        console.print(f"note: {escape(note)}", soft_wrap=True)
