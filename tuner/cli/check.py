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
    host_ram: float | None = None,
    transformers_major: str | None = None,
    lf_command: str | None = None,
    show_skipped: bool = False,
    force_exclude: bool = False,
    settings_file: str | None = None,
    isolated: bool = False,
) -> int:
    from tuner.config.document import InputError
    from tuner.config.context import LintOptions
    from tuner.config.versions import TargetVersions, with_transformers_major
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

    options = LintOptions(
        hw=hw or settings.hw,
        gpus=gpus or settings.gpus,
        nodes=nodes or settings.nodes or 1,
        target=with_transformers_major(
            TargetVersions(),
            int(transformers_major) if transformers_major else settings.transformers or _installed_transformers_major(),
        ),
        command=lf_command or settings.command or None,
        model=model_spec,
        tokenizer=tokenizer or settings.tokenizer,
        dataset_dir=dataset_dir or settings.dataset_dir,
        host_ram_gib=host_ram if host_ram is not None else settings.host_ram_gib,
    )
    if options.hw:
        _check_hw(options.hw)

    files = _expand(paths)
    if not files:
        raise UsageError("no YAML files found in " + ", ".join(paths))
    results: list[FileResult] = []
    for path in files:
        if settings.excluded(path) and (force_exclude or any(Path(p).is_dir() for p in paths)):
            continue
        per_file_ignored = settings.ignored_for(path)
        rules = [cls() for cls in chosen if not any(cls.code.startswith(c) for c in per_file_ignored)]
        results.append(
            lint_file(path, rules, options, fix=fix or diff, unsafe_fixes=unsafe_fixes, write=fix and not diff)
        )

    from tuner.report import render

    stream = open(output_file, "w", encoding="utf-8") if output_file else sys.stdout  # noqa: SIM115
    try:
        if diff:
            for r in results:
                if r.diff:
                    stream.write(r.diff)
        fmt = fmt or ("full" if (stream.isatty() and not output_file) else "concise")
        render(
            fmt,
            results,
            {cls.code: cls for cls in registry.sorted()},
            stream,
            show_skipped=show_skipped,
            unsafe_fixes=unsafe_fixes,
            root=Path.cwd(),
        )
    finally:
        if output_file:
            stream.close()

    strict = strict if strict is not None else settings.strict
    if any(r.error is not None or r.rule_errors for r in results):
        return 2
    if diff and any(r.diff for r in results):
        return 1
    errors = sum(1 for r in results for v in r.violations if v.severity.value == "error")
    warnings = sum(1 for r in results for v in r.violations if v.severity.value == "warning")
    return 1 if errors or (strict and warnings) else 0




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


def _installed_transformers_major() -> int:
    """The transformers major a run on this machine would use, without importing transformers.

    ``CFGLINT_TRANSFORMERS`` overrides it. Without transformers installed (pre-commit, CI) it is 4: LLaMA-Factory
    supports both majors, and 4 is the stricter reading (it refuses ``warmup_steps: 0.1``). Projects on 5 set
    ``transformers = 5`` in ``[tool.cfglint]``.
    """
    forced = os.environ.get("CFGLINT_TRANSFORMERS", "").strip()
    if forced in ("4", "5"):
        return int(forced)
    from tuner.lint.distributions import installed_version

    found = installed_version("transformers")
    try:
        return int(found.split(".")[0]) if found else 4
    except ValueError:
        return 4
