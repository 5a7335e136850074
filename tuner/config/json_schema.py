"""A JSON Schema (draft 2020-12) of LLaMA-Factory configs, generated from the key schema, for editors.

Editors that run the YAML language server (VS Code's YAML extension, PyCharm, Neovim, Helix, ...) read a
JSON Schema to offer key completion, hover docs, value choices and underlines for unknown keys. Everything
here comes from :mod:`tuner.config.schema`: the keys the parser of each ``llamafactory-cli`` subcommand takes
at the target LLaMA-Factory and transformers releases, with their types, defaults, choices and help.

What the schema rejects follows what breaks a run, not the dataclass annotations, because
``HfArgumentParser.parse_dict`` neither converts nor checks values (see :func:`tuner.config.schema.value_problem`):

* **unknown keys** are rejected (``additionalProperties: false``): ``parse_dict`` refuses them, so the run
  stops before it starts;
* bool fields take booleans, numbers (``do_train: 1`` is tested for truth and works), null and strings, but
  not a string that reads as false (``"false"``, ``"no"``, ``"off"``...), which is a non-empty string and so
  turns the option on;
* int and float fields take any number (``num_train_epochs: 3`` and ``warmup_steps: 10.0`` work), but not a
  string (kept as a string; the first arithmetic on it fails) nor null unless the field is Optional; a float
  only where a consumer needs an int (``lora_rank``, the batch sizes);
* choices are enforced (``enum``) only where a value outside them fails: transformers' enum conversions
  (``optim``, ``lr_scheduler_type``, ``*_strategy``, ...) and LLaMA-Factory's ``stage`` and
  ``finetuning_type``. Other ``Literal`` fields list their choices as ``examples`` (completion offers them,
  validation does not insist);
* str and list fields take any scalar or list, as LLaMA-Factory splits comma-separated strings and passes
  lists on; only a mapping is rejected there (``output_dir`` must be a string).

``1e-4`` is a number to editors (YAML 1.2) and to LLaMA-Factory from 0.9.4 on (OmegaConf), but the string
``"1e-4"`` to PyYAML and so to LLaMA-Factory before 0.9.4; validating a file loaded with ``yaml.safe_load``
against an older target therefore rejects it, which is what that release does with it.

The document uses only keywords that mean the same in draft-07 and draft 2020-12 (``$ref`` with no sibling
keywords, ``$defs`` reached by JSON pointer, single-schema ``items``, ``if``/``then``/``else``), because the
YAML language server implements draft-07 and reads a 2020-12 document with draft-07 rules.

Kinds: ``llamafactory-cli train`` reads a file with the training parser, ``export`` and ``chat``/``api``/
``webchat`` with the inference parser (the same keys), ``eval`` with the evaluation parser. The file does not
name its command, so :func:`config_schema` for ``auto`` chooses with ``if``/``then``/``else`` on keys, as
:func:`tuner.config.kind.detect_kind` does: a non-empty ``export_dir`` without training keys is an export, a
``task`` without training keys an evaluation, anything else a training run (whose keys include every
inference key). A chat config that should refuse training keys names the ``infer`` schema in its modeline.

This module is imported only by ``cfglint schema`` and the tests, never on the lint path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuner.config.schema import (
    ENUM_CONVERTED,
    FLOAT_BREAKS_INT,
    LITERAL_FAILURES,
    STR_REQUIRED,
    Declaration,
    Schema,
    load_schema,
)
from tuner.config.versions import TargetVersions, label

DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: The kinds a schema can be made for: ``auto`` chooses by keys; the others are ``llamafactory-cli`` commands.
KINDS = ("auto", "train", "infer", "export", "eval")

#: The files ``cfglint schema --output-dir`` writes, one per kind.
FILE_NAMES = {kind: f"{'config' if kind == 'auto' else kind}.schema.json" for kind in KINDS}

#: Whose parser reads a file of each kind (``chat``/``api``/``webchat`` share the ``infer`` parser).
_COMMANDS_TEXT = {
    "train": "llamafactory-cli train",
    "infer": "llamafactory-cli chat/api/webchat",
    "export": "llamafactory-cli export",
    "eval": "llamafactory-cli eval",
}

#: Keys that make a file a training run even when it also sets ``export_dir`` or ``task`` (as
#: ``tuner.config.kind._training_signal`` decides).
TRAINING_SIGNAL = ("do_train", "output_dir", "dataset", "deepspeed", "per_device_train_batch_size", "learning_rate")

#: ``Literal`` fields whose other values fail (``mix_strategy`` only fails when two datasets are mixed, which a
#: per-key schema cannot see, so it keeps its choices as examples).
_STRICT_LITERALS = frozenset(LITERAL_FAILURES) - {"mix_strategy"}

#: Strings a bool field must not hold: Python treats a non-empty string as true (``value_problem``).
_FALSE_STRING = r"^\s*([Ff][Aa][Ll][Ss][Ee]|[Nn][Oo]|[Oo][Ff][Ff]|0|[Nn]|[Ff]|[Nn][Oo][Nn][Ee]|[Nn][Uu][Ll][Ll]|[Dd][Ii][Ss][Aa][Bb][Ll][Ee][Dd]?)\s*$"

_SCALARS = ["string", "number", "boolean", "null"]


def _jsonable(value: Any) -> Any:
    """The value as JSON would hold it (tuples become lists; anything odd becomes its text)."""
    return json.loads(json.dumps(value, default=str))


def _strict_choices(d: Declaration) -> bool:
    return bool(d.choices) and (d.name in ENUM_CONVERTED or d.name in _STRICT_LITERALS)


def _value_schema(d: Declaration) -> dict[str, Any]:
    """The validation keywords for one field (see the module docstring for why each type is this lenient)."""
    nullable = ["null"] if d.nullable else []
    choices = [c for c in (d.choices or ()) if c is not None]
    if _strict_choices(d):
        if d.kind == "list":  # fsdp, debug: a list of options or one string of space-separated options
            words = "|".join(sorted((str(c) for c in choices), key=len, reverse=True))
            return {  # transformers turns None into no options, so null works even where not Optional
                "type": ["string", "array", "null"],
                "pattern": rf"^\s*(({words})(\s+({words}))*)?\s*$",
                "items": {"enum": choices},
            }
        return {"enum": [*choices, *([None] if d.nullable else [])]}
    out: dict[str, Any]
    if d.kind == "bool":
        out = {"type": ["boolean", "number", "string", "null"], "not": {"type": "string", "pattern": _FALSE_STRING}}
    elif d.kind in ("int", "float"):
        exact = d.kind == "int" and d.name in FLOAT_BREAKS_INT
        out = {"type": ["integer" if exact else "number", *nullable]}
    elif d.kind == "str" and d.name in STR_REQUIRED:
        out = {"type": ["string", *nullable]}
    elif d.kind in ("str", "list", "str_or_bool"):
        out = {"type": [*_SCALARS, "array"]}
    elif d.kind == "dict":  # a mapping or a path/JSON string (deepspeed, generation_config, ...)
        out = {"type": ["object", "string", "null"]}
    else:  # any
        out = {}
    if isinstance(out.get("type"), list) and len(out["type"]) == 1:
        out["type"] = out["type"][0]
    if choices:
        out["examples"] = choices
    return out


def _description(d: Declaration, schema: Schema) -> str:
    """Hover text: the upstream help, then type, default, choices and where the field comes from."""
    parts = [d.help.strip()] if d.help.strip() else []
    facts = [f"Type: {d.kind}{' or null' if d.nullable else ''}.", f"Default: {json.dumps(_jsonable(d.default))}."]
    if d.torch_default is not None:
        facts.append(f"From torch {d.torch_default[0]} on: {json.dumps(d.torch_default[1])}.")
    if d.choices:
        how = "one of" if _strict_choices(d) else "known values"
        facts.append(f"Choices ({how}): {', '.join(map(str, d.choices))}.")
    spec = schema.get(d.name)
    first = min((x.since for x in spec.declarations if x.source == d.source), default=d.since) if spec else d.since
    facts.append(f"{d.group}, since {d.where} {first}.")
    parts.append(" ".join(facts))
    return "\n\n".join(parts)


def _property(d: Declaration, schema: Schema) -> dict[str, Any]:
    prop: dict[str, Any] = {"description": _description(d, schema)}
    prop.update(_value_schema(d))
    prop["default"] = _jsonable(d.default)
    return prop


def _kind_keys(schema: Schema, command: str, target: TargetVersions) -> dict[str, Declaration]:
    """The settable keys of ``command``'s parser at ``target``, sorted by name."""
    out = {}
    for name in sorted(schema.settable_names(command, target)):
        d = schema.accepted(name, command, target)
        if d is not None:
            out[name] = d
    return out


def _header(kind: str, target: TargetVersions, schema: Schema) -> dict[str, Any]:
    where = f"LLaMA-Factory {label(target.llamafactory)} with transformers {target.transformers}"
    if kind == "auto":
        title = f"LLaMA-Factory config ({where})"
        what = (
            "Any LLaMA-Factory YAML: the keys choose the parser (a non-empty `export_dir` without training keys: "
            "export; `task` without training keys: eval; otherwise train, which also takes every chat/infer key)."
        )
    else:
        title = f"LLaMA-Factory {kind} config ({where})"
        what = f"A YAML read by `{_COMMANDS_TEXT[kind]}`."
    return {
        "$schema": DRAFT,
        "title": title,
        "description": f"{what} Generated by `cfglint schema` from LLaMA-Factory's release tags "
        f"({schema.llamafactory_describe}) and transformers releases; unknown keys are rejected.",
        "x-cfglint-target": target.as_dict(),
        "x-cfglint-kind": kind,
    }


def config_schema(target: TargetVersions | None = None, kind: str = "auto") -> dict[str, Any]:
    """The JSON Schema of a ``kind`` config at ``target`` (default: cfglint's default target)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    target = target or TargetVersions()
    schema = load_schema()
    doc = _header(kind, target, schema)
    if kind != "auto":
        keys = _kind_keys(schema, kind, target)
        doc.update(
            type="object",
            properties={name: _property(d, schema) for name, d in keys.items()},
            additionalProperties=False,
        )
        return doc
    return _auto(doc, schema, target)


def _auto(doc: dict[str, Any], schema: Schema, target: TargetVersions) -> dict[str, Any]:
    """One schema for every kind: each key's value is checked once, at the top (``properties``, the union of
    the kinds' keys, so completion and hover offer all of them); the conditions only say which keys the chosen
    parser takes (``additionalProperties: false`` beside ``key: true``), so an unknown key is one error, not
    two. A key whose value rules differ between parsers (none at any supported target so far) is checked in
    its kind's branch instead."""
    kinds = {k: _kind_keys(schema, k, target) for k in ("train", "infer", "eval")}
    top: dict[str, Declaration] = {}
    for decls in kinds.values():  # train first: its help and default describe a key shared with the others
        for name, d in decls.items():
            top.setdefault(name, d)
    branches: dict[str, Any] = {}
    for k, decls in kinds.items():
        allowed = {
            name: True if _value_schema(d) == _value_schema(top[name]) else _property(d, schema)
            for name, d in decls.items()
        }
        what = _COMMANDS_TEXT[k] if k != "infer" else "llamafactory-cli export/chat/api/webchat"
        branches[k] = {
            "description": f"The keys `{what}` takes.",
            "properties": allowed,
            "additionalProperties": False,
        }
    no_training = {"not": {"anyOf": [{"required": [key]} for key in TRAINING_SIGNAL]}}
    otherwise: dict[str, Any] = {"$ref": "#/$defs/kind.train"}
    infer_only = sorted(set(kinds["infer"]) - set(kinds["train"]))
    if infer_only:  # LLaMA-Factory 0.9.6 `kt_config`: the training parser refuses it, so only a chat file has it
        otherwise = {
            "if": {"anyOf": [{"required": [key]} for key in infer_only]},
            "then": {"$ref": "#/$defs/kind.infer"},
            "else": otherwise,
        }
    doc.update(
        type="object",
        properties={name: _property(d, schema) for name, d in sorted(top.items())},
        allOf=[
            {
                "if": {
                    "required": ["export_dir"],
                    "properties": {"export_dir": {"type": "string", "minLength": 1}},
                    **no_training,
                },
                "then": {"$ref": "#/$defs/kind.infer"},
                "else": {
                    "if": {"required": ["task"], **no_training},
                    "then": {"$ref": "#/$defs/kind.eval"},
                    "else": otherwise,
                },
            }
        ],
        **{"$defs": {f"kind.{k}": v for k, v in branches.items()}},
    )
    return doc


def dumps(doc: dict[str, Any]) -> str:
    """The text a schema file holds: stable key order, two-space indent, a final newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def write_all(directory: str | Path, target: TargetVersions | None = None) -> list[Path]:
    """Write one schema file per kind (:data:`FILE_NAMES`) into ``directory``; return the paths written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, name in FILE_NAMES.items():
        path = out / name
        path.write_text(dumps(config_schema(target, kind)), encoding="utf-8")
        written.append(path)
    return written
