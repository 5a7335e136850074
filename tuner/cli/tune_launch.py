"""`cfgtune launch` runs a tuned config with LLaMA-Factory.

Exit codes: the training's own exit code; 2 for bad input before anything started, 1 when the config has lint
errors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import click


def _fail(prog: str, message: str, code: int = 2) -> NoReturn:
    click.echo(f"cfgtune {prog}: error: {message}", err=True)
    sys.exit(code)


@click.command("launch", context_settings={"max_content_width": 110})
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gpus", type=click.IntRange(1), metavar="N", help="GPUs to train on (sets CUDA_VISIBLE_DEVICES to the "
              "first N unless it is set) [default: all visible].")
@click.option("--nnodes", type=click.IntRange(1), default=1, show_default=True, help="Nodes, for multi-node training.")
@click.option("--node-rank", type=click.IntRange(0), default=0, show_default=True, help="This node's rank.")
@click.option("--master-addr", metavar="HOST", help="Rendezvous host (node 0), with --nnodes > 1.")
@click.option("--master-port", type=click.IntRange(1, 65535), metavar="PORT", help="Rendezvous port.")
@click.option("--dry-run", is_flag=True, help="Print the command (with its environment) instead of running it.")
@click.option("--no-lint", is_flag=True, help="Start even if cfglint finds errors in CONFIG.")
def launch(config: Path, gpus: int | None, nnodes: int, node_rank: int, master_addr: str | None,
           master_port: int | None, dry_run: bool, no_lint: bool) -> None:
    """Train CONFIG (a tuned.yaml) with `llamafactory-cli train`.

    Sets FORCE_TORCHRUN=1 when the config uses DeepSpeed (which needs torchrun even on one GPU) or when several
    GPUs or nodes are used, and CUDA_VISIBLE_DEVICES for --gpus. CONFIG is linted first; errors stop the launch.
    """
    from tuner.config.document import InputError
    from tuner.config.loader import load_config
    from tuner.launch.command import plan_launch

    try:
        doc = load_config(config)
    except InputError as exc:
        _fail("launch", str(exc))
    if nnodes > 1 and not master_addr:
        _fail("launch", "--nnodes > 1 needs --master-addr (the host of node 0)")
    uses_ds = doc.data.get("deepspeed") not in (None, "")
    plan = plan_launch(config, uses_deepspeed=uses_ds, gpus=gpus, environ=os.environ, nnodes=nnodes,
                       node_rank=node_rank, master_addr=master_addr, master_port=master_port)  # fmt: skip
    for n in plan.notes:
        click.echo(f"cfgtune launch: note: {n}", err=True)
    if not no_lint:
        from tuner.launch.emit import lint_emitted
        from tuner.lint.rule import Severity

        result = lint_emitted(config, cwd=Path.cwd(), gpus=gpus)
        if result.error is not None:
            _fail("launch", str(result.error))
        errors = [v for v in result.violations if v.severity is Severity.ERROR]
        if errors:
            for v in errors:
                click.echo(f"{config}:{v.line}: {v.code} {v.message}", err=True)
            _fail("launch", f"{config} has {len(errors)} lint error(s); fix them or pass --no-lint", code=1)
    if dry_run:
        click.echo(plan.shell())
        return
    if shutil.which(plan.argv[0]) is None:
        _fail("launch", f"`{plan.argv[0]}` is not on PATH: install LLaMA-Factory (pip install llamafactory), or run "
              f"with --dry-run to see the command")  # fmt: skip
    click.echo(f"cfgtune launch: {plan.shell()}", err=True)
    try:
        code = subprocess.call(plan.argv, env={**os.environ, **plan.env})
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
