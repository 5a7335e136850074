"""What keys a LLaMA-Factory config accepts, by LLaMA-Factory and transformers version.

The table is generated from LLaMA-Factory's release tags and transformers releases (``_schema_data.py``, by
``scripts/schema_sync.py``) and loaded lazily. Each key has one or more :class:`Declaration`\\ s: a dataclass
field of one argument group over a range of releases (LLaMA-Factory's own fields range over LLaMA-Factory
tags, ``TrainingArguments`` fields over transformers releases). The same name can have two declarations at
once in different groups: ``seed`` is both ``EvaluationArguments.seed`` (``llamafactory-cli eval``) and
``TrainingArguments.seed`` (``train``).

This module adds what the table cannot say: renamed keys, did-you-mean suggestions, the history of a key for
messages, and the type checks that matter. ``HfArgumentParser.parse_dict`` neither converts nor checks values,
so a type is only worth a finding where the value breaks the run or changes what it does; see
:func:`type_problem`.

The API other modules call (``target`` is a :class:`~tuner.config.versions.TargetVersions`, a transformers
major as an int for old call sites, or None for the defaults)::

    schema = load_schema()
    schema.accepted(name, command="train", target=None) -> Declaration | None
    schema.default(name, target=None, *, torch=None) -> Any
    schema.choices(name, target=None) -> tuple | None
    schema.declaration(name, target=None, command=None) -> Declaration | None   # even if not settable
    schema.history(name, target=None, command="train") -> str | None            # "added in ...", "removed in ..."
    schema.renamed(name, command="train", target=None) -> (new, why) | None     # old spellings for the target
    schema.loading(target=None) -> Loading                                     # how that release reads YAML
    schema.get(name) -> KeySpec | None                                         # every declaration of a key
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tuner.config.versions import TargetVersions, Version, label, release_of, with_transformers_major

#: Old or foreign spellings that no supported release accepts under that name, with the key that replaced
#: them. Each is an unknown key to the parser; renaming is safe where the meaning is unchanged.
RENAMED: dict[str, tuple[str, str]] = {
    "evaluation_strategy": ("eval_strategy", "renamed in transformers 4.41, dropped after 4.49"),
    "per_gpu_train_batch_size": ("per_device_train_batch_size", "deprecated by transformers, gone in 5.0"),
    "per_gpu_eval_batch_size": ("per_device_eval_batch_size", "deprecated by transformers, gone in 5.0"),
    "no_cuda": ("use_cpu", "renamed in transformers 4.34, gone in 5.0"),
    "push_to_hub_token": ("hub_token", "renamed by transformers, gone in 5.0"),
    "fp16_backend": ("half_precision_backend", "renamed by transformers, gone in 5.0"),
    "dev_ratio": ("val_size", "renamed in LLaMA-Factory 0.2"),
    "checkpoint_dir": ("adapter_name_or_path", "renamed in LLaMA-Factory 0.5"),
    "max_source_length": ("cutoff_len", "LLaMA-Factory 0.6 limits prompt and response together"),
    "max_target_length": ("cutoff_len", "LLaMA-Factory 0.6 limits prompt and response together"),
    "dpo_beta": ("pref_beta", "renamed in LLaMA-Factory 0.8"),
    "dpo_loss": ("pref_loss", "renamed in LLaMA-Factory 0.8"),
    "dpo_ftx": ("pref_ftx", "renamed in LLaMA-Factory 0.8"),
    "orpo_beta": ("pref_beta", "renamed in LLaMA-Factory 0.8"),
    "sft_packing": ("packing", "renamed in LLaMA-Factory 0.6"),
    "efficient_packing": ("neat_packing", "renamed in LLaMA-Factory 0.8"),
    "name_module_trainable": ("freeze_trainable_modules", "renamed in LLaMA-Factory 0.6"),
    "num_layer_trainable": ("freeze_trainable_layers", "renamed in LLaMA-Factory 0.6"),
    "cache_path": ("tokenized_path", "renamed in LLaMA-Factory 0.8"),
    "use_liger": ("enable_liger_kernel", "LLaMA-Factory's own switch applies Liger before loading"),
    "lora_r": ("lora_rank", "LLaMA-Factory's name for the LoRA rank"),
    "r": ("lora_rank", "LLaMA-Factory's name for the LoRA rank"),
    "target_modules": ("lora_target", "LLaMA-Factory's name for the LoRA targets"),
    "lora_target_modules": ("lora_target", "LLaMA-Factory's name for the LoRA targets"),
    "load_in_4bit": ("quantization_bit", "LLaMA-Factory quantizes with `quantization_bit: 4`"),
    "load_in_8bit": ("quantization_bit", "LLaMA-Factory quantizes with `quantization_bit: 8`"),
    "max_seq_length": ("cutoff_len", "LLaMA-Factory's name for the sequence length"),
    "sequence_len": ("cutoff_len", "LLaMA-Factory's name for the sequence length"),
    "model_max_length": ("cutoff_len", "`model_max_length` is derived from `cutoff_len` and cannot be set"),
    "base_model": ("model_name_or_path", "LLaMA-Factory's name for the model"),
    "micro_batch_size": ("per_device_train_batch_size", "LLaMA-Factory uses the transformers name"),
    "batch_size": ("per_device_train_batch_size", "`batch_size` is an eval-only key"),
    "epochs": ("num_train_epochs", "LLaMA-Factory uses the transformers name"),
    "num_epochs": ("num_train_epochs", "LLaMA-Factory uses the transformers name"),
    "lr": ("learning_rate", "LLaMA-Factory uses the transformers name"),
}

#: Renames within the supported LLaMA-Factory releases: the old key is valid before the version, the new one
#: from it on (read off the generated table: the old field disappears in the tag where the new one appears,
#: with the same help text or purpose).
RENAMED_IN: dict[str, tuple[str, str]] = {
    "new_special_tokens": ("add_special_tokens", "0.9.3"),
    "use_cache": ("use_kv_cache", "0.9.4"),
    "image_dir": ("media_dir", "0.9.2"),
    "image_resolution": ("image_max_pixels", "0.9.2"),
    "video_resolution": ("video_max_pixels", "0.9.2"),
}

#: Renames whose value also changes meaning; the fix is offered but marked unsafe.
UNSAFE_RENAMES = {
    "load_in_4bit",
    "load_in_8bit",
    "batch_size",
    "model_max_length",
    "max_source_length",
    "max_target_length",
    "image_resolution",  # a side length in 0.9.0/0.9.1, a pixel count in image_max_pixels
    "video_resolution",
}

_COMMANDS = ("train", "infer", "export", "eval")


def _target(target: TargetVersions | int | None) -> TargetVersions:
    """A :class:`TargetVersions` from what old and new call sites pass."""
    if target is None:
        return TargetVersions()
    if isinstance(target, int):
        return with_transformers_major(TargetVersions(), target)
    return target


@dataclass(frozen=True)
class Declaration:
    """One dataclass field over a range of releases: what the parser of ``commands`` takes for ``name``.

    ``since``/``until`` are releases of LLaMA-Factory (``source == "llamafactory"``) or transformers (``source ==
    "transformers"``): the field exists from ``since`` up to, not including, ``until`` (None: still there).
    transformers releases are sampled (see ``transformers_versions`` of the schema); a version between two
    samples is answered by the older one.
    """

    name: str
    source: str  # "llamafactory" | "transformers"
    group: str  # ModelArguments, DataArguments, TrainingArguments, ...
    commands: tuple[str, ...]
    kind: str  # bool | int | float | str | list | dict | any | str_or_bool
    nullable: bool
    default: Any
    choices: tuple[Any, ...] | None
    settable: bool
    since: Version
    until: Version | None
    help: str = ""
    torch_default: tuple[Version, Any] | None = None  # (torch version, default from that torch on)

    def covers(self, target: TargetVersions) -> bool:
        """Whether this declaration is the field's shape at ``target``."""
        if self.source == "llamafactory":
            version = release_of(target.llamafactory)
        else:
            version = max(target.transformers, _first_sample())
        return self.since <= version and (self.until is None or version < self.until)

    @property
    def where(self) -> str:
        """``LLaMA-Factory`` or ``transformers``: whose release numbers ``since``/``until`` are."""
        return "LLaMA-Factory" if self.source == "llamafactory" else "transformers"


@lru_cache(maxsize=1)
def _first_sample() -> Version:
    from tuner.config._schema_data import SCHEMA

    return Version.parse(SCHEMA["transformers_versions"][0])


@dataclass(frozen=True)
class KeySpec:
    """Every declaration of one key name, over all supported releases and argument groups.

    The plain attributes (``kind``, ``default``, ...) describe the key at the default target, preferring the
    ``train`` declaration, for code that does not care about versions; the ``*_for`` methods take a target.
    """

    name: str
    declarations: tuple[Declaration, ...]
    help: str

    def at(self, target: TargetVersions | int | None = None, command: str | None = None) -> Declaration | None:
        """The declaration in force at ``target`` (for ``command`` if given): a ``train`` declaration over others
        when no command is given, and LLaMA-Factory's own field over the transformers one it redeclares."""
        t = _target(target)
        live = [d for d in self.declarations if d.covers(t) and (command is None or command in d.commands)]
        if not live:
            return None
        live.sort(key=lambda d: ("train" not in d.commands, d.source != "llamafactory"))
        return live[0]

    def kind_for(self, target: TargetVersions | int | None = None) -> str:
        d = self.at(target) or self.declarations[-1]
        return d.kind

    def default_for(self, target: TargetVersions | int | None = None) -> Any:
        d = self.at(target)
        return d.default if d else None

    # -- at the default target ---------------------------------------------------------------------------
    @property
    def _now(self) -> Declaration:
        return self.at(None) or self.declarations[-1]

    @property
    def kind(self) -> str:
        return self._now.kind

    @property
    def nullable(self) -> bool:
        return self._now.nullable

    @property
    def default(self) -> Any:
        return self._now.default

    @property
    def choices(self) -> tuple[Any, ...] | None:
        return self._now.choices

    @property
    def group(self) -> str:
        return self._now.group

    @property
    def settable(self) -> bool:
        return self._now.settable

    @property
    def commands(self) -> tuple[str, ...]:
        """The commands whose parser takes the key at the default target (any group)."""
        t = TargetVersions()
        live = {c for d in self.declarations if d.covers(t) for c in d.commands}
        return tuple(c for c in _COMMANDS if c in live) or self._now.commands


@dataclass(frozen=True)
class Loading:
    """How one LLaMA-Factory release reads a YAML config (``hparams/parser.py``), for rules about the file itself.

    ``loader``: ``HfArgumentParser.parse_yaml_file`` (0.8.0-0.9.1), ``yaml.safe_load`` (0.9.2-0.9.3) or
    ``OmegaConf.load`` (0.9.4 on). ``duplicate_keys_refused``: OmegaConf's loader refuses a repeated key; PyYAML
    keeps the last one silently. ``exponent_floats``: whether ``1e-4`` is a float (OmegaConf's resolver) or the
    string ``"1e-4"`` (plain YAML 1.1 needs a dot: ``1.0e-4``).
    """

    release: Version
    commit: str
    loader: str
    duplicate_keys_refused: bool
    exponent_floats: bool
    cli_overrides: bool  # key=value arguments after the file are merged (OmegaConf.from_cli)
    transformers: str  # the requirement check_dependencies enforces at start-up
    fsdp2_non_reentrant_gc: bool  # FSDP2 forces use_reentrant_gc off (model_utils/checkpointing.py)


@dataclass(frozen=True)
class Schema:
    llamafactory_versions: tuple[Version, ...]
    transformers_versions: tuple[Version, ...]
    releases: dict[Version, Loading]
    keys: dict[str, KeySpec]

    @property
    def llamafactory_describe(self) -> str:
        """The releases the table covers, for generated files: ``v0.8.0..v0.9.6``."""
        return f"v{self.llamafactory_versions[0]}..v{self.llamafactory_versions[-1]}"

    def get(self, name: str) -> KeySpec | None:
        return self.keys.get(name)

    def declaration(
        self, name: str, target: TargetVersions | int | None = None, command: str | None = None
    ) -> Declaration | None:
        """The key's field at ``target`` (for ``command`` if given), settable or not."""
        spec = self.keys.get(name)
        return spec.at(target, command) if spec else None

    def accepted(self, name: str, command: str = "train", target: TargetVersions | int | None = None) -> Declaration | None:
        """The key's field if the parser of ``command`` at ``target`` takes it from YAML, else None."""
        d = self.declaration(name, target, command)
        return d if d is not None and d.settable else None

    def default(self, name: str, target: TargetVersions | int | None = None, *, torch: Version | None = None) -> Any:
        """The default at ``target`` when the key is not set.

        A default that depends on the installed torch (``optim`` since transformers 4.54: ``adamw_torch_fused``
        with torch 2.8 or newer, else ``adamw_torch``) is the torch-independent one unless ``torch`` is given;
        :meth:`torch_default` says whether and how it depends.
        """
        d = self.declaration(name, target)
        if d is None:
            return None
        if torch is not None and d.torch_default is not None and torch >= d.torch_default[0]:
            return d.torch_default[1]
        return d.default

    def torch_default(self, name: str, target: TargetVersions | int | None = None) -> tuple[Version, Any] | None:
        """``(Version("2.8"), "adamw_torch_fused")`` where the default changes from that torch on, else None."""
        d = self.declaration(name, target)
        return d.torch_default if d else None

    def choices(self, name: str, target: TargetVersions | int | None = None) -> tuple[Any, ...] | None:
        """The values the field declares (``Literal`` or enum) at ``target``; None when it declares none."""
        d = self.declaration(name, target)
        return d.choices if d else None

    def loading(self, target: TargetVersions | int | None = None) -> Loading:
        return self.releases[release_of(_target(target).llamafactory)]

    def history(self, name: str, target: TargetVersions | int | None = None, command: str = "train") -> str | None:
        """Why a key unknown at ``target`` is known elsewhere: ``added in LLaMA-Factory 0.9.2``, ``removed in
        LLaMA-Factory 0.9.5``, ``renamed to `x` in LLaMA-Factory 0.9.3``, ``not in transformers 5.0.0 (last in
        4.57.1)``. None when the key is accepted at ``target`` or unknown to every release."""
        t = _target(target)
        if self.accepted(name, command, t) is not None:
            return None
        if name in RENAMED_IN:
            new, since = RENAMED_IN[name]
            if t.llamafactory >= Version.parse(since):
                return f"renamed to `{new}` in LLaMA-Factory {since}"
        spec = self.keys.get(name)
        if spec is None:
            return None
        decls = [d for d in spec.declarations if command in d.commands and d.settable]
        decls = decls or [d for d in spec.declarations if d.settable]  # a key of another command's parser
        if not decls:
            return None
        lf = [d for d in decls if d.source == "llamafactory"]
        tf = [d for d in decls if d.source == "transformers"]
        here = release_of(t.llamafactory)
        if lf:
            first = min(d.since for d in lf)
            if first > here:
                for old, (new, since) in RENAMED_IN.items():
                    if new == name and Version.parse(since) == first:
                        return f"added in LLaMA-Factory {first}; {here} calls it `{old}`"
                return f"added in LLaMA-Factory {label(first)}"
            gone = max((d.until for d in lf if d.until is not None and d.until <= here), default=None)
            if gone is not None:
                return f"removed in LLaMA-Factory {gone}"
        if tf:
            tv = t.transformers
            first = min(d.since for d in tf)
            if first > tv:
                return f"added in transformers {first} (absent from {self._sample_before(first)})"
            gone = max((d.until for d in tf if d.until is not None and d.until <= max(tv, _first_sample())), default=None)
            if gone is not None:
                return f"not in transformers {gone} and later (last seen in {self._sample_before(gone)})"
        return None

    def _sample_before(self, version: Version) -> str:
        earlier = [v for v in self.transformers_versions if v < version]
        return str(max(earlier)) if earlier else "older releases"

    def renamed(self, name: str, command: str = "train", target: TargetVersions | int | None = None) -> tuple[str, str] | None:
        """``(new name, why)`` when ``name`` is an old or foreign spelling of a key the target accepts, else None.

        A rename within the supported releases (:data:`RENAMED_IN`) applies from its release on; an old
        transformers name whose successor the target no longer has either (``fp16_backend`` under transformers
        5) is no rename there, just an unknown key.
        """
        t = _target(target)
        if name in RENAMED_IN and self.accepted(name, command, t) is None:
            new, since = RENAMED_IN[name]
            if t.llamafactory >= Version.parse(since):
                return new, f"renamed in LLaMA-Factory {since}"
        if name in RENAMED:
            new, why = RENAMED[name]
            if self.accepted(new, command, t) is not None or self.get(new) is None:
                return new, why
        return None

    def suggest(self, name: str, command: str = "train", target: TargetVersions | int | None = None) -> list[str]:
        """Keys the user probably meant: renames first, then case/spacing fixes, then close spellings."""
        t = _target(target)
        if (renamed := self.renamed(name, command, t)) is not None:
            return [renamed[0]]
        pool = self.settable_names(command, t)
        normal = name.strip().lower().replace(" ", "_").replace("-", "_")
        if normal != name and normal in pool:
            return [normal]
        if (renamed := self.renamed(normal, command, t)) is not None:
            return [renamed[0]]
        return difflib.get_close_matches(normal, pool, n=3, cutoff=0.75)

    def settable_names(self, command: str = "train", target: TargetVersions | int | None = None) -> list[str]:
        """Every key the parser of ``command`` takes at ``target``."""
        t = _target(target)
        return [k for k, s in self.keys.items() if (d := s.at(t, command)) is not None and d.settable]


@lru_cache(maxsize=1)
def load_schema() -> Schema:
    from tuner.config._schema_data import SCHEMA as data

    raw: dict[str, Any] = data
    helps: dict[str, str] = raw.get("help", {})
    keys: dict[str, KeySpec] = {}
    for name, decls in raw["keys"].items():
        out = []
        for d in decls:
            span = d["lf"] if d["source"] == "llamafactory" else d["tf"]
            td = d.get("torch_default")
            out.append(
                Declaration(
                    name=name,
                    source=d["source"],
                    group=d["group"],
                    commands=tuple(d["commands"]),
                    kind=d["kind"],
                    nullable=d["nullable"],
                    default=d["default"],
                    choices=tuple(d["choices"]) if d.get("choices") else None,
                    settable=d["settable"],
                    since=Version.parse(span[0]),
                    until=Version.parse(span[1]) if span[1] else None,
                    help=helps.get(name, ""),
                    torch_default=(Version.parse(td[0].lstrip(">=")), td[1]) if td else None,
                )
            )
        keys[name] = KeySpec(name, tuple(out), helps.get(name, ""))
    releases = {
        Version.parse(v): Loading(
            release=Version.parse(v),
            commit=m["commit"],
            loader=m["loader"],
            duplicate_keys_refused=m["duplicate_keys"] == "refused",
            exponent_floats=m["exponent_floats"],
            cli_overrides=m["cli_overrides"],
            transformers=m["transformers"],
            fsdp2_non_reentrant_gc=m["fsdp2_non_reentrant_gc"],
        )
        for v, m in raw["llamafactory"].items()
    }
    return Schema(
        llamafactory_versions=tuple(Version.parse(v) for v in raw["llamafactory_versions"]),
        transformers_versions=tuple(Version.parse(v) for v in raw["transformers_versions"]),
        releases=releases,
        keys=keys,
    )


# -- values --------------------------------------------------------------------------------------------------

#: transformers converts these to an enum in ``TrainingArguments.__post_init__`` (``IntervalStrategy(...)``,
#: ``OptimizerNames(...)``, ...): a value outside the enum is a ValueError before training starts.
ENUM_CONVERTED = {
    "eval_strategy": "IntervalStrategy",
    "evaluation_strategy": "IntervalStrategy",
    "logging_strategy": "IntervalStrategy",
    "save_strategy": "IntervalStrategy/SaveStrategy",
    "hub_strategy": "HubStrategy",
    "lr_scheduler_type": "SchedulerType",
    "optim": "OptimizerNames",
    "fsdp": "FSDPOption",
    "debug": "DebugOption",
}

#: LLaMA-Factory ``Literal`` fields whose other values fail, and where (the same code from 0.8.0 to 0.9.5).
#: ``parse_dict`` does not check ``Literal`` choices; for fields not listed here an unlisted value is passed on
#: and compared with ``==`` somewhere, which may simply select a default path (``export_device: gpu`` behaves
#: as ``auto``), so cfglint does not report it.
LITERAL_FAILURES = {
    "stage": "`run_exp` in `train/tuner.py` raises ValueError(\"Unknown task\")",
    "finetuning_type": "`FinetuningArguments.__post_init__` asserts it (\"Invalid fine-tuning method.\")",
    "mix_strategy": "`merge_dataset` in `data/data_utils.py` raises ValueError(\"Unknown mixing strategy\") when "
    "it mixes two or more datasets",
}

#: str fields that code uses as a string right away, so a list or mapping (an unfilled ``[placeholder]``) fails.
STR_REQUIRED = {
    "output_dir": "`TrainingArguments.__post_init__` calls `os.path.expanduser` on it (TypeError at start-up)",
}


def _yaml_type(value: Any) -> str:
    return {list: "list", dict: "mapping", bool: "boolean", int: "number", float: "number"}.get(type(value), "value")


#: int fields where a float fails rather than being used as the number it is.
FLOAT_BREAKS_INT = {
    "per_device_train_batch_size": "torch's DataLoader refuses it (\"batch_size should be a positive integer value\")",
    "per_device_eval_batch_size": "torch's DataLoader refuses it (\"batch_size should be a positive integer value\")",
    "lora_rank": "peft sizes the LoRA matrices with it (`nn.Linear(in_features, r)`): a TypeError while the "
    "adapter is built",
}

_FALSE_WORDS = {"false", "no", "off", "0", "n", "f", "none", "null", "disable", "disabled"}


@dataclass(frozen=True)
class TypeProblem:
    """A value that breaks the run or changes what it does: ``message`` says what happens, ``fixed`` is the
    value that was meant when it is clear (for a fix)."""

    message: str
    fixed: Any = None


def type_problem(
    spec: Declaration | KeySpec,
    value: Any,
    target: TargetVersions | int | None = None,
    *,
    raw: str | None = None,
    datasets: int | None = None,
) -> str | None:
    """Why ``value`` breaks the run or changes its behaviour for this field, or None when it works.

    ``raw`` is the value's source text (to see ``1e-4`` the way a pre-OmegaConf release reads it), ``datasets``
    how many datasets the config mixes. See :func:`value_problem` for the fixed value.
    """
    problem = value_problem(spec, value, target, raw=raw, datasets=datasets)
    return problem.message if problem else None


def value_problem(
    spec: Declaration | KeySpec,
    value: Any,
    target: TargetVersions | int | None = None,
    *,
    raw: str | None = None,
    datasets: int | None = None,
) -> TypeProblem | None:
    """The checks behind :func:`type_problem`. ``HfArgumentParser.parse_dict`` stores values unconverted, so
    only what the consuming code does with a value matters:

    * bool fields are tested for truth (``if args.do_train:``): ``0``/``1`` work; a string meaning false
      (``"false"``) is a non-empty string, which is true, so the option is on;
    * int/float fields: a string is kept as a string and the first comparison or arithmetic on it fails
      (``"16" * 2 == "1616"`` for ``lora_alpha``); ``null`` fails the same way; a float only where a consumer
      needs an int (:data:`FLOAT_BREAKS_INT`); before LLaMA-Factory 0.9.4 ``1e-4`` is read as a string;
    * choices: only where upstream converts or checks them (:data:`ENUM_CONVERTED`, :data:`LITERAL_FAILURES`).
    """
    t = _target(target)
    d = spec.at(t) if isinstance(spec, KeySpec) else spec
    if d is None:
        return None
    name, kind = d.name, d.kind
    if value is None:
        if kind in ("int", "float") and not d.nullable:
            return TypeProblem(
                f"`{name}: null` is passed on as None: the first comparison or arithmetic on it fails (TypeError)"
            )
        return None
    if kind == "bool":
        if isinstance(value, str) and value.strip().lower() in _FALSE_WORDS and value.strip():
            return TypeProblem(
                f"`{name}: \"{value}\"` is a non-empty string, which Python treats as true: LLaMA-Factory tests "
                f"`if args.{name}:`, so this turns the option on",
                fixed=False,
            )
        return None
    if kind in ("int", "float"):
        if isinstance(value, str):
            number = _number(value, kind)
            what = "the string" if number is None else "a quoted number, i.e. the string"
            return TypeProblem(
                f"`{name}` is {what} {value!r}: the dataclass keeps it as a string and the first comparison or "
                "arithmetic on it fails (TypeError) or misbehaves (`\"16\" * 2 == \"1616\"`)",
                fixed=number,
            )
        if isinstance(value, float) and not isinstance(value, bool) and raw is not None:
            loading = load_schema().loading(t)
            if not loading.exponent_floats and _exponent_only(raw):
                return TypeProblem(
                    f"`{name}: {raw.strip()}` is the string {raw.strip()!r} to LLaMA-Factory {t.llamafactory}, which "
                    f"reads the file with `{loading.loader}` (YAML 1.1 floats need a dot, as in `1.0e-4`; "
                    "OmegaConf from 0.9.4 on reads it as a number): the first comparison or arithmetic on it fails",
                    fixed=value,
                )
        if kind == "int" and isinstance(value, float) and name in FLOAT_BREAKS_INT:
            return TypeProblem(
                f"`{name}: {value!r}` is a float: {FLOAT_BREAKS_INT[name]}",
                fixed=int(value) if value.is_integer() else None,
            )
        return None
    if kind == "str" and name in STR_REQUIRED and not isinstance(value, str):
        return TypeProblem(f"`{name}` is a {_yaml_type(value)}, not a string: {STR_REQUIRED[name]}")
    choices = d.choices
    if name in ENUM_CONVERTED and isinstance(value, bool) and choices and str(value).lower() not in choices:
        word = "no" if value is False else "yes"
        shown = f'"{word}"' if word in choices else None
        return TypeProblem(
            f"`{name}` is the boolean {str(value).lower()} (YAML reads an unquoted yes/no/on/off as one): "
            f"`TrainingArguments.__post_init__` converts it to `{ENUM_CONVERTED[name]}` and fails (ValueError: "
            f"\"{value} is not a valid {ENUM_CONVERTED[name].split('/')[0]}\") before training",
            fixed=shown,
        )
    if not choices or not isinstance(value, (str, list)):
        return None
    if name in ENUM_CONVERTED:
        items = value if isinstance(value, list) else value.split() if name in ("fsdp", "debug") else [value]
        for item in items:
            if isinstance(item, str) and item not in choices:
                return TypeProblem(
                    f"`{name}: {item}` is not a valid `{ENUM_CONVERTED[name]}` in transformers {t.transformers}: "
                    "`TrainingArguments.__post_init__` converts it and fails (ValueError) before training"
                    + _did_you_mean(item, choices),
                    fixed=_close(item, choices) if len(items) == 1 else None,
                )
        return None
    if name in LITERAL_FAILURES and isinstance(value, str) and value not in choices:
        if name == "mix_strategy" and (datasets is None or datasets < 2):
            return None
        return TypeProblem(
            f"`{name}: {value}` is not one of {', '.join(map(str, choices))} (LLaMA-Factory {t.llamafactory}): "
            f"{LITERAL_FAILURES[name]}" + _did_you_mean(value, choices),
            fixed=_close(value, choices),
        )
    return None


def _exponent_only(raw: str) -> bool:
    """``1e-4``/``5E-5``: a float to OmegaConf, a string to plain YAML 1.1 (no dot)."""
    text = raw.strip()
    return bool(re.fullmatch(r"[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+", text))


def _close(item: str, choices: tuple[Any, ...]) -> str | None:
    names = [str(c) for c in choices]
    if str(item).lower() in names:
        return str(item).lower()
    close = difflib.get_close_matches(str(item), names, n=1, cutoff=0.6)
    return close[0] if close else None


def _did_you_mean(item: str, choices: tuple[Any, ...]) -> str:
    guess = _close(item, choices)
    return f"; did you mean `{guess}`?" if guess else ""


def _number(text: str, kind: str) -> int | float | None:
    t = text.strip().replace("_", "")
    try:
        f = float(t)
    except ValueError:
        return None
    if kind == "int":
        return int(f) if f.is_integer() else None
    return f
