"""`cfgtune worker`: join a shared `cfgtune auto` study from another node and run its trials on this one.

Exit codes: 0 when the study's budget is spent, 2 for bad input, 130 on Ctrl-C.

While a trial runs, the worker writes a heartbeat on it every ``CFGTUNE_HEARTBEAT_S`` seconds (default 15); any
other worker closes the trial of a worker silent for 4 intervals, and the point runs again (docs/distributed.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click


def _fail(prog: str, message: str, code: int = 2) -> NoReturn:
    click.echo(f"cfgtune {prog}: error: {message}", err=True)
    sys.exit(code)


@click.command("worker", context_settings={"max_content_width": 110})
@click.option("--storage", required=True, metavar="URL", help="The study's Optuna storage, as given to `cfgtune auto "
              "--storage` (postgresql://..., mysql://..., journal:/shared/f.log, redis://..., grpc://...).")
@click.option("--study", "study", required=True, metavar="NAME", help="The study name (`cfgtune auto` prints it).")
@click.option("--n-trials", type=click.IntRange(1), metavar="N", help="Stop when the study has N trials that ran, "
              "counting every worker's [default: what `cfgtune auto` was given].")
@click.option("--timeout", type=click.FloatRange(1), metavar="S", help="Start no new trial after S seconds.")
@click.option("--trial-timeout", type=click.FloatRange(1), default=600, show_default=True, metavar="S",
              help="Stop a trial after S seconds (recorded as timed out).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("cfgtune-worker"),
              show_default=True, help="Where this worker keeps its trials' logs.")
def worker(storage: str, study: str, n_trials: int | None, timeout: float | None, trial_timeout: float,
           workdir: Path) -> None:
    """Join a shared `cfgtune auto` study and run its trials on this machine.

    The study stores its search space and memory ceiling, so a worker needs nothing else: start `cfgtune auto
    --storage URL --study NAME ...` on one node and `cfgtune worker --storage URL --study NAME` on the others
    (same GPU model). Trials are shared through the storage; the `cfgtune auto` run writes tuned.yaml and the
    report from all of them when its budget is spent (or run `cfgtune auto ... --resume` on any node to write
    them). A worker that dies mid-trial is noticed by the others within 4 heartbeats (CFGTUNE_HEARTBEAT_S,
    default 15 s), and its point runs again. See docs/distributed.md.
    """
    from tuner.search.prune import estimate_peak
    from tuner.search.sizes import format_bytes
    from tuner.search.space import Point, SearchSpace
    from tuner.search.study import META_KEY, Budget, Search, StudyError, open_study
    from tuner.search.view import make_view
    from tuner.trial.runner import run_trial

    try:
        st, meta = open_study(storage, study, space=None, meta=None, resume=True, create=False)
    except StudyError as exc:
        _fail("worker", str(exc))
    space = SearchSpace.from_dict(meta["space"])
    ceiling = int(meta["ceiling_bytes"])
    device = str(meta.get("device", "cuda"))
    _check_device(device, int(meta.get("memory_total_bytes") or 0), space.world_size)
    budget_n = n_trials or int(st.user_attrs.get(f"{META_KEY}.n_trials") or 20)
    click.echo(f"cfgtune worker: study `{study}`: {meta.get('model_describe', meta.get('model'))}")
    click.echo(f"  ceiling {format_bytes(ceiling)} per device ({meta.get('hardware')}); up to {budget_n} trials in the study")
    view = make_view(lora=space.is_lora, title=f"cfgtune worker: {study}")
    baseline = Point.from_dict(meta["baseline"]) if meta.get("baseline") else None
    search = Search(study=st, space=space, ceiling_bytes=ceiling, runner=run_trial, trials_dir=workdir / "trials",
                    budget=Budget(n_trials=budget_n, timeout_s=timeout, trial_timeout_s=trial_timeout, race_trials=0),
                    estimator=estimate_peak, view=view, baseline=baseline,
                    wait_for_others=False)  # the head node (cfgtune auto) waits and writes the result  # fmt: skip
    try:
        outcome = search.run()
    finally:
        view.close()
    click.echo(f"cfgtune worker: ran {outcome.ran_here} trial(s); stopped: {outcome.stop_reason}")
    sys.exit(130 if outcome.interrupted else 0)


def _check_device(device: str, memory_total: int, world: int) -> None:
    """A worker must have the study's device: the same kind, enough GPUs, and (warned) the same memory."""
    if device != "cuda":
        return
    from tuner.hardware.detect import detect_gpus

    det = detect_gpus()
    gpus = [g for g in det.gpus if g.error is None]
    if not gpus:
        _fail("worker", f"the study runs on GPUs and this machine has none ({det.reason})")
    if len(gpus) < world:
        _fail("worker", f"the study's trials use {world} GPUs; this machine has {len(gpus)}")
    local = min(g.total_bytes for g in gpus[:world])
    if memory_total and abs(local - memory_total) > 0.02 * memory_total:
        click.echo(
            f"cfgtune worker: warning: this GPU has {local / 1024**3:.1f} GiB, the study's {memory_total / 1024**3:.1f} GiB; "
            "trials are judged against the study's ceiling",
            err=True,
        )
