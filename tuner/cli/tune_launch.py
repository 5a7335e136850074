"""`cfgtune launch` runs a tuned config with LLaMA-Factory and watches what it really uses.

The training's output streams through unchanged, Ctrl-C reaches it (a second one stops it hard), and its exit
code is ours. Meanwhile each GPU's memory is sampled through NVML (or the largest RSS in the process tree for a CPU run);
at the end the observed peak is held against the estimate and the tuned trial's measurement, written to
``<output_dir>/cfgtune-launch.json`` (next to the config as ``<name>.launch.json`` when the run made no
output_dir) and appended to the run history that calibrates ``cfgtune estimate``.

Exit codes: the training's own (128+N when signal N ended it; 130 for Ctrl-C); 2 for bad input before anything
started (a missing file, no ``llamafactory-cli``); 1 when the config has lint errors (see --force).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from tuner.config.document import Document
    from tuner.launch.command import LaunchPlan
    from tuner.launch.monitor import Observed
    from tuner.launch.provenance import Provenance
    from tuner.launch.run import RunResult
    from tuner.launch.verdict import Reference, Verdict

PROG = "cfgtune launch"
RECORD_NAME = "cfgtune-launch.json"


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"{PROG}: error: {message}", err=True)
    sys.exit(code)


def _say(message: str) -> None:
    click.echo(f"{PROG}: {message}", err=True)


@click.command("launch", context_settings={"max_content_width": 110})
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gpus", type=click.IntRange(1), metavar="N", help="GPUs to train on (sets CUDA_VISIBLE_DEVICES to the "
              "first N unless it is set) [default: all visible].")
@click.option("--nnodes", type=click.IntRange(1), default=1, show_default=True, help="Nodes, for multi-node training.")
@click.option("--node-rank", type=click.IntRange(0), default=0, show_default=True, help="This node's rank.")
@click.option("--master-addr", metavar="HOST", help="Rendezvous host (node 0), with --nnodes > 1.")
@click.option("--master-port", type=click.IntRange(1, 65535), metavar="PORT", help="Rendezvous port.")
@click.option("--dry-run", is_flag=True, help="Print the command and the environment it sets, and exit.")
@click.option("--force", is_flag=True, help="Start even if cfglint finds errors in CONFIG.")
@click.option("--no-lint", "no_lint", is_flag=True, hidden=True)  # the old name of --force
@click.option("--kill-grace", type=click.FloatRange(0), default=15.0, show_default=True, metavar="S",
              help="After a second Ctrl-C (SIGTERM), seconds before the training is killed (SIGKILL).")
@click.option("--sample-interval", type=click.FloatRange(0.01), default=0.5, hidden=True)
def launch(config: Path, gpus: int | None, nnodes: int, node_rank: int, master_addr: str | None,
           master_port: int | None, dry_run: bool, force: bool, no_lint: bool, kill_grace: float,
           sample_interval: float) -> None:  # fmt: skip
    """Train CONFIG (a tuned.yaml) with `llamafactory-cli train`, and compare its memory with the prediction.

    Sets FORCE_TORCHRUN=1 when the config uses DeepSpeed (which needs torchrun even on one GPU) or when several
    GPUs or nodes are used, and CUDA_VISIBLE_DEVICES for --gpus. CONFIG is linted first; errors stop the launch
    unless --force. Ctrl-C is passed to the training so it can stop cleanly; press it twice to stop it hard.

    At the end it prints the peak memory per GPU (NVML; the largest process's RSS for a CPU run) against the
    estimate and, for a config written by `cfgtune auto`, the tuned trial's measured peak, and says which one
    was wrong if the run ran out of memory. The record goes to OUTPUT_DIR/cfgtune-launch.json (CONFIG's
    directory, as NAME.launch.json, when the run made no output_dir) and to the run history ($CFGTUNE_HOME/history.jsonl, default ~/.local/share/cfgtune/) that `cfgtune estimate` calibrates by.
    """
    from tuner.config.document import InputError
    from tuner.config.loader import load_config
    from tuner.launch.command import plan_launch

    try:
        doc = load_config(config)
    except InputError as exc:
        _fail(str(exc))
    if nnodes > 1 and not master_addr:
        _fail("--nnodes > 1 needs --master-addr (the host of node 0)")
    uses_ds = doc.data.get("deepspeed") not in (None, "")
    plan = plan_launch(config, uses_deepspeed=uses_ds, gpus=gpus, environ=os.environ, nnodes=nnodes,
                       node_rank=node_rank, master_addr=master_addr, master_port=master_port)  # fmt: skip
    for n in plan.notes:
        _say(f"note: {n}")
    if not (force or no_lint):
        _lint_gate(config, gpus)
    if dry_run:
        for line in plan.environment_lines():
            click.echo(line)
        click.echo(plan.shell())
        return
    if shutil.which(plan.argv[0]) is None:
        _fail(f"`{plan.argv[0]}` is not on PATH: install LLaMA-Factory (pip install llamafactory), or run "
              f"with --dry-run to see the command")  # fmt: skip
    sys.exit(_run(config, doc, plan, gpus=gpus, nnodes=nnodes, kill_grace=kill_grace, interval=sample_interval))


def _lint_gate(config: Path, gpus: int | None) -> None:
    from tuner.launch.emit import lint_emitted
    from tuner.lint.rule import Severity

    result = lint_emitted(config, cwd=Path.cwd(), gpus=gpus)
    if result.error is not None:
        _fail(str(result.error))
    errors = [v for v in result.violations if v.severity is Severity.ERROR]
    if errors:
        for v in errors:
            click.echo(f"{config}:{v.line}: {v.code} {v.message}", err=True)
        _fail(f"{config} has {len(errors)} lint error(s); fix them or pass --force to start anyway", code=1)


def _run(config: Path, doc: Document, plan: LaunchPlan, *, gpus: int | None, nnodes: int, kill_grace: float,
         interval: float) -> int:  # fmt: skip
    """Start, watch, judge, record; the training's exit code."""
    from tuner.launch.monitor import make_monitor, visible_entries
    from tuner.launch.run import run_child

    env = {**os.environ, **plan.env}
    use_cpu = bool(doc.data.get("use_cpu", False))
    monitor = make_monitor(env, use_cpu=use_cpu, interval_s=interval)
    obs = monitor.observed
    visible = visible_entries(env)
    per_node = len(visible) if visible else (gpus or (len(obs.devices) if obs.kind == "cuda" else 1))
    expect = _expectations(config, doc, env, obs, per_node, nnodes)

    _say(plan.shell())
    _say("expecting: " + "; ".join(f"{r.name} {'says' if r.verb == 'said' else r.verb} {_b(r.bytes)} per device"
                                   if r.bytes else r.missing
                                   for r in expect["refs"]))  # fmt: skip
    for note in expect["notes"]:
        _say(f"note: {note}")
    _say(f"measuring: {_measuring(obs)}")
    try:
        result = run_child(plan.argv, env, on_start=monitor.watch, grace_s=kill_grace)
    except OSError as exc:
        monitor.stop()
        _fail(f"could not start `{plan.argv[0]}`: {exc}")
    obs = monitor.stop()
    verdict = _judge(result, obs, expect["refs"])
    if obs.kind == "cpu" and not use_cpu:
        verdict.lines.append("these are host RSS figures against a GPU estimate, not comparable: install nvidia-ml-py "
                             "(pip install nvidia-ml-py) for the GPUs' own figures")  # fmt: skip
    _report(result, obs, verdict)
    record = _record(config, doc, plan, result, obs, verdict, expect, per_node * nnodes)
    _save(config, doc, record)
    return result.exit_code


def _b(n: int | None) -> str:
    from tuner.search.sizes import format_bytes

    return format_bytes(n)


def _measuring(obs: Observed) -> str:
    if obs.kind == "cuda":
        names = sorted({d.name for d in obs.devices})
        return (f"{obs.method} on GPU {', '.join(d.label for d in obs.devices)} ({', '.join(names)}), every "
                f"{obs.interval_s:g} s")  # fmt: skip
    why = f" ({'; '.join(obs.notes)})" if obs.notes else ""
    return f"{obs.method}, every {obs.interval_s:g} s{why}"


def _expectations(config: Path, doc: Document, env: dict[str, str], obs: Observed, per_node: int,
                  nnodes: int) -> dict[str, Any]:  # fmt: skip
    """The predictions to hold the run against: the estimate (the sidecar's, else computed) and the trial."""
    from tuner.cli.tune_estimate import EstimateError, estimate_config
    from tuner.launch.provenance import read_provenance
    from tuner.launch.verdict import Reference

    notes: list[str] = []
    prov, why = read_provenance(config)
    if why:
        notes.append(why)
    profile = None
    if obs.kind == "cuda":
        from tuner.hardware.profiles import get_profile

        try:
            profile = get_profile(obs.hardware)
        except (LookupError, ValueError):
            profile = None
    raw: int | None = None
    model: str | None = None
    zero_stage: int | None = None
    raw_why = ""
    try:
        ce = estimate_config(config, gpus=per_node, nodes=nnodes, hardware=profile, detect=False, env=env)
        raw, model, zero_stage = int(ce.est.peak_bytes), ce.model_name, ce.setup.zero_stage
    except EstimateError as exc:
        raw_why = str(exc)
    except Exception as exc:  # noqa: BLE001 - an estimator bug must not stop a training run
        raw_why = f"the estimator failed: {exc}"
    if prov is not None and not prov.edited and prov.estimate_bytes[0]:
        est_bytes, detail = prov.estimate_bytes
    else:
        est_bytes, detail = raw, "the estimator on this config (as `cfgtune estimate` computes it)"
    est = Reference("the estimate", "said", est_bytes, missing=f"no estimate ({raw_why})", detail=detail)
    if prov is None:
        trial = Reference("the trial", "measured", None, missing="no trial measurement (not tuned by cfgtune auto)")
    else:
        n = prov.trial_number
        name = f"trial #{n}" if n is not None else "the tuned trial"
        trial = Reference(name, "measured", prov.trial_peak_bytes, missing=f"{name}: no measured peak in {prov.path}",
                          detail=f"{prov.path}")  # fmt: skip
        if prov.edited:
            notes.append(f"{config} was edited after cfgtune auto wrote it (its sha256 differs from {prov.path.name}): "
                         f"{name} measured the config as it was then")  # fmt: skip
        if prov.data.get("device") and prov.data.get("device") != obs.kind:
            notes.append(f"{name} was measured on {prov.data.get('device')}, this run is measured on {obs.kind}")
        trial_world, run_world = prov.data.get("world_size"), per_node * nnodes
        if obs.kind == "cuda" and isinstance(trial_world, int) and trial_world != run_world:
            how = (f"tune with --gpus {run_world} to measure it" if nnodes == 1 else
                   "trials run on one node, so sharding across nodes is estimated, not measured")  # fmt: skip
            notes.append(f"{name} ran on {trial_world} GPU(s) and this run uses {run_world}: ZeRO shards over the "
                         f"run's GPUs, so its per-GPU peak is not what {name} measured ({how})")  # fmt: skip
        model = model or prov.data.get("model")
    return {"refs": [est, trial], "notes": notes, "raw": raw, "model": model or doc.data.get("model_name_or_path"),
            "zero_stage": zero_stage, "provenance": prov}  # fmt: skip


def _judge(result: RunResult, obs: Observed, refs: list[Reference]) -> Verdict:
    import signal as sig

    from tuner.launch.verdict import detect_oom, judge

    oom = detect_oom(result.tail, signal=result.signal, forwarded=result.forwarded)
    dev = obs.peak_device
    capacity = dev.total_bytes - dev.baseline_bytes if dev is not None and dev.total_bytes and obs.kind == "cuda" else None
    where = ""
    if dev is not None:
        where = f"GPU {dev.label}" + (f", the highest of {len(obs.devices)}" if len(obs.devices) > 1 else "") \
            if obs.kind == "cuda" else "largest process RSS"
    stopped = None
    if result.forwarded:
        stopped = ", ".join(result.forwarded)
    elif result.signal is not None:
        stopped = sig.Signals(result.signal).name if result.signal in {s.value for s in sig.Signals} else f"signal {result.signal}"
    return judge(observed=obs.peak_bytes, refs=refs, oom_reason=oom, tail=result.tail, capacity=capacity, where=where,
                 exit_code=result.exit_code, stopped_by=stopped)  # fmt: skip


def _duration(s: float) -> str:
    m, sec = divmod(round(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s" if m else f"{s:.1f} s"


def _report(result: RunResult, obs: Observed, verdict: Verdict) -> None:
    _say(f"the training ended after {_duration(result.duration_s)} with exit code {result.exit_code}")
    _say(f"measured: {obs.method}")
    if obs.kind == "cuda":
        for d in obs.devices:
            _say(f"  GPU {d.label} ({d.name}): peak {_b(d.peak_bytes)} of {_b(d.total_bytes)}"
                 + (f" ({_b(d.baseline_bytes)} was in use before the launch)" if d.baseline_bytes else ""))  # fmt: skip
    elif obs.tree_peak_bytes:
        _say(f"  the whole process tree (dataset workers included) peaked at {_b(obs.tree_peak_bytes)} of host memory")
    _say(("error: " if verdict.oom else "") + verdict.headline)
    for line in verdict.lines:
        _say(f"  {line}")


def _record(config: Path, doc: Document, plan: LaunchPlan, result: RunResult, obs: Observed, verdict: Verdict,
            expect: dict[str, Any], world_size: int) -> dict[str, Any]:  # fmt: skip
    import time

    from tuner.launch.history import key_settings
    from tuner.launch.provenance import sha256_of

    refs = expect["refs"]
    prov: Provenance | None = expect["provenance"]
    try:
        sha = sha256_of(config)
    except OSError:
        sha = None
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(result.started_at)),
        "config": str(config.resolve()),
        "config_sha256": sha,
        "cwd": str(Path.cwd()),
        "command": plan.shell(),
        "env": plan.env,
        "model": expect["model"],
        "hardware": obs.hardware,
        "device": obs.kind,
        "gpus": [d.label for d in obs.devices] if obs.kind == "cuda" else [],
        "world_size": world_size,
        "settings": key_settings(doc.data, expect["zero_stage"]),
        "estimate_bytes": refs[0].bytes,
        "estimate_basis": refs[0].detail or refs[0].missing,
        "estimate_raw_bytes": expect["raw"],
        "trial": refs[1].name if refs[1].bytes else None,
        "trial_peak_bytes": refs[1].bytes,
        "provenance": str(prov.path) if prov else None,
        "provenance_edited": prov.edited if prov else None,
        "measured": obs.to_dict(),
        "observed_peak_bytes": obs.peak_bytes,
        "observed_per_device": {d.label: d.peak_bytes for d in obs.devices} if obs.samples else {},
        "oom": verdict.oom,
        "needed_bytes": verdict.actual_bytes,
        "verdict": verdict.to_dict(),
        "exit_code": result.exit_code,
        "signal": result.signal,
        "forwarded_signals": result.forwarded,
        "duration_s": round(result.duration_s, 3),
    }


def record_path(config: Path, doc: Document) -> Path:
    """``<output_dir>/cfgtune-launch.json`` when the run's output_dir exists, else ``<config stem>.launch.json``."""
    out = doc.data.get("output_dir")
    if isinstance(out, str) and out.strip():
        d = Path(out).expanduser()
        if d.is_dir():
            return d / RECORD_NAME
    return config.with_name(config.stem + ".launch.json")


def _save(config: Path, doc: Document, record: dict[str, Any]) -> None:
    from tuner.launch.history import append_record, history_path

    path = record_path(config, doc)
    saved = []
    try:
        path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        saved.append(f"record: {path}")
    except OSError as exc:
        _say(f"warning: could not write {path}: {exc}")
    hist = history_path()
    try:
        append_record(record, hist)
        saved.append(f"history: {hist}")
    except OSError as exc:
        _say(f"warning: could not append to {hist}: {exc}")
    if saved:
        _say("; ".join(saved))
