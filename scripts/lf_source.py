"""Where the generators in ``scripts/`` read LLaMA-Factory's source from, given on their command line.

Nothing here imports LLaMA-Factory: files are read as text (and parsed with ``ast`` by the callers), so a
LLaMA-Factory installed with a torch that does not load on this machine still serves, and so does a release
archive. Four kinds of source, each naming the ``llamafactory`` package's files by their path inside the package
(``data/template.py``, ``extras/constants.py``):

* ``--lf-installed``: the ``llamafactory`` package the running Python would import (found with
  ``importlib.util.find_spec``, which does not execute it), e.g. ``pip install llamafactory==0.9.5``;
* ``--lf-src DIR``: a package directory (``.../site-packages/llamafactory``), a checkout (``DIR/src/llamafactory``)
  or an unpacked sdist;
* ``--lf-git DIR --lf-ref REF``: a git clone (or bare git dir) at a tag or commit, read with ``git show``;
* ``--lf-dist FILE``: a release archive as ``pip download --no-deps llamafactory==X`` leaves it (wheel or sdist).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

_VERSION = re.compile(r'^VERSION\s*=\s*"([^"]+)"', re.MULTILINE)


class LFSource:
    """Text of files of the ``llamafactory`` package at one version."""

    def __init__(self, label: str) -> None:
        self.label = label

    def read(self, path: str) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def version(self) -> str:
        """``VERSION`` of ``extras/env.py`` (``0.9.5``, ``0.9.6.dev0``)."""
        m = _VERSION.search(self.read("extras/env.py"))
        if not m:
            raise SystemExit(f"{self.label}: extras/env.py names no VERSION")
        return m.group(1)


class DirSource(LFSource):
    def __init__(self, root: Path) -> None:
        for pkg in (root, root / "src" / "llamafactory", root / "llamafactory"):
            if (pkg / "extras" / "env.py").is_file():
                break
        else:
            raise SystemExit(f"{root}: not a llamafactory package, checkout or unpacked sdist")
        super().__init__(str(pkg))
        self.pkg = pkg

    def read(self, path: str) -> str:
        return (self.pkg / path).read_text(encoding="utf-8")


class GitSource(LFSource):
    def __init__(self, repo: Path, ref: str) -> None:
        super().__init__(f"{repo}@{ref}")
        self.repo, self.ref = repo, ref

    def read(self, path: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(self.repo), "show", f"{self.ref}:src/llamafactory/{path}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"{self.label}: src/llamafactory/{path}: {out.stderr.strip()}")
        return out.stdout


class DistSource(LFSource):
    """A wheel (``llamafactory/...``) or an sdist (``llamafactory-X/src/llamafactory/...``)."""

    def __init__(self, archive: Path) -> None:
        super().__init__(str(archive))
        self.files: dict[str, str] = {}
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    if name.startswith("llamafactory/") and name.endswith(".py"):
                        self.files[name.removeprefix("llamafactory/")] = zf.read(name).decode("utf-8")
        else:
            with tarfile.open(archive) as tf:
                for member in tf.getmembers():
                    m = re.match(r"[^/]+/src/llamafactory/(.+\.py)$", member.name)
                    fh = tf.extractfile(member) if m and member.isfile() else None
                    if m and fh is not None:
                        self.files[m.group(1)] = fh.read().decode("utf-8")
        if "extras/env.py" not in self.files:
            raise SystemExit(f"{archive}: not a llamafactory wheel or sdist")

    def read(self, path: str) -> str:
        try:
            return self.files[path]
        except KeyError:
            raise SystemExit(f"{self.label}: no {path}") from None


def installed() -> LFSource:
    spec = importlib.util.find_spec("llamafactory")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("--lf-installed: this Python has no llamafactory package (pip install llamafactory==0.9.5)")
    return DirSource(Path(next(iter(spec.submodule_search_locations))))


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The ``--lf-*`` options of a generator that reads one LLaMA-Factory version."""
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--lf-installed", action="store_true", help="the llamafactory package this Python imports")
    group.add_argument("--lf-src", type=Path, metavar="DIR", help="a llamafactory package dir, checkout or sdist tree")
    group.add_argument("--lf-git", type=Path, metavar="DIR", help="a LLaMA-Factory git clone (with --lf-ref)")
    group.add_argument("--lf-dist", type=Path, metavar="FILE", help="a llamafactory wheel or sdist")
    ap.add_argument("--lf-ref", metavar="REF", help="tag or commit to read from --lf-git (v0.9.5)")


def from_arguments(args: argparse.Namespace) -> LFSource:
    if args.lf_git is not None:
        if not args.lf_ref:
            raise SystemExit("--lf-git needs --lf-ref (a release tag such as v0.9.5, or a commit)")
        return GitSource(args.lf_git, args.lf_ref)
    if args.lf_src is not None:
        return DirSource(args.lf_src)
    if args.lf_dist is not None:
        return DistSource(args.lf_dist)
    return installed()


def dists_by_version(folder: Path) -> dict[str, DistSource]:
    """``pip download --no-deps llamafactory==X`` archives in ``folder``, by release (an sdist when both)."""
    found: dict[str, DistSource] = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.suffix != ".whl"):  # sdists last, so they win
        m = re.match(r"llamafactory-(\d+\.\d+\.\d+)(?:-|\.tar\.gz$|\.zip$)", path.name)
        if m:
            found[m.group(1)] = DistSource(path)
    return found
