"""The shape of a rule: a small class with a code, a docstring that documents it, and ``check(ctx)``.

A rule yields :class:`Finding` objects; the runner turns them into :class:`Violation` objects with the
rule's code, name and severity, the position of the key in the file, and inline suppressions applied.

Docstring format (``cfglint explain CODE`` and the rule docs are generated from it)::

    One-line summary.

    Why it matters, in a paragraph or two.

    Bad:

    ```yaml
    lora_rank: 16
    lora_alpha: 256
    ```

    Good:

    ```yaml
    lora_rank: 16
    lora_alpha: 32
    ```
"""

from __future__ import annotations

import math

import enum
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeGuard

if TYPE_CHECKING:
    from tuner.config.context import Context


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


class Need(str, enum.Enum):
    """What a rule needs beyond the config text. A rule whose needs are unmet is skipped, never guessed."""

    HARDWARE = "hardware"  # --hw NAME (and --gpus N), or a detected GPU
    MODEL = "model"  # the model's architecture: config.json, the HF cache, or the catalog
    DATASET = "dataset"  # the dataset files and a tokenizer


class SkipRule(Exception):
    """Raised by ``check`` when a rule cannot judge this config; the runner lists it as skipped with the reason.

    For needs that are not one of :class:`Need` (host RAM, say): a rule never guesses.
    """


@dataclass(frozen=True)
class Edit:
    """Replace ``text[start:end]`` of one file with ``content``. Offsets are 0-based character indexes."""

    start: int
    end: int
    content: str
    path: Path | None = None  # None: the file the violation is in


@dataclass(frozen=True)
class Fix:
    """A set of edits applied together. Safe fixes keep the meaning the user intended; unsafe ones may not."""

    description: str
    edits: tuple[Edit, ...]
    safe: bool = True


@dataclass
class Finding:
    """What a rule reports: the key it is about, why, and how to fix it."""

    key: str | None
    message: str
    hint: str | None = None
    fix: Fix | None = None
    severity: Severity | None = None  # overrides the rule's default for this finding
    in_deepspeed: bool = False  # the key path is in the DeepSpeed JSON, not the YAML
    also: tuple[str, ...] = ()  # other keys that locate the finding when ``key`` is not in the file
    line: int | None = None  # locate by line (1-based) instead of by key: findings about comments
    #: The finding holds for the target release but not for every supported one: "llamafactory" or
    #: "transformers". When that side of the target was not stated (the fixed default), the runner reports it as
    #: info and asks for the version: the linter cannot know which release the file is meant for.
    depends_on_version: str | None = None
    column: int = 1
    end_column: int | None = None


@dataclass
class Violation:
    code: str
    name: str
    severity: Severity
    message: str
    path: Path
    key: str | None
    line: int
    column: int
    end_line: int
    end_column: int
    hint: str | None = None
    fix: Fix | None = None
    source_line: str = ""


@dataclass
class Example:
    title: str
    yaml: str


class Rule:
    """Base class of every rule. Subclasses set the class attributes and implement :meth:`check`."""

    code: ClassVar[str] = ""
    name: ClassVar[str] = ""
    severity: ClassVar[Severity] = Severity.WARNING
    needs: ClassVar[frozenset[Need]] = frozenset()
    #: Whether the fix this rule offers is safe, unsafe, or absent ("none"); shown by ``cfglint rules``.
    fixable: ClassVar[str] = "none"
    #: Run after every other rule, with :attr:`Context.run` describing that run (which rules ran, which
    #: suppressions were used): for rules about the lint run itself, such as unused suppressions.
    after_others: ClassVar[bool] = False

    def check(self, ctx: Context) -> Iterator[Finding]:  # pragma: no cover - interface
        raise NotImplementedError
        yield

    # -- documentation -----------------------------------------------------------------------------------
    @classmethod
    def doc(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")

    @classmethod
    def summary(cls) -> str:
        return cls.doc().split("\n", 1)[0].strip()

    @classmethod
    def examples(cls) -> list[Example]:
        """The fenced YAML blocks of the docstring with the label line before each (``Bad:``/``Good:``)."""
        out: list[Example] = []
        lines = cls.doc().splitlines()
        i = 0
        label = ""
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            if stripped.startswith("```"):
                block: list[str] = []
                i += 1
                while i < len(lines) and not lines[i].strip().startswith("```"):
                    block.append(lines[i])
                    i += 1
                out.append(Example(title=label.rstrip(":").strip() or "Example", yaml="\n".join(block) + "\n"))
                label = ""
            elif stripped:
                label = stripped
            i += 1
        return out

    @classmethod
    def bad_examples(cls) -> list[str]:
        return [e.yaml for e in cls.examples() if e.title.lower().startswith("bad")]

    @classmethod
    def good_examples(cls) -> list[str]:
        return [e.yaml for e in cls.examples() if e.title.lower().startswith("good")]


# -- small helpers every rule family needs ------------------------------------------------------------------------
def lf_stops(text: str) -> str:
    """How a message quotes a start-up refusal: ``LLaMA-Factory stops at start-up with "<its message>"``."""
    return f'LLaMA-Factory stops at start-up with "{text}"'


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float as YAML gives it: not a bool (``true`` is an int to Python), not inf or nan (YAML's
    ``.inf``/``.nan``), not an int too large for a float. Rules compare and multiply such values; the key schema
    and the numeric-range rules report the others."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
