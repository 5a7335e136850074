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


#: Every transformers release from 4.41 (the oldest any supported LLaMA-Factory accepts) to the newest that a
#: supported LLaMA-Factory (or its development head) accepts, as published (no 4.46.0, 4.52.0 or 4.57.0).
#: ``--transformers 4`` means the newest of these that the target LLaMA-Factory accepts.
TRANSFORMERS_RELEASES: tuple[Version, ...] = tuple(
    Version.parse(t)
    for t in (  # noqa: SIM905 - one line of release numbers per row reads better than 80 quoted strings
        "4.41.0 4.41.1 4.41.2 4.42.0 4.42.1 4.42.2 4.42.3 4.42.4 4.43.0 4.43.1 4.43.2 4.43.3 4.43.4 4.44.0 4.44.1 "
        "4.44.2 4.45.0 4.45.1 4.45.2 4.46.1 4.46.2 4.46.3 4.47.0 4.47.1 4.48.0 4.48.1 4.48.2 4.48.3 4.49.0 4.50.0 "
        "4.50.1 4.50.2 4.50.3 4.51.0 4.51.1 4.51.2 4.51.3 4.52.1 4.52.2 4.52.3 4.52.4 4.53.0 4.53.1 4.53.2 4.53.3 "
        "4.54.0 4.54.1 4.55.0 4.55.1 4.55.2 4.55.3 4.55.4 4.56.0 4.56.1 4.56.2 4.57.1 4.57.2 4.57.3 4.57.4 4.57.5 "
        "4.57.6 5.0.0 5.1.0 5.2.0 5.3.0 5.4.0 5.5.0 5.5.1 5.5.2 5.5.3 5.5.4 5.6.0 5.6.1 5.6.2 5.7.0 5.8.0"
    ).split()
)

#: The newest LLaMA-Factory release cfglint knows, and the default target. Keep equal to the newest tag in the
#: generated key schema (tests check it).
DEFAULT_LLAMAFACTORY = Version.parse("0.9.5")
#: The oldest LLaMA-Factory release cfglint supports.
OLDEST_LLAMAFACTORY = Version.parse("0.8.0")
#: The newest transformers release that LLaMA-Factory 0.9.5 accepts (``check_dependencies``:
#: ``transformers>=4.55.0,<=5.6.0``): what a fresh ``pip install llamafactory==0.9.5`` gets.
DEFAULT_TRANSFORMERS = Version.parse("5.6.0")


class TargetError(ValueError):
    """A target version cfglint cannot lint for (a usage error, exit 2)."""


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

    def stated(self, side: str) -> bool:
        """Whether the user gave this side (``llamafactory`` or ``transformers``) rather than the fixed default:
        only then can a finding that holds for some releases be reported at full severity."""
        return self.source.get(side) != "default"

    def describe(self) -> str:
        """``LLaMA-Factory 0.9.5, transformers 5.6.0`` for the report's summary line."""
        return f"LLaMA-Factory {label(self.llamafactory)}, transformers {self.transformers}"

    def as_dict(self) -> dict[str, str]:
        """``{"llamafactory": "0.9.5", "transformers": "5.6.0"}`` for machine-readable reports."""
        return {"llamafactory": label(self.llamafactory), "transformers": str(self.transformers)}


def matches(version: Version, requirement: str) -> bool:
    """Whether ``version`` satisfies a pip-style requirement such as ``>=4.45.0,<=4.52.4,!=4.46.*,!=4.52.0``.

    Only the operators LLaMA-Factory's ``check_dependencies`` uses: ``>=``, ``<=``, ``>``, ``<``, ``==``, ``!=``
    (with ``.*`` prefixes). An empty requirement matches everything.
    """
    for clause in filter(None, (c.strip() for c in requirement.split(","))):
        m = re.match(r"^(>=|<=|==|!=|>|<)\s*([\d.]+)(\.\*)?$", clause)
        if not m:
            continue  # a marker or an operator LLaMA-Factory does not use: not ours to judge
        op, text, wildcard = m.groups()
        if wildcard:
            prefix = Version.parse(text).parts
            hit = version.parts[: len(prefix)] == prefix
            if (op == "==" and not hit) or (op == "!=" and hit):
                return False
            continue
        other = Version.parse(text)
        ok = {
            ">=": version >= other, "<=": version <= other, ">": version > other, "<": version < other,
            "==": version == other, "!=": version != other,
        }[op]  # fmt: skip
        if not ok:
            return False
    return True


def newest_transformers(major: int, llamafactory: Version = DEFAULT_LLAMAFACTORY) -> Version:
    """The newest known transformers release of ``major`` that ``llamafactory`` accepts, else the newest known of
    that major (``--transformers 5`` with a LLaMA-Factory that predates transformers 5: a warning follows).

    LLaMA-Factory 0.8.x declared no upper bound; for them "accepts" also means "not newer than what the next
    release with an upper bound accepted" (0.9.0: ``<=4.45.0``), not a transformers published a year later.
    """
    ours = [r for r in TRANSFORMERS_RELEASES if r.major == major]
    if not ours:
        raise TargetError(f"transformers {major}.x is not a major cfglint knows (it knows 4 and 5)")
    requirement = transformers_requirement(llamafactory)
    cap = _upper_cap(llamafactory)
    accepted = [r for r in ours if matches(r, requirement) and (cap is None or r <= cap)]
    accepted = accepted or [r for r in ours if matches(r, requirement)]
    return max(accepted or ours)


def default_transformers(llamafactory: Version) -> Version:
    """The transformers a LLaMA-Factory release is linted with when none is stated: the newest it accepts."""
    if llamafactory == DEFAULT_LLAMAFACTORY:
        return DEFAULT_TRANSFORMERS
    requirement = transformers_requirement(llamafactory)
    cap = _upper_cap(llamafactory)
    accepted = [r for r in TRANSFORMERS_RELEASES if matches(r, requirement) and (cap is None or r <= cap)]
    return max(accepted) if accepted else DEFAULT_TRANSFORMERS


def _upper_cap(llamafactory: Version) -> Version | None:
    """The first ``<=`` bound declared by this release or a later one (None when no release declares one)."""
    from tuner.config._schema_data import SCHEMA

    for tag in llamafactory_releases():
        if tag < release_of(llamafactory):
            continue
        m = re.search(r"<=\s*([\d.]+)", str(SCHEMA["llamafactory"][str(tag)]["transformers"]))
        if m:
            return Version.parse(m.group(1))
    return None


def with_transformers_major(target: TargetVersions, major: int) -> TargetVersions:
    """``target`` with transformers set to the newest known release of ``major`` (``--transformers 5``)."""
    release = newest_transformers(major, target.llamafactory)
    return TargetVersions(target.llamafactory, release, {**target.source, "transformers": "stated"})


# -- the releases the key schema was generated from ----------------------------------------------------------


def llamafactory_releases() -> tuple[Version, ...]:
    """The LLaMA-Factory release tags in the key schema, oldest first (``0.8.0`` ... the newest ``0.9.x``)."""
    from tuner.config._schema_data import SCHEMA

    return tuple(Version.parse(t) for t in SCHEMA["llamafactory_versions"])


def label(llamafactory: Version) -> str:
    """How a LLaMA-Factory version is named: ``0.9.5``, or ``0.9.6.dev0`` for the development head in the table."""
    from tuner.config._schema_data import SCHEMA

    entry = SCHEMA["llamafactory"].get(str(llamafactory))
    return str(entry.get("label", llamafactory)) if entry else str(llamafactory)


def release_of(llamafactory: Version) -> Version:
    """The release tag whose code a version runs: the newest tag not after it (``0.9.2.post1`` runs ``0.9.2``)."""
    tags = [t for t in llamafactory_releases() if t <= llamafactory]
    return max(tags) if tags else min(llamafactory_releases())


def transformers_requirement(llamafactory: Version) -> str:
    """The transformers range LLaMA-Factory checks at start-up (``extras/misc.py`` ``check_dependencies``)."""
    from tuner.config._schema_data import SCHEMA

    return str(SCHEMA["llamafactory"][str(release_of(llamafactory))]["transformers"])


# -- resolving the target from flags, settings and the environment -------------------------------------------


def _installed(package: str, flag: str) -> tuple[Version, str]:
    from tuner.lint.distributions import installed_version

    found = installed_version(package)
    if not found:
        raise TargetError(f"{flag} auto: {package} is not installed in this environment")
    try:
        return Version.parse(found), found
    except ValueError:
        raise TargetError(f"{flag} auto: cannot read the installed {package} version {found!r}") from None


def resolve_target(
    llamafactory: str | None = None,
    transformers: str | None = None,
    *,
    llamafactory_from: str = "--target-llamafactory",
    transformers_from: str = "--target-transformers",
    doing: str = "linting",
) -> tuple[TargetVersions, list[str]]:
    """The target versions from what the user stated, and warnings to print.

    ``llamafactory``/``transformers``: ``X.Y[.Z]``, ``auto`` (the installed version, read from package metadata,
    never by importing), a bare transformers major ``4``/``5`` (the newest known release of that major the
    target LLaMA-Factory accepts), or None for the default. ``*_from`` name where each came from, and ``doing``
    what the versions are for ("linting", "estimating"), for messages.

    A LLaMA-Factory outside 0.8.0 .. the newest known 0.9.x raises :class:`TargetError` (exit 2): cfglint has no
    key table for it. A transformers version outside the range that LLaMA-Factory release checks at start-up is
    a warning, not an error: LLaMA-Factory refuses to start then unless ``DISABLE_VERSION_CHECK=1`` is set, which
    people do; the findings use the table of that transformers version.
    """
    warnings: list[str] = []
    source: dict[str, str] = {}
    newest = max(llamafactory_releases())
    if llamafactory is None:
        lf, source["llamafactory"] = DEFAULT_LLAMAFACTORY, "default"
    else:
        text = str(llamafactory).strip()
        if text.lower() == "auto":
            lf, raw = _installed("llamafactory", llamafactory_from)
            source["llamafactory"] = "installed"
            if lf > newest and re.search(r"(dev|rc|a|b)\d*$", raw):
                warnings.append(
                    f"installed LLaMA-Factory {raw} is a pre-release newer than {newest}, the newest release cfglint "
                    f"knows: {doing} for {newest}"
                )
                lf = newest
        else:
            try:
                lf = Version.parse(text)
            except ValueError:
                raise TargetError(f"{llamafactory_from}: not a version number: {text!r} (expected X.Y[.Z] or auto)") from None
            source["llamafactory"] = llamafactory_from
        if not OLDEST_LLAMAFACTORY <= lf <= newest:
            head = f" and the development head {label(newest)}" if newest > DEFAULT_LLAMAFACTORY else ""
            raise TargetError(
                f"{llamafactory_from}: LLaMA-Factory {lf} is outside the releases cfglint supports "
                f"({OLDEST_LLAMAFACTORY} to {DEFAULT_LLAMAFACTORY}{head})"
            )
    if transformers is None:
        tf = default_transformers(lf)
        source["transformers"] = "default"
    else:
        text = str(transformers).strip()
        if text.lower() == "auto":
            tf, _ = _installed("transformers", transformers_from)
            source["transformers"] = "installed"
        elif re.fullmatch(r"\d+", text):
            tf = newest_transformers(int(text), lf)
            source["transformers"] = transformers_from
        else:
            try:
                tf = Version.parse(text)
            except ValueError:
                raise TargetError(f"{transformers_from}: not a version number: {text!r} (expected X.Y[.Z], 4, 5 or auto)") from None
            source["transformers"] = transformers_from
        if tf.major not in (4, 5):
            raise TargetError(f"{transformers_from}: transformers {tf} is not a major cfglint knows (it knows 4 and 5)")
    requirement = transformers_requirement(lf)
    if not matches(tf, requirement):
        warnings.append(
            f"LLaMA-Factory {lf} requires transformers{requirement} and refuses to start with {tf} unless "
            f"DISABLE_VERSION_CHECK=1 is set; {doing} for that combination anyway"
        )
    return TargetVersions(lf, tf, source), warnings
