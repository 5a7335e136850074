"""Find rules: every :class:`Rule` subclass with a code in ``tuner.rules``, plus ``cfglint.rules`` plugins.

A plugin entry point names a module (every Rule in it is taken) or a single Rule class.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType

from tuner.lint.rule import Rule

_CODE = re.compile(r"^[A-Z]{2,8}[0-9]{3}$")


class RuleError(Exception):
    """A broken rule or plugin: a message for the user, exit code 2."""


@dataclass
class Registry:
    rules: dict[str, type[Rule]] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # code -> module or plugin name
    plugin_errors: list[str] = field(default_factory=list)

    def add(self, cls: type[Rule], origin: str) -> None:
        code = cls.code
        if not _CODE.match(code):
            raise RuleError(f"{origin}: rule {cls.__name__} has an invalid code {code!r} (expected e.g. LORA001)")
        if not cls.name or not re.match(r"^[a-z0-9]+(-[a-z0-9]+)*$", cls.name):
            raise RuleError(f"{origin}: rule {code} needs a kebab-case `name`, got {cls.name!r}")
        if code in self.rules and self.rules[code] is not cls:
            raise RuleError(f"rule code {code} is defined twice: in {self.origins[code]} and in {origin}")
        self.rules[code] = cls
        self.origins[code] = origin

    def sorted(self) -> list[type[Rule]]:
        return [self.rules[c] for c in sorted(self.rules, key=_code_key)]

    def get(self, code: str) -> type[Rule] | None:
        return self.rules.get(code.upper())


def _code_key(code: str) -> tuple[str, int]:
    m = re.match(r"([A-Z]+)(\d+)", code)
    return (m.group(1), int(m.group(2))) if m else (code, 0)


def _rules_in(module: ModuleType) -> Iterable[type[Rule]]:
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, Rule) and obj is not Rule and obj.code and obj.__module__ == module.__name__:
            yield obj


def builtin_modules() -> list[str]:
    import tuner.rules as pkg  # type: ignore[import-not-found]  # rules/ is mapped to tuner.rules at install

    return [f"tuner.rules.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]


def load_registry(*, plugins: bool = True) -> Registry:
    reg = Registry()
    for name in builtin_modules():
        module = importlib.import_module(name)
        for cls in _rules_in(module):
            reg.add(cls, name)
    if plugins:
        _load_plugins(reg)
    return reg


def _load_plugins(reg: Registry) -> None:
    from tuner.lint.distributions import entry_points

    for name, value in entry_points("cfglint.rules"):
        origin = f"plugin {name} ({value})"
        try:
            module_name, _, attr = value.partition(":")
            obj: object = importlib.import_module(module_name.strip())
            for part in filter(None, attr.strip().split(".")):
                obj = getattr(obj, part)
        except Exception as exc:  # a broken plugin must not take the linter down
            reg.plugin_errors.append(f"{origin}: cannot load: {exc.__class__.__name__}: {exc}")
            continue
        if inspect.ismodule(obj):
            for cls in _rules_in(obj):
                reg.add(cls, origin)
        elif inspect.isclass(obj) and issubclass(obj, Rule):
            reg.add(obj, origin)
        else:
            reg.plugin_errors.append(f"{origin}: is neither a module nor a Rule subclass")


def matches(code: str, selector: str) -> bool:
    """A selector is a full code, a prefix (``LORA``, ``LORA0``), or ``ALL``."""
    selector = selector.strip().upper()
    return selector == "ALL" or code.startswith(selector)


def select_rules(
    registry: Registry, select: Iterable[str] = (), ignore: Iterable[str] = (), extend_select: Iterable[str] = ()
) -> list[type[Rule]]:
    select = [s for s in select if s.strip()]
    ignore = [s for s in ignore if s.strip()]
    extend_select = [s for s in extend_select if s.strip()]
    unknown = [s for s in [*select, *ignore, *extend_select] if not any(matches(c, s) for c in registry.rules)]
    if unknown:
        raise RuleError(f"unknown rule code or prefix: {', '.join(unknown)} (see `cfglint rules`)")
    chosen = []
    for cls in registry.sorted():
        picked = (not select or any(matches(cls.code, s) for s in select)) or any(
            matches(cls.code, s) for s in extend_select
        )
        if picked and not _ignored(cls.code, select, ignore):
            chosen.append(cls)
    return chosen


def _ignored(code: str, select: list[str], ignore: list[str]) -> bool:
    """The more specific selector wins, as in ruff: ``--select LORA001 --ignore LORA`` keeps LORA001."""
    best_ignore = max((len(s) for s in ignore if matches(code, s)), default=-1)
    best_select = max((len(s) for s in select if matches(code, s)), default=-1)
    return best_ignore >= 0 and best_ignore >= best_select
