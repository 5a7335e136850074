"""`cfglint check` itself: settings, rule selection, linting, reporting, exit code. No click here.

Kept free of click so that the entry point can run a well-formed pre-commit invocation without importing it
(see ``tuner.cli.entry``); the click command in ``tuner.cli.lint`` calls the same function.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache", ".pytest_cache"}


class UsageError(Exception):
    """A problem with the invocation or the settings: printed as ``cfglint: error: ...``, exit code 2."""


def _split(values: tuple[str, ...]) -> list[str]:
    return [p.strip().upper() for v in values for p in v.split(",") if p.strip()]


def _expand(paths: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
                out.extend(Path(root) / f for f in sorted(files) if f.endswith((".yaml", ".yml")))
        else:
            out.append(p)
    return out


def run_check(params: dict[str, Any]) -> int:
    """Lint the files and print the report; return the exit code."""
    try:
        return _run(**params)
    except UsageError as exc:
        sys.stderr.write(f"cfglint: error: {exc}\n")
        return 2


def _run(
    paths: tuple[str, ...],
    select: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
    extend_select: tuple[str, ...] = (),
    fix: bool = False,
    unsafe_fixes: bool = False,
    diff: bool = False,
    fmt: str | None = None,
    output_file: str | None = None,
    strict: bool | None = None,
    hw: str | None = None,
    gpus: int | None = None,
    nodes: int | None = None,
    model_spec: str | None = None,
    tokenizer: str | None = None,
    dataset_dir: str | None = None,
    data_root: str | None = None,
    host_ram: float | None = None,
    transformers_major: str | None = None,
    target_llamafactory: str | None = None,
    target_transformers: str | None = None,
    lf_command: str | None = None,
    show_skipped: bool = False,
    force_exclude: bool = False,
    settings_file: str | None = None,
    isolated: bool = False,
    exit_zero: bool = False,
    statistics: bool = False,
    stdin_filename: str | None = None,
    show_fixes: bool = False,
) -> int:
    from tuner.config.document import InputError
    from tuner.config.context import LintOptions
    from tuner.lint.registry import RuleError, load_registry, select_rules
    from tuner.lint.runner import FileResult, lint_file
    from tuner.lint.settings import Settings, load_settings

    try:
        settings = Settings() if isolated else load_settings(explicit=Path(settings_file) if settings_file else None)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    try:
        registry = load_registry()
        base_select = _split(select) or settings.select
        base_ignore = _split(ignore) or settings.ignore
        chosen = select_rules(registry, base_select, base_ignore, [*settings.extend_select, *_split(extend_select)])
    except RuleError as exc:
        raise UsageError(str(exc)) from None
    for problem in registry.plugin_errors:
        sys.stderr.write(f"cfglint: warning: {problem}\n")

    target = _target(settings, target_llamafactory, target_transformers, transformers_major)
    options = LintOptions(
        hw=hw or settings.hw,
        gpus=gpus or settings.gpus,
        nodes=nodes or settings.nodes or 1,
        target=target,
        command=lf_command or settings.command or None,
        model=model_spec,
        tokenizer=tokenizer or settings.tokenizer,
        dataset_dir=dataset_dir or settings.dataset_dir,
        host_ram_gib=host_ram if host_ram is not None else settings.host_ram_gib,
        **_launch_dir(data_root, settings),
    )
    if options.hw:
        _check_hw(options.hw)

    if not paths and stdin_filename:
        paths = ("-",)  # ruff's habit: a stdin name alone means "read stdin"
    if not paths:
        raise UsageError("no paths given (use `-` to read stdin)")
    stdin = "-" in paths
    if stdin and len(paths) > 1:
        raise UsageError("`-` (stdin) cannot be combined with other paths")
    stdin_text = _read_stdin() if stdin else None
    files = [Path(stdin_filename or "-")] if stdin else _expand(paths)
    if not files:
        raise UsageError("no YAML files found in " + ", ".join(paths))
    results: list[FileResult] = []
    for path in files:
        if settings.excluded(path) and (force_exclude or stdin or any(Path(p).is_dir() for p in paths)):
            continue
        per_file_ignored = settings.ignored_for(path)
        rules = [cls() for cls in chosen if not any(cls.code.startswith(c) for c in per_file_ignored)]
        results.append(
            lint_file(
                path,
                rules,
                options,
                fix=fix or diff,
                unsafe_fixes=unsafe_fixes,
                write=fix and not diff and not stdin,
                text=stdin_text,
            )
        )

    rule_classes = {cls.code: cls for cls in registry.sorted()}
    stream = open(output_file, "w", encoding="utf-8") if output_file else sys.stdout  # noqa: SIM115
    try:
        if diff:
            # ruff's --diff: stdout is a clean unified diff; what would be fixed, and input errors, go to stderr.
            for r in results:
                if r.diff:
                    stream.write(r.diff)
            _diff_summary(results, rule_classes, show_fixes)
        elif stdin and fix:
            # ruff's `--fix -`: the fixed text on stdout (for editors), the report on stderr.
            fixed = results[0].fixed_text if results and results[0].fixed_text is not None else None
            sys.stdout.write(fixed if fixed is not None else stdin_text or "")
            _report(fmt or "concise", results, rule_classes, sys.stderr, show_skipped, unsafe_fixes, options, statistics)
            if show_fixes:
                _fixes_listing(results, sys.stderr, "Fixed")
        else:
            fmt = fmt or ("full" if (stream.isatty() and not output_file) else "concise")
            _report(fmt, results, rule_classes, stream, show_skipped, unsafe_fixes, options, statistics)
            if show_fixes and fix:
                _fixes_listing(results, stream if fmt in ("full", "concise") else sys.stderr, "Fixed")
    finally:
        if output_file:
            stream.close()

    strict = strict if strict is not None else settings.strict
    if any(r.error is not None or r.rule_errors for r in results):
        return 2
    if exit_zero:
        return 0
    if diff:
        return 1 if any(r.diff for r in results) else 0
    errors = sum(1 for r in results for v in r.violations if v.severity.value == "error")
    warnings = sum(1 for r in results for v in r.violations if v.severity.value == "warning")
    return 1 if errors or (strict and warnings) else 0


def _read_stdin() -> str:
    """The config piped in for ``cfglint check -``; the same size limit as a file, and UTF-8 like one."""
    from tuner.config.loader import MAX_BYTES, decode_text

    raw = sys.stdin.buffer.read(MAX_BYTES + 1) if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    if len(raw) > MAX_BYTES:
        raise UsageError(f"stdin: more than {MAX_BYTES // 1024 // 1024} MiB; a config is a few KiB")
    from tuner.config.document import InputError

    try:
        return decode_text(raw, "-")
    except InputError as exc:
        raise UsageError(str(exc)) from None


def _report(
    fmt: str,
    results: list[Any],
    rules: dict[str, Any],
    stream: Any,
    show_skipped: bool,
    unsafe_fixes: bool,
    options: Any,
    statistics: bool,
) -> None:
    if statistics:
        from tuner.report.statistics import render_statistics

        render_statistics(results, stream, as_json=fmt == "json", unsafe_fixes=unsafe_fixes)
        return
    from tuner.report import render

    render(
        fmt,
        results,
        rules,
        stream,
        show_skipped=show_skipped,
        unsafe_fixes=unsafe_fixes,
        root=Path.cwd(),
        target=options.target,
    )


def _diff_summary(results: list[Any], rules: dict[str, Any], show_fixes: bool) -> None:
    """``--diff`` on stderr: input errors, and ruff's "Would fix N errors." (never "Applied": nothing is written)."""
    from tuner.report._common import plural

    for r in results:
        if r.error is not None:
            sys.stderr.write(f"{r.error.path}{_where(r.error)}: error: {r.error.message}\n")
        for msg in r.rule_errors:
            sys.stderr.write(f"{r.path}: error: {msg}\n")
    n = sum(len(r.fixed) for r in results)
    if n:
        sys.stderr.write(f"Would fix {plural(n, 'error')}.\n")
        if show_fixes:
            _fixes_listing(results, sys.stderr, "Would fix")
    else:
        sys.stderr.write("No errors would be fixed.\n")


def _where(err: Any) -> str:
    if err.line is None:
        return ""
    return f":{err.line}" + (f":{err.column}" if err.column is not None else "")


def _fixes_listing(results: list[Any], stream: Any, verb: str) -> None:
    """ruff's ``--show-fixes``: what the fixes removed, per file and rule."""
    from collections import Counter

    from tuner.report._common import plural

    fixed = [r for r in results if r.fixed]
    if not fixed:
        stream.write(f"No errors {'fixed' if verb == 'Fixed' else 'would be fixed'}.\n")
        return
    total = sum(len(r.fixed) for r in fixed)
    stream.write(f"{verb} {plural(total, 'error')}:\n")
    for r in fixed:
        stream.write(f"- {r.path}:\n")
        for (code, name), count in sorted(Counter(r.fixed).items()):
            stream.write(f"    {count} x {code} ({name})\n")


def _check_hw(name: str) -> None:
    """An unknown --hw is a usage error, not a silently skipped rule."""
    try:
        from tuner.hardware.profiles import get_profile
    except ImportError:  # pragma: no cover - the hardware package is part of the distribution
        return
    try:
        get_profile(name)
    except LookupError as exc:
        raise UsageError(f"--hw: {exc.args[0] if exc.args else exc}") from None


def _target(settings: Any, lf: str | None, tf: str | None, major: str | None) -> Any:
    """The target versions: flags over settings over fixed defaults; never the environment unless ``auto``.

    ``--transformers 4|5`` (and the ``transformers`` setting) are shorthand for ``--target-transformers 4|5``.
    A LLaMA-Factory outside the supported releases is a usage error; a transformers outside what the target
    LLaMA-Factory accepts is a warning on stderr (LLaMA-Factory refuses to start with it unless
    ``DISABLE_VERSION_CHECK=1``), and linting goes on for that combination.
    """
    from tuner.config.versions import TargetError, resolve_target

    where = f"[tool.cfglint] in {settings.source}" if settings.source else "settings"
    if lf is not None:
        lf_value, lf_from = lf, "--target-llamafactory"
    elif settings.target_llamafactory is not None:
        lf_value, lf_from = settings.target_llamafactory, f"`target-llamafactory` ({where})"
    else:
        lf_value, lf_from = None, "default"
    if tf is not None:
        tf_value, tf_from = tf, "--target-transformers"
    elif major is not None:
        tf_value, tf_from = major, "--transformers"
    elif settings.target_transformers is not None:
        tf_value, tf_from = settings.target_transformers, f"`target-transformers` ({where})"
    elif settings.transformers is not None:
        tf_value, tf_from = str(settings.transformers), f"`transformers` ({where})"
    else:
        tf_value, tf_from = None, "default"
    try:
        target, warnings = resolve_target(lf_value, tf_value, llamafactory_from=lf_from, transformers_from=tf_from)
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    for line in warnings:
        sys.stderr.write(f"cfglint: warning: {line}\n")
    return target


def _launch_dir(data_root: str | None, settings: Any) -> dict[str, Any]:
    """``cwd`` and ``launch_dir_stated`` for LintOptions from ``--data-root`` or the ``data-root`` setting.

    Where ``llamafactory-cli`` runs decides where relative paths resolve; cfglint only reports a missing file
    once the user has said so. A relative ``data-root`` in a settings file is relative to that file.
    """
    if data_root:
        root = Path(data_root)
    elif settings.data_root:
        root = Path(settings.data_root)
        if not root.is_absolute() and settings.source is not None:
            root = settings.source.parent / root
    else:
        return {}
    if not root.is_dir():
        raise UsageError(f"--data-root {root}: not a directory")
    return {"cwd": root.resolve(), "launch_dir_stated": True}
