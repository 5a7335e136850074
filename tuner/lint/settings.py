"""Project settings for cfglint: ``[tool.cfglint]`` in pyproject.toml, or a ``.cfglint.toml``.

The nearest file at or above the working directory wins; ``.cfglint.toml`` beats pyproject.toml in the same
directory. In ``.cfglint.toml`` the keys may sit at the top level or under ``[cfglint]``/``[tool.cfglint]``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.config.document import InputError

KNOWN = {
    "select", "ignore", "extend-select", "per-file-ignores", "exclude", "hw", "gpus", "nodes", "transformers",
    "strict", "command", "host-ram-gib", "tokenizer", "dataset-dir", "data-root", "target-llamafactory",
    "target-transformers",
}  # fmt: skip


@dataclass
class Settings:
    source: Path | None = None
    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    extend_select: list[str] = field(default_factory=list)
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=list)
    hw: str | None = None
    gpus: int | None = None
    nodes: int | None = None
    transformers: int | None = None  # a transformers major: shorthand for target-transformers
    target_llamafactory: str | None = None  # "0.9.3", "auto"
    target_transformers: str | None = None  # "4.57.1", "4", "auto"
    strict: bool = False
    command: str | None = None
    host_ram_gib: float | None = None
    tokenizer: str | None = None
    dataset_dir: str | None = None
    data_root: str | None = None  # where llamafactory-cli is launched from (relative to this file)

    def ignored_for(self, path: Path) -> list[str]:
        """Codes ignored for one file by ``per-file-ignores`` (globs relative to the settings file, see
        :func:`path_matches`)."""
        if not self.per_file_ignores:
            return []
        rel = _relative(path, self.source.parent if self.source else Path.cwd())
        out: list[str] = []
        for pattern, codes in self.per_file_ignores.items():
            if path_matches(pattern, rel):
                # ``ALL`` ignores every rule: the empty prefix, which every code starts with.
                out.extend("" if c == "ALL" else c for c in codes)
        return out

    def excluded(self, path: Path) -> bool:
        """Whether ``exclude`` names the file or a directory above it (globs as in :func:`path_matches`)."""
        if not self.exclude:
            return False
        rel = _relative(path, self.source.parent if self.source else Path.cwd())
        return any(path_matches(p, rel) for p in self.exclude)


def path_matches(pattern: str, rel: str) -> bool:
    """Whether a ``per-file-ignores``/``exclude`` glob matches ``rel``, a POSIX path relative to the settings file.

    Path-aware, as in .gitignore and ruff: ``*``, ``?`` and ``[...]`` never match ``/``, so ``configs/*.yaml``
    is the YAML files directly in configs/ and not configs/a/b/x.yaml; ``**`` matches any number of directories
    (``configs/**/*.yaml``, ``**/ci.yaml``). A pattern without ``/`` matches the file's name or any directory on
    its path (``run.yaml``, ``*_test.yaml``, ``third_party``); one with ``/`` is anchored at the settings file's
    directory and matches the path or a directory above the file (``configs/old`` covers everything under it).
    """
    pattern = pattern.strip()
    while pattern.startswith("./"):
        pattern = pattern[2:]
    pattern = pattern.lstrip("/").rstrip("/")
    if not pattern:
        return False
    rx = _glob_regex(pattern)
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if "/" not in pattern:
        return any(rx.match(part) for part in parts)
    return any(rx.match("/".join(parts[:i])) for i in range(1, len(parts) + 1))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):  # `**/`: zero or more directories
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^") else i + 1)) != -1:
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            out.append(("[^/" if negate else "[") + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib


def find_settings_file(start: Path) -> tuple[Path, dict[str, Any]] | None:
    for directory in [start.resolve(), *start.resolve().parents]:
        dotfile = directory / ".cfglint.toml"
        if dotfile.is_file():
            data = _read(dotfile, _toml())
            table = data.get("tool", {}).get("cfglint") or data.get("cfglint") or data
            return dotfile, table
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and "cfglint" in pyproject.read_text(encoding="utf-8", errors="replace"):
            data = _read(pyproject, _toml())
            table = data.get("tool", {}).get("cfglint")
            if table is not None:
                return pyproject, table
    return None


def _read(path: Path, tomllib: Any) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read settings: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, f"invalid TOML: {exc}") from None


def _codes(value: Any, path: Path, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(path, f"[tool.cfglint] `{key}` must be a list of rule codes or prefixes")
    return [v.strip().upper() for v in value for v in v.split(",") if v.strip()]


def _check_per_file_codes(table: dict[str, list[str]], path: Path) -> None:
    """A misspelled code in ``per-file-ignores`` is refused, as ``ignore`` refuses it (``ALL`` is every rule)."""
    if not any(table.values()):
        return
    from tuner.lint.registry import load_registry, matches

    known = list(load_registry().rules)
    for pattern, codes in table.items():
        unknown = [c for c in codes if not any(matches(k, c) for k in known)]
        if unknown:
            raise InputError(
                path, f"[tool.cfglint] `per-file-ignores` \"{pattern}\": unknown rule code or prefix: {', '.join(unknown)}"
            )


def load_settings(start: Path | None = None, explicit: Path | None = None) -> Settings:
    if explicit is not None:
        if not explicit.is_file():
            raise InputError(explicit, "settings file not found")
        data = _read(explicit, _toml())
        found: tuple[Path, dict[str, Any]] | None = (explicit, data.get("tool", {}).get("cfglint") or data.get("cfglint") or data)
    else:
        found = find_settings_file(start or Path.cwd())
    if found is None:
        return Settings()
    path, table = found
    unknown = sorted(set(table) - KNOWN)
    if unknown:
        raise InputError(path, f"unknown [tool.cfglint] setting(s): {', '.join(unknown)} (known: {', '.join(sorted(KNOWN))})")
    s = Settings(source=path)
    s.select = _codes(table.get("select", []), path, "select")
    s.ignore = _codes(table.get("ignore", []), path, "ignore")
    s.extend_select = _codes(table.get("extend-select", []), path, "extend-select")
    pfi = table.get("per-file-ignores", {})
    if not isinstance(pfi, dict):
        raise InputError(path, "[tool.cfglint] `per-file-ignores` must be a table of glob = [codes]")
    s.per_file_ignores = {str(k): _codes(v, path, f"per-file-ignores.{k}") for k, v in pfi.items()}
    _check_per_file_codes(s.per_file_ignores, path)
    exclude = table.get("exclude", [])
    if isinstance(exclude, str):
        exclude = [exclude]
    s.exclude = [str(e) for e in exclude]
    for key, attr, typ in (
        ("hw", "hw", str),
        ("gpus", "gpus", int),
        ("nodes", "nodes", int),
        ("transformers", "transformers", int),
        ("strict", "strict", bool),
        ("command", "command", str),
        ("host-ram-gib", "host_ram_gib", (int, float)),
        ("tokenizer", "tokenizer", str),
        ("dataset-dir", "dataset_dir", str),
        ("data-root", "data_root", str),
        ("target-llamafactory", "target_llamafactory", (str, int, float)),
        ("target-transformers", "target_transformers", (str, int, float)),
    ):
        if key in table:
            value = table[key]
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                raise InputError(path, f"[tool.cfglint] `{key}` has the wrong type ({type(value).__name__})")
            setattr(s, attr, str(value) if key.startswith("target-") else value)
    return s
