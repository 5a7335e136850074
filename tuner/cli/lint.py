"""`cfglint`: lint LLaMA-Factory training configs. Runs in pre-commit and CI, so it must start fast.

Exit codes: 0 clean or warnings only (``--strict`` makes warnings fail), 1 errors found, 2 usage or input
error (unreadable file, malformed YAML, unknown rule code, broken rule). A duplicate key or a DeepSpeed
JSON that cannot be read is a finding (FILE001, FILE002), not an exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from tuner import __version__
from tuner.cli.check_options import CHECK_OPTIONS, Opt
from tuner.cli.lazy import LazyGroup


@click.group(
    cls=LazyGroup,
    lazy_subcommands={
        "rules": "tuner.cli.lint_docs:rules",
        "explain": "tuner.cli.lint_docs:explain",
        "keys": "tuner.cli.lint_docs:keys",
        "schema": "tuner.cli.lint_schema:schema",
        "data": "tuner.cli.tune_data:data",
    },
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.version_option(__version__, prog_name="cfglint")
def cli() -> None:
    """Lint LLaMA-Factory training configs (and the DeepSpeed JSON they name) before they waste a GPU."""


def _click_option(opt: Opt) -> Callable[[Any], Any]:
    kw: dict[str, Any] = {"help": opt.help, "multiple": opt.multiple}
    if opt.metavar:
        kw["metavar"] = opt.metavar
    if opt.kind == "flag":
        kw["is_flag"] = True
        kw["default"] = None if opt.dest == "strict" else False
        kw.pop("multiple")
    elif opt.kind == "choice":
        kw["type"] = click.Choice(opt.choices)
    elif opt.kind == "int1":
        kw["type"] = click.IntRange(min=1)
    elif opt.kind == "float":
        kw["type"] = float
    elif opt.kind == "path":
        kw["type"] = click.Path()
    elif opt.kind == "file":
        kw["type"] = click.Path(dir_okay=False)
    return click.option(*opt.names, opt.dest, **kw)


def _with_check_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(CHECK_OPTIONS):
        fn = _click_option(opt)(fn)
    return fn


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@_with_check_options
def check(**params: Any) -> None:
    """Lint training configs. PATHS are YAML files or directories to search for *.yaml/*.yml; `-` reads stdin.

    YAML that is not a LLaMA-Factory config (CI workflows, k8s lists, multi-document files, docker-compose) is
    skipped and never fails the run; --show-skipped says why.
    """
    if not params["paths"] and not params["stdin_filename"]:
        raise click.UsageError("Missing argument 'PATHS...' (`-` reads stdin).")
    from tuner.cli.check import run_check

    sys.exit(run_check(params))


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
