#!/usr/bin/env python3
"""Regenerate or check cfglint's version-ranged key schema (``tuner/config/_schema_data.py``).

The table says, for every key a LLaMA-Factory config can hold, which LLaMA-Factory releases and which
transformers releases accept it, with its type, default and choices in each. It is read from source, never
from an installed package, and never downloads anything:

* ``--lf-git DIR``: a git directory (or work tree) of LLaMA-Factory. Every release tag from ``v0.8.0`` to the
  newest ``v0.9.x``, and ``HEAD`` when it is a development version past that tag (``0.9.6.dev0``), is read with ``git show TAG:src/llamafactory/hparams/*.py`` (and ``extras/constants.py`` for
  enums, ``extras/misc.py`` for the transformers range the release declares, ``parser.py`` for which argument
  dataclasses each ``llamafactory-cli`` command parses). Dataclass fields are parsed with ``ast``.
* ``--transformers-git DIR`` (tags ``vX.Y.Z``) or ``--transformers-src DIR`` (wheels
  ``transformers-X.Y.Z-*.whl``, or unpacked trees ``DIR/X.Y.Z/transformers/...``): ``TrainingArguments`` and
  ``Seq2SeqTrainingArguments`` at the transformers releases the LLaMA-Factory tags name as bounds of their
  supported range, plus the releases in :data:`EXTRA_TRANSFORMERS` (where a default changed). A version
  between two sampled releases is answered by the older one.

``--check`` regenerates in memory and exits 1 when the committed table differs, listing the differences.
"""

from __future__ import annotations

import argparse
import ast
import io
import pprint
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tuner" / "config" / "_schema_data.py"

#: The oldest LLaMA-Factory release cfglint supports.
OLDEST_LF = (0, 8, 0)

#: transformers releases read besides the bounds the LLaMA-Factory tags declare, and why.
EXTRA_TRANSFORMERS = {
    "4.53.3": "the last release whose default `optim` is plain adamw_torch",
    "4.54.0": "default `optim` becomes adamw_torch_fused with torch>=2.8 (transformers PR #37358)",
    "5.0.0": "the first transformers 5 release",
}

#: LLaMA-Factory splits these string arguments on commas in ``__post_init__``: a YAML list works as well.
COMMA_KEYS = {
    "dataset", "eval_dataset", "interleave_probs", "adapter_name_or_path", "add_tokens", "add_special_tokens",
    "lora_target", "oft_target", "additional_target", "freeze_trainable_modules", "freeze_extra_modules",
    "galore_target", "apollo_target",
}  # fmt: skip

_DICT_HINTS = ("dict",)

# -- types ---------------------------------------------------------------------------------------------------


def normalise_type(raw: str) -> tuple[str, bool]:
    """Map a Python annotation string to (kind, nullable). kind: bool|int|float|str|list|dict|any|str_or_bool."""
    t = raw.replace(" ", "").replace("typing.", "")
    nullable = "None" in t or t.startswith("Optional[")
    inner = t
    if inner.startswith("Optional["):
        inner = inner[len("Optional[") : -1]
    parts = [p for p in re.split(r"\||,(?![^\[]*\])", inner.removeprefix("Union[").removesuffix("]")) if p]
    parts = [p for p in parts if p != "None"]
    joined = "|".join(parts)
    if not parts or joined in {"Any"}:
        return "any", True
    if any(p.startswith(_DICT_HINTS) or p.startswith("Dict") for p in parts) or "GenerationConfig" in joined or "ParallelismConfig" in joined:
        return "dict", nullable
    if joined.startswith("Literal[") or "Literal[" in joined:
        if "False" in joined and "str" in joined:
            return "str_or_bool", nullable
        return "str", nullable
    if "list[" in joined or "List[" in joined:
        return "list", nullable
    if joined in {"bool"}:
        return "bool", nullable
    if joined in {"int"}:
        return "int", nullable
    if joined in {"float"}:
        return "float", nullable
    if set(parts) == {"str", "bool"}:
        return "str_or_bool", nullable
    if set(parts) in ({"int", "float"}, {"float", "int"}):
        return "float", nullable
    if "dtype" in joined:
        return "any", nullable
    return "str", nullable


def _vkey(text: str) -> tuple[int, ...]:
    m = re.match(r"v?(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in m.group(1).split(".")) if m else ()


# -- reading python source with ast --------------------------------------------------------------------------


@dataclass
class FieldInfo:
    name: str
    annotation: str
    default: Any
    choices: list[Any] | None
    settable: bool
    help: str
    torch_default: list[Any] | None = None  # [">=2.8", value]: the default when torch is at least that


@dataclass
class ClassInfo:
    name: str
    bases: list[str]
    fields: list[FieldInfo] = field(default_factory=list)


_NO_DEFAULT = object()


class Module:
    """The dataclasses and enums of one or more Python sources."""

    def __init__(self) -> None:
        self.classes: dict[str, ClassInfo] = {}
        self.enums: dict[str, dict[str, Any]] = {}
        self.pending: list[tuple[str, ast.ClassDef]] = []

    def add(self, source: str) -> None:
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).split(".")[-1] for b in node.bases]
                if any(b in ("Enum", "StrEnum", "ExplicitEnum", "IntEnum") for b in bases):
                    members = {}
                    for stmt in node.body:
                        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                            try:
                                members[stmt.targets[0].id] = ast.literal_eval(stmt.value)
                            except ValueError:
                                pass
                    self.enums[node.name] = members
                elif any(isinstance(d, ast.Name) and d.id == "dataclass" or ast.unparse(d).startswith("dataclass") for d in node.decorator_list):
                    self.pending.append((node.name, node))

    def build(self) -> None:
        """Parse dataclass bodies once every enum is known (annotations and defaults name them)."""
        for name, node in self.pending:
            self.classes[name] = self._class(node)
        self.pending = []

    def _class(self, node: ast.ClassDef) -> ClassInfo:
        info = ClassInfo(node.name, [ast.unparse(b).split(".")[-1] for b in node.bases])
        consts: dict[str, Any] = {}
        conditional: dict[str, list[Any]] = {}
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                try:
                    consts[stmt.targets[0].id] = ast.literal_eval(stmt.value)
                except ValueError:
                    pass
            elif isinstance(stmt, ast.If):
                for sub in ast.walk(stmt):
                    if isinstance(sub, ast.If):
                        for inner in sub.body:
                            if isinstance(inner, ast.Assign) and isinstance(inner.targets[0], ast.Name):
                                test = ast.unparse(sub.test)
                                m = re.search(r"(\d+)_(\d+)\b|\"(\d+\.\d+)", test)
                                if "torch" in test and m:
                                    ver = m.group(3) or f"{m.group(1)}.{m.group(2)}"
                                    try:
                                        conditional[inner.targets[0].id] = [f">={ver}", ast.literal_eval(inner.value)]
                                    except ValueError:
                                        pass
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                if ast.unparse(stmt.annotation).startswith("ClassVar"):
                    continue
                info.fields.append(self._field(stmt, consts, conditional))
        return info

    def _value(self, node: ast.AST | None, consts: dict[str, Any]) -> Any:
        if node is None:
            return _NO_DEFAULT
        try:
            return ast.literal_eval(node)
        except (ValueError, SyntaxError, TypeError):
            pass
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in self.enums:
            return self.enums[node.value.id].get(node.attr, node.attr)
        if isinstance(node, ast.Name) and node.id in consts:
            return consts[node.id]
        if isinstance(node, ast.BinOp):  # ``768 * 768``: constant arithmetic
            left, right = self._value(node.left, consts), self._value(node.right, consts)
            ops = {ast.Mult: lambda a, b: a * b, ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
                   ast.Pow: lambda a, b: a**b, ast.FloorDiv: lambda a, b: a // b, ast.Div: lambda a, b: a / b}  # fmt: skip
            numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (left, right))
            if numbers and type(node.op) in ops:
                return ops[type(node.op)](left, right)
        return None  # computed at run time; None is the honest "unknown here"

    def _field(self, stmt: ast.AnnAssign, consts: dict[str, Any], conditional: dict[str, list[Any]]) -> FieldInfo:
        name = stmt.target.id  # type: ignore[union-attr]
        annotation = ast.unparse(stmt.annotation)
        default: Any = None
        settable = not name.startswith("_")
        help_text = ""
        choices: list[Any] | None = None
        torch_default = None
        value = stmt.value
        if isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] == "field":
            kw = {k.arg: k.value for k in value.keywords if k.arg}
            if "default" in kw:
                default = self._value(kw["default"], consts)
                if isinstance(kw["default"], ast.Name) and kw["default"].id in conditional:
                    torch_default = conditional[kw["default"].id]
            elif "default_factory" in kw:
                fac = kw["default_factory"]
                if isinstance(fac, ast.Name) and fac.id in ("list", "dict"):
                    default = [] if fac.id == "list" else {}
                elif isinstance(fac, ast.Lambda):
                    default = self._value(fac.body, consts)
            if "init" in kw and isinstance(kw["init"], ast.Constant) and kw["init"].value is False:
                settable = False
            meta = kw.get("metadata")
            if isinstance(meta, ast.Dict):
                for k, v in zip(meta.keys, meta.values, strict=True):
                    if isinstance(k, ast.Constant) and k.value == "help":
                        try:
                            help_text = str(ast.literal_eval(v))
                        except ValueError:
                            help_text = ""
                    if isinstance(k, ast.Constant) and k.value == "choices":
                        try:
                            choices = list(ast.literal_eval(v))
                        except ValueError:
                            pass
        elif value is not None:
            default = self._value(value, consts)
        if default is _NO_DEFAULT:
            default = None
        if choices is None:
            choices = self._choices(stmt.annotation)
        return FieldInfo(name, annotation, _plain(default), _plain(choices), settable, " ".join(help_text.split()), torch_default)

    def _choices(self, annotation: ast.AST) -> list[Any] | None:
        """Literal values, or an enum's values when the annotation names a known enum."""
        out: list[Any] = []
        for node in ast.walk(annotation):
            if isinstance(node, ast.Subscript) and ast.unparse(node.value).split(".")[-1] == "Literal":
                sl = node.slice
                items = sl.elts if isinstance(sl, ast.Tuple) else [sl]
                for it in items:
                    try:
                        out.append(ast.literal_eval(it))
                    except ValueError:
                        pass
            elif isinstance(node, ast.Name) and node.id in self.enums:
                out.extend(self.enums[node.id].values())
        return out or None

    def fields_of(self, name: str, external: dict[str, list[FieldInfo]]) -> list[FieldInfo]:
        """All fields of a dataclass, base classes first, a subclass's redeclaration winning (dataclass order)."""
        if name in external:
            return list(external[name])
        cls = self.classes.get(name)
        if cls is None:
            return []
        merged: dict[str, FieldInfo] = {}
        for base in reversed(cls.bases):
            for f in self.fields_of(base, external):
                merged[f.name] = f
        for f in cls.fields:
            merged[f.name] = f
        return list(merged.values())


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


# -- sources -------------------------------------------------------------------------------------------------


class LFRepo:
    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.git_dir), *args], check=True, capture_output=True, text=True
        ).stdout

    def tags(self) -> list[str]:
        tags = [t for t in self._git("tag", "--list", "v*").split() if re.fullmatch(r"v\d+\.\d+\.\d+", t)]
        return sorted((t for t in tags if _vkey(t) >= OLDEST_LF and _vkey(t)[:2] <= (0, 9)), key=_vkey)

    def head(self) -> tuple[str, str] | None:
        """``("HEAD", "0.9.6.dev0")`` when HEAD is a development version past the newest tag, else None."""
        env = self.show("HEAD", "src/llamafactory/extras/env.py") or ""
        m = re.search(r'VERSION\s*=\s*"([^"]+)"', env)
        tags = self.tags()
        if not m or not tags or _vkey(m.group(1)) <= _vkey(tags[-1]) or self.commit("HEAD") == self.commit(tags[-1]):
            return None
        return "HEAD", m.group(1)

    def commit(self, tag: str) -> str:
        return self._git("rev-list", "-n", "1", tag).strip()

    def show(self, tag: str, path: str) -> str | None:
        try:
            return self._git("show", f"{tag}:{path}")
        except subprocess.CalledProcessError:
            return None

    def ls(self, tag: str, path: str) -> list[str]:
        return self._git("ls-tree", "--name-only", f"{tag}:{path}").split()


class TransformersSource:
    """training_args.py and friends at a transformers release, from a git dir or a folder of wheels/trees."""

    FILES = ("training_args.py", "training_args_seq2seq.py", "trainer_utils.py", "debug_utils.py")

    def __init__(self, git_dir: Path | None, src_dir: Path | None) -> None:
        self.git_dir, self.src_dir = git_dir, src_dir

    def read(self, version: str) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.git_dir is not None:
            for name in self.FILES:
                r = subprocess.run(
                    ["git", "-C", str(self.git_dir), "show", f"v{version}:src/transformers/{name}"],
                    capture_output=True, text=True,
                )
                if r.returncode == 0:
                    out[name] = r.stdout
        elif self.src_dir is not None:
            tree = self.src_dir / version / "transformers"
            wheels = sorted(self.src_dir.glob(f"transformers-{version}-*.whl"))
            if tree.is_dir():
                for name in self.FILES:
                    if (tree / name).is_file():
                        out[name] = (tree / name).read_text(encoding="utf-8")
            elif wheels:
                with zipfile.ZipFile(wheels[0]) as zf:
                    for name in self.FILES:
                        try:
                            out[name] = zf.read(f"transformers/{name}").decode("utf-8")
                        except KeyError:
                            pass
        if "training_args.py" not in out:
            where = self.git_dir or self.src_dir
            raise SystemExit(f"transformers {version}: training_args.py not found in {where}")
        return out


# -- the tables ----------------------------------------------------------------------------------------------


def _declared_range(misc: str | None) -> str:
    """The transformers requirement ``check_dependencies`` enforces at start-up (``extras/misc.py``)."""
    if not misc:
        return ""
    m = re.search(r"(?:check_version|require_version)\(\s*\"transformers([^\"]*)\"", misc)
    return m.group(1).replace(" ", "") if m else ""


def _bounds(spec: str) -> list[str]:
    return [m.group(2) for m in re.finditer(r"(>=|<=|==)\s*(\d+\.\d+(?:\.\d+)?)", spec)]


def _loading(parser: str) -> dict[str, Any]:
    """How the release reads a YAML file: which loader, whether duplicate keys are refused, ``1e-4`` a float."""
    if "OmegaConf.load" in parser:
        return {"loader": "OmegaConf.load", "duplicate_keys": "refused", "exponent_floats": True, "cli_overrides": True}
    if "yaml.safe_load" in parser:
        overrides = "OmegaConf.from_cli" in parser
        return {"loader": "yaml.safe_load", "duplicate_keys": "last wins", "exponent_floats": False, "cli_overrides": overrides}
    return {"loader": "HfArgumentParser.parse_yaml_file", "duplicate_keys": "last wins", "exponent_floats": False, "cli_overrides": False}


def _command_groups(parser: str) -> dict[str, list[str]]:
    """Which argument dataclasses each command parses (``_TRAIN_ARGS``, ``_INFER_ARGS``, ``_EVAL_ARGS``)."""
    tree = ast.parse(parser)
    lists: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.List):
            lists[node.targets[0].id] = [ast.unparse(e).split(".")[-1] for e in node.value.elts]
    out = {"train": lists.get("_TRAIN_ARGS", []), "infer": lists.get("_INFER_ARGS", []), "eval": lists.get("_EVAL_ARGS", [])}
    out["export"] = out["infer"]  # export_model parses with get_infer_args
    extra = [c for c in lists.get("_TRAIN_MBRIDGE_ARGS", []) if c not in out["train"]]
    if extra:  # USE_MEGATRON_BRIDGE=1 parses these beside the train groups (development head only)
        out["megatron"] = extra
    return out


def _is_transformers_base(name: str) -> bool:
    return name.endswith("TrainingArguments") and name not in ("TrainingArguments",)


def read_llamafactory(repo: LFRepo, include_head: bool = True) -> tuple[dict[str, Any], dict[str, dict[str, list[dict[str, Any]]]], dict[str, str]]:
    """Per tag: meta (commit, range, loading, ...), and per key per group the field's attributes."""
    meta: dict[str, Any] = {}
    per_tag: dict[str, dict[str, list[dict[str, Any]]]] = {}
    helps: dict[str, str] = {}
    refs = [(tag, tag[1:]) for tag in repo.tags()]
    if include_head and (head := repo.head()) is not None:
        refs.append(head)
    for tag, label in refs:
        version = ".".join(str(p) for p in _vkey(label))
        mod = Module()
        hp = "src/llamafactory/hparams"
        for name in repo.ls(tag, hp):
            if name.endswith(".py"):
                mod.add(repo.show(tag, f"{hp}/{name}") or "")
        mod.add(repo.show(tag, "src/llamafactory/extras/constants.py") or "")
        mod.build()
        parser = repo.show(tag, f"{hp}/parser.py") or ""
        groups = _command_groups(parser)
        checkpointing = repo.show(tag, "src/llamafactory/model/model_utils/checkpointing.py") or ""
        meta[version] = {
            "commit": repo.commit(tag),
            "label": label,  # "0.9.6.dev0" for the development head
            "transformers": _declared_range(repo.show(tag, "src/llamafactory/extras/misc.py")),
            **_loading(parser),
            "fsdp2_non_reentrant_gc": "use_reentrant_gc = False" in checkpointing,
        }
        keys: dict[str, list[dict[str, Any]]] = {}
        for command, classes in groups.items():
            for cls in classes:
                if _is_transformers_base(cls):
                    continue  # the transformers side, read per transformers release
                group = cls
                for f in mod.fields_of(cls, {}):
                    if f.name in ("_n_gpu",):
                        continue
                    entry = _entry(f, group)
                    same = [e for e in keys.setdefault(f.name, []) if e["group"] == group]
                    if same:
                        if command not in same[0]["commands"]:
                            same[0]["commands"].append(command)
                    else:
                        entry["commands"] = [command]
                        keys[f.name].append(entry)
                    if f.help:
                        helps[f.name] = f.help
        per_tag[version] = keys
    return meta, per_tag, helps


def _entry(f: FieldInfo, group: str) -> dict[str, Any]:
    kind, nullable = normalise_type(f.annotation)
    if f.name in COMMA_KEYS:
        kind = "list"
    e: dict[str, Any] = {
        "group": group,
        "kind": kind,
        "nullable": nullable,
        "default": f.default,
        "choices": f.choices,
        "settable": f.settable,
    }
    if f.torch_default:
        e["torch_default"] = f.torch_default
    return e


def read_transformers(src: TransformersSource, versions: list[str]) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, str]]:
    per_version: dict[str, dict[str, dict[str, Any]]] = {}
    helps: dict[str, str] = {}
    for version in versions:
        files = src.read(version)
        mod = Module()
        for name in ("trainer_utils.py", "debug_utils.py", "training_args.py", "training_args_seq2seq.py"):
            if name in files:
                mod.add(files[name])
        mod.build()
        keys: dict[str, dict[str, Any]] = {}
        for f in mod.fields_of("Seq2SeqTrainingArguments", {}):
            if f.name.startswith("_"):
                continue
            keys[f.name] = _entry(f, "TrainingArguments") | {"commands": ["train"]}
            if f.help:
                helps[f.name] = f.help
        per_version[version] = keys
    return per_version, helps


def _ranges(samples: list[str], present: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge consecutive samples with identical attributes into ``[since, until)`` ranges."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for version in samples:
        attrs = present.get(version)
        if attrs is None:
            if current is not None:
                current["until"] = version
                current = None
            continue
        if current is not None and {k: v for k, v in current.items() if k not in ("since", "until")} == attrs:
            continue
        if current is not None:
            current["until"] = version
        current = {**attrs, "since": version, "until": None}
        out.append(current)
    return out


def build(
    lf_git: Path, tf_git: Path | None, tf_src: Path | None, tf_versions: list[str] | None = None, include_head: bool = True
) -> dict[str, Any]:
    repo = LFRepo(lf_git)
    lf_meta, lf_keys, lf_help = read_llamafactory(repo, include_head)
    lf_versions = list(lf_meta)
    if tf_versions is None:
        wanted = {b for m in lf_meta.values() for b in _bounds(m["transformers"])} | set(EXTRA_TRANSFORMERS)
        tf_versions = sorted(wanted, key=_vkey)
    tf_keys, tf_help = read_transformers(TransformersSource(tf_git, tf_src), tf_versions)

    keys: dict[str, list[dict[str, Any]]] = {}
    lf_names = {n for per in lf_keys.values() for n in per}
    for name in sorted(lf_names):
        by_group: dict[str, dict[str, dict[str, Any]]] = {}
        for version, per in lf_keys.items():
            for entry in per.get(name, []):
                attrs = {k: v for k, v in entry.items()}
                attrs["commands"] = sorted(attrs["commands"], key=["train", "infer", "export", "eval", "megatron"].index)
                by_group.setdefault(entry["group"], {})[version] = attrs
        for present in by_group.values():
            for r in _ranges(lf_versions, present):
                keys.setdefault(name, []).append({"source": "llamafactory", "lf": [r.pop("since"), r.pop("until")], **r})
    tf_names = {n for per in tf_keys.values() for n in per}
    for name in sorted(tf_names):
        present = {v: per[name] for v, per in tf_keys.items() if name in per}
        for r in _ranges(tf_versions, present):
            keys.setdefault(name, []).append({"source": "transformers", "tf": [r.pop("since"), r.pop("until")], **r})

    helps = {**tf_help, **lf_help}
    return {
        "llamafactory_versions": lf_versions,
        "llamafactory": lf_meta,
        "transformers_versions": tf_versions,
        "keys": dict(sorted(keys.items())),
        "help": {k: helps[k] for k in sorted(keys) if helps.get(k)},
    }


# -- output --------------------------------------------------------------------------------------------------


def render(schema: dict[str, Any]) -> str:
    buf = io.StringIO()
    buf.write(
        '"""Generated by scripts/schema_sync.py from LLaMA-Factory release tags and transformers releases: every key a\n'
        'LLaMA-Factory config accepts, by version. Do not edit by hand."""\n\n'
        "# fmt: off\n"
        "from typing import Any\n\n"
    )
    buf.write(f"SCHEMA: dict[str, Any] = {pprint.pformat(schema, width=120, sort_dicts=False)}\n")
    return buf.getvalue()


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for part in ("llamafactory_versions", "transformers_versions", "llamafactory"):
        if old.get(part) != new.get(part):
            out.append(f"~ {part}: {old.get(part)!r} -> {new.get(part)!r}")
    ok, nk = old.get("keys", {}), new.get("keys", {})
    for k in sorted(set(nk) - set(ok)):
        out.append(f"+ {k}: new key")
    for k in sorted(set(ok) - set(nk)):
        out.append(f"- {k}: no longer read")
    for k in sorted(set(ok) & set(nk)):
        if ok[k] != nk[k]:
            out.append(f"~ {k}: {ok[k]!r} -> {nk[k]!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lf-git", type=Path, required=True, metavar="DIR", help="LLaMA-Factory git dir or checkout")
    tf = ap.add_mutually_exclusive_group(required=True)
    tf.add_argument("--transformers-git", type=Path, metavar="DIR", help="transformers git dir with release tags")
    tf.add_argument("--transformers-src", type=Path, metavar="DIR", help="folder of transformers wheels or unpacked trees")
    ap.add_argument("--transformers-versions", metavar="LIST", help="comma-separated releases to read instead of the bounds")
    ap.add_argument("--no-head", action="store_true", help="leave out the development head (HEAD past the newest tag)")
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed schema differs")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    versions = [v.strip() for v in args.transformers_versions.split(",")] if args.transformers_versions else None
    new = build(args.lf_git, args.transformers_git, args.transformers_src, versions, include_head=not args.no_head)
    labels = [new["llamafactory"][v].get("label", v) for v in new["llamafactory_versions"]]
    summary = f"LLaMA-Factory {', '.join(labels)}; transformers {', '.join(new['transformers_versions'])}"
    if args.check:
        namespace: dict[str, Any] = {}
        exec(compile(args.out.read_text(), str(args.out), "exec"), namespace)  # noqa: S102 - our own file
        changes = diff(namespace["SCHEMA"], new)
        for line in changes:
            print(line)
        print(f"{len(changes)} difference(s) against {summary}")
        return 1 if changes else 0
    args.out.write_text(render(new))
    print(f"wrote {args.out} ({len(new['keys'])} keys; {summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
