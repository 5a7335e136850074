"""`cfglint schema`: print or write the JSON Schema of LLaMA-Factory configs for editors.

Imported only when the subcommand runs (see ``tuner.cli.lint``), so `cfglint check` never loads the generator.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--command",
    "kind",
    type=click.Choice(["auto", "train", "infer", "chat", "export", "eval"]),
    default="auto",
    show_default=True,
    help="llamafactory-cli subcommand whose parser reads the file; `auto` chooses by the file's keys "
    "(`export_dir`: export, `task`: eval, else train).",
)
@click.option("--target-llamafactory", "lf", metavar="VERSION", help="LLaMA-Factory release: X.Y[.Z] or `auto` [default: 0.9.5, or the settings' `target-llamafactory`].")
@click.option("--target-transformers", "tf", metavar="VERSION", help="transformers release, a major (4, 5) or `auto` [default: the newest the LLaMA-Factory release accepts].")
@click.option("--transformers", "major", type=click.Choice(["4", "5"]), help="Shorthand for --target-transformers MAJOR.")
@click.option("-o", "--output-file", type=click.Path(dir_okay=False), help="Write the schema to this file instead of stdout.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    help="Write one schema per kind (config, train, infer, export, eval .schema.json) into this directory.",
)
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False), help="Settings TOML instead of the nearest .cfglint.toml/pyproject.toml.")
@click.option("--isolated", is_flag=True, help="Ignore settings files.")
def schema(
    kind: str,
    lf: str | None,
    tf: str | None,
    major: str | None,
    output_file: str | None,
    output_dir: str | None,
    settings_file: str | None,
    isolated: bool,
) -> None:
    """Print a JSON Schema (draft 2020-12) of a LLaMA-Factory config for the target versions.

    Every key the parser takes, with its type, default, choices and help; unknown keys are rejected. Point
    your editor at it (see the README) for completion, hover docs and typo underlines:

    \b
        # yaml-language-server: $schema=schemas/llamafactory-0.9.5/config.schema.json
    """
    from tuner.cli.check import UsageError, _target
    from tuner.config.document import InputError
    from tuner.config.json_schema import config_schema, dumps, write_all
    from tuner.lint.settings import Settings, load_settings

    if output_file and output_dir:
        raise click.UsageError("give --output-file or --output-dir, not both")
    try:
        settings = Settings() if isolated else load_settings(explicit=Path(settings_file) if settings_file else None)
        target = _target(settings, lf, tf, major)
    except (InputError, UsageError) as exc:
        raise click.UsageError(str(exc)) from None
    if output_dir:
        for path in write_all(output_dir, target):
            click.echo(f"wrote {path}", err=True)
        return
    text = dumps(config_schema(target, {"chat": "infer"}.get(kind, kind)))
    if output_file:
        Path(output_file).parent.mkdir(parents=True, exist_ok=True)  # `.vscode/` may not exist yet
        Path(output_file).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output_file}", err=True)
    else:
        click.echo(text, nl=False)
