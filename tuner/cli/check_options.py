"""The options of `cfglint check`, declared once as data.

Both the click command (help, errors, completion) and the fast path that skips importing click for a
well-formed pre-commit invocation are built from this table, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("full", "concise", "json", "sarif", "github", "gitlab", "junit")


@dataclass(frozen=True)
class Opt:
    names: tuple[str, ...]  # e.g. ("-o", "--output-file")
    dest: str
    kind: str  # flag | str | path | file | int1 (int >= 1) | float | choice
    help: str
    multiple: bool = False
    choices: tuple[str, ...] = ()
    metavar: str | None = None


CHECK_OPTIONS: tuple[Opt, ...] = (
    Opt(("--select",), "select", "str", "Only these rule codes or prefixes (comma-separated; ALL).", multiple=True, metavar="CODES"),
    Opt(("--ignore",), "ignore", "str", "Skip these rule codes or prefixes.", multiple=True, metavar="CODES"),
    Opt(("--extend-select",), "extend_select", "str", "Add codes to the selection from settings.", multiple=True, metavar="CODES"),
    Opt(("--fix",), "fix", "flag", "Apply safe fixes in place (comments and formatting survive)."),
    Opt(("--unsafe-fixes",), "unsafe_fixes", "flag", "With --fix or --diff, also apply fixes that may change meaning."),
    Opt(("--diff",), "diff", "flag", "Print the changes --fix would make as a unified diff on stdout, and write nothing (exit 1 when there are any)."),
    Opt(("--show-fixes",), "show_fixes", "flag", "List the findings --fix fixed (or --diff would fix), by file and rule."),
    Opt(("--format",), "fmt", "choice", "Output format [default: full on a terminal, else concise].", choices=FORMATS),
    Opt(("-o", "--output-file"), "output_file", "file", "Write the report to a file."),
    Opt(("--strict",), "strict", "flag", "Exit 1 on warnings too."),
    Opt(("--exit-zero",), "exit_zero", "flag", "Exit 0 even when findings are reported (2 still means the input could not be read)."),
    Opt(("--statistics",), "statistics", "flag", "Print how often each rule fired instead of the findings (JSON with --format json)."),
    Opt(("--stdin-filename",), "stdin_filename", "str", "The name of the file read from stdin (PATH `-`): for messages, settings and relative paths.", metavar="PATH"),
    Opt(("--hw",), "hw", "str", "GPU profile the run will use, e.g. h100-80g (see `cfgtune hw --list`).", metavar="NAME"),
    Opt(("--gpus",), "gpus", "int1", "GPUs per node the run will use."),
    Opt(("--nodes", "--nnodes"), "nodes", "int1", "Number of nodes the run will use."),
    Opt(("--data-root",), "data_root", "path", "The directory `llamafactory-cli` is launched from: relative `deepspeed`, `dataset_dir` and other paths resolve there, and a file missing there is reported [default: unknown, so such paths are not checked].", metavar="DIR"),
    Opt(("--model",), "model_spec", "str", "Model for architecture-aware rules (alias, dir or hub id) [default: model_name_or_path].", metavar="SPEC"),
    Opt(("--tokenizer",), "tokenizer", "path", "Tokenizer dir or tokenizer.json for dataset rules."),
    Opt(("--dataset-dir",), "dataset_dir", "path", "Overrides the config's dataset_dir."),
    Opt(("--host-ram",), "host_ram", "float", "Host RAM per node in GiB, for offload rules.", metavar="GIB"),
    Opt(("--target-llamafactory",), "target_llamafactory", "str", "LLaMA-Factory release the run uses: X.Y[.Z] (0.8.0 to 0.9.5) or `auto` (the installed one) [default: 0.9.5].", metavar="VERSION"),
    Opt(("--target-transformers",), "target_transformers", "str", "transformers release the run uses: X.Y[.Z], a major (4, 5) or `auto` [default: the newest the target LLaMA-Factory accepts].", metavar="VERSION"),
    Opt(("--transformers",), "transformers_major", "choice", "Shorthand for --target-transformers MAJOR: the newest known release of that major.", choices=("4", "5")),
    Opt(("--command",), "lf_command", "choice", "llamafactory-cli subcommand that reads the file [default: train].", choices=("train", "eval", "infer", "export")),
    Opt(("--show-skipped",), "show_skipped", "flag", "List rules that were skipped and why."),
    Opt(("--force-exclude",), "force_exclude", "flag", "Apply `exclude` settings to paths given explicitly (for pre-commit)."),
    Opt(("--settings",), "settings_file", "file", "Settings TOML instead of the nearest .cfglint.toml/pyproject.toml."),
    Opt(("--isolated",), "isolated", "flag", "Ignore settings files."),
)


def defaults() -> dict[str, object]:
    out: dict[str, object] = {}
    for o in CHECK_OPTIONS:
        out[o.dest] = () if o.multiple else (False if o.kind == "flag" else None)
    return out


def parse_fast(argv: list[str]) -> dict[str, object] | None:
    """Parse ``check ARGS`` without click, or return None to let click handle it (help, errors, anything odd)."""
    if not argv or argv[0] != "check":
        return None
    by_name = {n: o for o in CHECK_OPTIONS for n in o.names}
    params = defaults()
    paths: list[str] = []
    it = iter(argv[1:])
    for arg in it:
        if not arg.startswith("-") or arg == "-":
            paths.append(arg)
            continue
        name, eq, inline = arg.partition("=")
        opt = by_name.get(name)
        if opt is None:
            return None  # --help, --, unknown or combined short options: click explains
        if opt.kind == "flag":
            if eq:
                return None
            params[opt.dest] = True
            continue
        raw = inline if eq else next(it, None)
        if raw is None:
            return None
        value = _convert(opt, raw)
        if value is None:
            return None
        if opt.multiple:
            params[opt.dest] = (*params[opt.dest], value)  # type: ignore[misc]
        else:
            params[opt.dest] = value
    if not paths and not params["stdin_filename"]:
        return None
    params["paths"] = tuple(paths)
    if params["strict"] is False:
        params["strict"] = None  # unset: the settings file decides
    return params


def _convert(opt: Opt, raw: str) -> object | None:
    if opt.kind in ("str", "path", "file"):
        return raw if raw else None
    if opt.kind == "choice":
        return raw if raw in opt.choices else None
    if opt.kind == "int1":
        try:
            v = int(raw)
        except ValueError:
            return None
        return v if v >= 1 else None
    if opt.kind == "float":
        try:
            return float(raw)
        except ValueError:
            return None
    return None
