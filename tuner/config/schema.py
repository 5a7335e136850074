"""What keys a LLaMA-Factory config accepts, their types, defaults and choices.

The table itself is generated (``_schema_data.py``, by ``scripts/schema_sync.py``) and loaded lazily. This
module adds what the table cannot say: renamed keys, did-you-mean suggestions, and value checks that follow
how LLaMA-Factory receives values (``HfArgumentParser.parse_dict`` passes them to the dataclasses unconverted,
so a string where an int belongs is accepted and fails later, or silently misbehaves).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

#: Old or foreign spellings that LLaMA-Factory refuses, with the key that replaced them.
#: Each is an unknown key to the parser; renaming is safe because the meaning is unchanged.
RENAMED: dict[str, tuple[str, str]] = {
    "evaluation_strategy": ("eval_strategy", "renamed in transformers 4.41, removed in 4.46"),
    "per_gpu_train_batch_size": ("per_device_train_batch_size", "deprecated by transformers"),
    "per_gpu_eval_batch_size": ("per_device_eval_batch_size", "deprecated by transformers"),
    "no_cuda": ("use_cpu", "renamed in transformers 4.34"),
    "push_to_hub_token": ("hub_token", "renamed by transformers"),
    "fp16_backend": ("half_precision_backend", "renamed by transformers"),
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

#: Renames whose value also changes meaning; the fix is offered but marked unsafe.
UNSAFE_RENAMES = {
    "load_in_4bit",
    "load_in_8bit",
    "batch_size",
    "model_max_length",
    "max_source_length",
    "max_target_length",
}


@dataclass(frozen=True)
class KeySpec:
    name: str
    kind: str  # bool | int | float | str | list | dict | any | str_or_bool
    nullable: bool
    default: Any
    choices: tuple[Any, ...] | None
    group: str
    commands: tuple[str, ...]
    settable: bool
    help: str
    transformers: tuple[int, ...]
    kind5: str | None = None
    default5: Any = None
    choices5: tuple[Any, ...] | None = None

    def kind_for(self, major: int) -> str:
        return self.kind5 if (major >= 5 and self.kind5) else self.kind

    def choices_for(self, major: int) -> tuple[Any, ...] | None:
        return self.choices5 if (major >= 5 and self.choices5) else self.choices

    def default_for(self, major: int) -> Any:
        return self.default5 if (major >= 5 and self.default5 is not None) else self.default


@dataclass(frozen=True)
class Schema:
    llamafactory_version: str
    llamafactory_describe: str
    transformers_versions: tuple[str, ...]
    transformers_range: str
    keys: dict[str, KeySpec]

    def get(self, name: str) -> KeySpec | None:
        return self.keys.get(name)

    def accepted(self, name: str, command: str = "train", transformers_major: int = 4) -> KeySpec | None:
        """The key's spec if the parser of ``command`` accepts it from YAML, else None."""
        spec = self.keys.get(name)
        if spec is None or not spec.settable or command not in spec.commands:
            return None
        if transformers_major not in spec.transformers:
            return None
        return spec

    def suggest(self, name: str, command: str = "train", transformers_major: int = 4) -> list[str]:
        """Keys the user probably meant: renames first, then case/spacing fixes, then close spellings."""
        if name in RENAMED:
            return [RENAMED[name][0]]
        pool = [
            k for k, s in self.keys.items() if s.settable and command in s.commands and transformers_major in s.transformers
        ]
        normal = name.strip().lower().replace(" ", "_").replace("-", "_")
        if normal != name and normal in pool:
            return [normal]
        if normal in RENAMED:
            return [RENAMED[normal][0]]
        return difflib.get_close_matches(normal, pool, n=3, cutoff=0.75)


@lru_cache(maxsize=1)
def load_schema() -> Schema:
    from tuner.config._schema_data import SCHEMA as data

    schema: dict[str, Any] = data
    keys = {}
    for name, raw in schema["keys"].items():
        keys[name] = KeySpec(
            name=name,
            kind=raw["kind"],
            nullable=raw["nullable"],
            default=raw["default"],
            choices=tuple(raw["choices"]) if raw.get("choices") else None,
            group=raw["group"],
            commands=tuple(raw["commands"]),
            settable=raw["settable"],
            help=raw["help"],
            transformers=tuple(raw["transformers"]),
            kind5=raw.get("kind5"),
            default5=raw.get("default5"),
            choices5=tuple(raw["choices5"]) if raw.get("choices5") else None,
        )
    return Schema(
        llamafactory_version=schema["llamafactory_version"],
        llamafactory_describe=schema["llamafactory_describe"],
        transformers_versions=tuple(schema["transformers_versions"]),
        transformers_range=schema["transformers_range"],
        keys=keys,
    )


_KIND_WORDS = {
    "bool": "true or false",
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "list": "a string or a list of strings",
    "dict": "a mapping (or a JSON string)",
    "str_or_bool": "a string or a boolean",
}


def type_problem(spec: KeySpec, value: Any, transformers_major: int = 4) -> str | None:
    """Why ``value`` is the wrong type or outside the choices for ``spec``, or None when it is fine.

    The checks are what the dataclass would need to work, since nothing converts the value on the way in.
    """
    if value is None:
        if spec.nullable or spec.kind == "any":
            return None
        return f"`{spec.name}` cannot be null; expected {_KIND_WORDS.get(spec.kind_for(transformers_major), spec.kind)}"
    kind = spec.kind_for(transformers_major)
    want = _KIND_WORDS.get(kind, kind)
    got = _describe(value)
    if kind == "bool":
        if not isinstance(value, bool):
            return f"`{spec.name}` must be {want}, got {got}"
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return f"`{spec.name}` must be an integer, got the float {value!r}; write {int(value)}"
            return f"`{spec.name}` must be {want}, got {got}"
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"`{spec.name}` must be {want}, got {got}"
    elif kind == "str":
        if not isinstance(value, str):
            return f"`{spec.name}` must be {want}, got {got}"
    elif kind == "list":
        if isinstance(value, list):
            if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
                return f"`{spec.name}` must be {want}, got a list containing {_describe(next(v for v in value if not isinstance(v, (str, int, float)) or isinstance(v, bool)))}"
        elif not isinstance(value, str):
            return f"`{spec.name}` must be {want}, got {got}"
    elif kind == "dict":
        if not isinstance(value, (dict, str)):
            return f"`{spec.name}` must be {want}, got {got}"
    elif kind == "str_or_bool":
        if not isinstance(value, (str, bool)):
            return f"`{spec.name}` must be {want}, got {got}"
    choices = spec.choices_for(transformers_major)
    if choices:
        items = value if isinstance(value, list) else _split_words(value) if spec.name in {"fsdp", "debug"} else [value]
        for item in items:
            if isinstance(item, str) and item == "" and spec.name in {"fsdp", "debug"}:
                continue
            if item not in choices:
                close = difflib.get_close_matches(str(item), [str(c) for c in choices], n=1, cutoff=0.6)
                hint = f"; did you mean `{close[0]}`?" if close else ""
                shown = ", ".join(str(c) for c in choices[:12]) + (", ..." if len(choices) > 12 else "")
                return f"`{spec.name}: {item}` is not one of: {shown}{hint}"
    return None


def _split_words(value: Any) -> list[Any]:
    return value.split() if isinstance(value, str) else [value]


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
