"""What every reporter shares: options, counts, fix applicability, paths. No third-party imports here."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.lint.rule import Severity, Violation
from tuner.lint.runner import FileResult

if TYPE_CHECKING:
    from tuner.config.versions import TargetVersions

#: The pseudo rule an input error (unreadable file, invalid YAML, a DeepSpeed JSON that does not parse) is
#: reported under where a format has no other place for it (SARIF results). ``000`` keeps it clear of any
#: real rule of a ``CFG`` family, which would start at ``001``.
INPUT_ERROR_CODE = "CFG000"
INPUT_ERROR_NAME = "input-error"


@dataclass(frozen=True)
class Options:
    color: bool | None = None
    show_skipped: bool = False
    unsafe_fixes: bool = False
    root: Path | None = None
    target: TargetVersions | None = None  # the versions linted for; named in every format's summary


def linted_for(opts: Options) -> str | None:
    """``linted for LLaMA-Factory 0.9.5, transformers 5.6.0`` when the caller said which versions it assumed."""
    return f"linted for {opts.target.describe()}" if opts.target is not None else None


def with_versions(line: str, opts: Options) -> str:
    """A summary line with the versions assumed: ``Found 3 errors (linted for LLaMA-Factory 0.9.5, ...).``"""
    what = linted_for(opts)
    if what is None:
        return line
    if line.endswith("."):
        return f"{line[:-1]} ({what})."
    return f"{line} ({what})"  # "All checks passed! (linted for ...)"


@dataclass(frozen=True)
class Totals:
    errors: int
    warnings: int
    infos: int
    files_with_violations: int
    input_errors: int
    safe_fixes: int
    unsafe_fixes: int
    fixes_applied: int

    @property
    def violations(self) -> int:
        return self.errors + self.warnings + self.infos


def violations(results: Iterable[FileResult]) -> Iterator[Violation]:
    for r in results:
        yield from r.violations


def totals(results: list[FileResult]) -> Totals:
    vs = list(violations(results))
    return Totals(
        errors=sum(v.severity is Severity.ERROR for v in vs),
        warnings=sum(v.severity is Severity.WARNING for v in vs),
        infos=sum(v.severity is Severity.INFO for v in vs),
        files_with_violations=sum(1 for r in results if r.violations),
        input_errors=sum(1 for r in results if r.error is not None),
        safe_fixes=sum(1 for v in vs if v.fix is not None and v.fix.safe),
        unsafe_fixes=sum(1 for v in vs if v.fix is not None and not v.fix.safe),
        fixes_applied=sum(r.fixes_applied for r in results),
    )


def applicable(v: Violation, unsafe_fixes: bool) -> bool:
    """Whether ``--fix`` (with ``--unsafe-fixes`` when given) would fix this: the ``[*]`` mark."""
    return v.fix is not None and (v.fix.safe or unsafe_fixes)


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def severity_counts(t: Totals, *, keep_zero: bool) -> str:
    parts = [(t.errors, "error"), (t.warnings, "warning"), (t.infos, "info")]
    return ", ".join(plural(n, w) for n, w in parts if n or keep_zero)


def fixable_line(t: Totals, unsafe_fixes: bool) -> str | None:
    """ruff's hint: how many ``--fix`` would fix, and how many more need ``--unsafe-fixes``."""
    if unsafe_fixes:
        n = t.safe_fixes + t.unsafe_fixes
        if not n:
            return None
        flag = "`--fix --unsafe-fixes`" if t.unsafe_fixes else "`--fix`"
        return f"[*] {n} fixable with {flag}."
    if t.safe_fixes:
        more = f" ({t.unsafe_fixes} more with `--unsafe-fixes`)" if t.unsafe_fixes else ""
        return f"[*] {t.safe_fixes} fixable with `--fix`{more}."
    if t.unsafe_fixes:
        return f"No fixes available ({t.unsafe_fixes} with `--unsafe-fixes`)."
    return None


def skipped(results: Iterable[FileResult]) -> list[tuple[str, str]]:
    """Distinct (code, reason) pairs over all files, in code order: the same skip in ten files is one line."""
    return sorted({(code, why) for r in results for code, why in r.skipped.items()})


def relative(path: Path | str, root: Path | None) -> Path | None:
    """``path`` relative to ``root`` when it lies under it; None otherwise."""
    if root is None:
        return None
    p = Path(path)
    try:
        return p.relative_to(root)
    except ValueError:
        pass
    try:  # one side absolute, the other not, or a symlink on the way: compare resolved paths
        return p.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return None


def posix_path(path: Path | str, root: Path | None) -> str:
    """Relative to ``root`` with ``/`` separators when under it: CI systems match paths against the repository.

    Only the CI formats (SARIF, GitHub annotations) rewrite paths; the others print them as the user gave them.
    """
    rel = relative(path, root)
    return rel.as_posix() if rel is not None else Path(path).as_posix()


def one_line(text: str) -> str:
    """Formats that promise one line per problem must not let a message break that promise."""
    return " ".join(text.splitlines())


def grouped_skips(skips: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(reason, codes) with each reason once: six rules skipped for want of ``--hw`` are one line, not six."""
    by_reason: dict[str, list[str]] = {}
    for code, why in sorted(skips):
        codes = by_reason.setdefault(why, [])
        if code not in codes:
            codes.append(code)
    return sorted(by_reason.items(), key=lambda item: (item[1][0], item[0]))


def not_configs(results: Iterable[FileResult]) -> list[tuple[str, list[str]]]:
    """(reason, paths) for the files skipped as not LLaMA-Factory configs, each reason once."""
    by_reason: dict[str, list[str]] = {}
    for r in results:
        if r.not_a_config:
            by_reason.setdefault(r.skip_reason or "not a LLaMA-Factory config", []).append(str(r.path))
    return sorted(by_reason.items())


#: Where the rule documentation lives in the repository; each rule is a section of it (``cfglint rules --markdown``).
RULES_DOC = "docs/rules.md"


def rule_anchor(code: str, name: str) -> str:
    """The section id of a rule in docs/rules.md, as GitHub and GitLab derive it from ``## CODE `name```."""
    return f"{code.lower()}-{name}" if name else code.lower()


@functools.lru_cache(maxsize=1)  # metadata reads touch the file system: once per process
def repository_url() -> str | None:
    """The repository the installed package names (``[project.urls]`` Repository, Source or Homepage), if any."""
    try:
        from importlib.metadata import PackageNotFoundError, metadata

        entries: list[str] = [str(u) for u in metadata("cfgtune").get_all("Project-URL") or []]
    except (ImportError, PackageNotFoundError):
        return None
    urls = {}
    for entry in entries:
        label, _, url = entry.partition(",")
        if url.strip().startswith(("https://", "http://")):
            urls[label.strip().lower()] = url.strip().rstrip("/")
    for label in ("repository", "source", "source code", "homepage"):
        if label in urls:
            return urls[label]
    return None


def rule_url(code: str, name: str) -> str:
    """The rule's section in docs/rules.md: absolute when the package names its repository, otherwise the path
    relative to the repository root (``docs/rules.md#key001-unknown-key``). ``cfglint explain CODE`` prints
    the same text."""
    ref = f"{RULES_DOC}#{rule_anchor(code, name)}"
    base = repository_url()
    return f"{base}/blob/main/{ref}" if base else ref
