"""`cfgtune`: the GPU side. Each subcommand lives in its own module and is imported only when run."""

from __future__ import annotations

import sys

import click

from tuner import __version__
from tuner.cli.lazy import LazyGroup


@click.group(
    cls=LazyGroup,
    lazy_subcommands={
        "hw": "tuner.cli.tune_hw:hw",
        "estimate": "tuner.cli.tune_estimate:estimate",
        "data": "tuner.cli.tune_data:data",
        "auto": "tuner.cli.tune_auto:auto",
        "launch": "tuner.cli.tune_launch:launch",
        "worker": "tuner.cli.tune_worker:worker",
    },
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.version_option(__version__, prog_name="cfgtune")
def cli() -> None:
    """Detect GPUs, estimate memory, and tune LLaMA-Factory configs with short real training trials."""


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
