"""The LLaMA-Factory and transformers versions a config is linted for.

Lint results must not depend on what happens to be installed beside cfglint: the same file gives the same
findings in a pre-commit environment (no transformers) and in a training venv. So the target versions are
stated, like ruff's ``target-version``: a flag or a setting, else fixed defaults (the latest releases cfglint
supports). ``auto`` opts in to the installed versions. The summary line of every report names them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering


@total_ordering
@dataclass(frozen=True)
class Version:
    """A release number, compared numerically (``0.9.10 > 0.9.9``)."""

    parts: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Version:
        """``"0.9.5"``, ``"v0.9.5"``, ``"4.57"`` or ``"5"``; pre-release tails (``.dev0``, ``rc1``) are dropped."""
        m = re.match(r"^\s*v?(\d+(?:\.\d+){0,2})", str(text))
        if not m:
            raise ValueError(f"not a version number: {text!r}")
        return cls(tuple(int(p) for p in m.group(1).split(".")))

    def _key(self) -> tuple[int, int, int]:
        p = (*self.parts, 0, 0, 0)
        return (p[0], p[1], p[2])

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def major(self) -> int:
        return self.parts[0]

    def __str__(self) -> str:
        return ".".join(str(p) for p in self.parts)


def v(text: str) -> Version:
    """Shorthand for :meth:`Version.parse`, for version boundaries in rules: ``ctx.lf >= v("0.9.2")``."""
    return Version.parse(text)


#: The newest releases cfglint knows; the defaults when nothing is stated.
DEFAULT_LLAMAFACTORY = Version.parse("0.9.5")
DEFAULT_TRANSFORMERS = Version.parse("4.57.1")


@dataclass(frozen=True)
class TargetVersions:
    """What the run will use. ``source`` says where each came from (``default``, ``--flag``, a settings file,
    ``installed``), for the summary line."""

    llamafactory: Version = DEFAULT_LLAMAFACTORY
    transformers: Version = DEFAULT_TRANSFORMERS
    source: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def transformers_major(self) -> int:
        return self.transformers.major

    def describe(self) -> str:
        """``LLaMA-Factory 0.9.5, transformers 4.57.1`` for the report's summary line."""
        return f"LLaMA-Factory {self.llamafactory}, transformers {self.transformers}"


#: The newest release of each transformers major that cfglint knows; ``--transformers 5`` means this one.
LATEST_TRANSFORMERS_OF_MAJOR = {4: Version.parse("4.57.1"), 5: Version.parse("5.8.0")}


def with_transformers_major(target: TargetVersions, major: int) -> TargetVersions:
    """``target`` with transformers set to the newest known release of ``major`` (``--transformers 5``)."""
    release = LATEST_TRANSFORMERS_OF_MAJOR.get(major, Version((major,)))
    return TargetVersions(target.llamafactory, release, {**target.source, "transformers": "stated"})
