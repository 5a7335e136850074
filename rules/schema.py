"""Key schema: unknown, renamed, derived and mistyped keys.

``HfArgumentParser.parse_dict`` refuses unknown keys but checks neither types nor ``Literal`` choices, so a
string where an int belongs reaches the dataclass unchanged and fails much later, or quietly misbehaves
(``lora_rank: "16"`` makes ``lora_alpha`` the string ``"1616"``).
"""

from __future__ import annotations

from collections.abc import Iterator

from tuner.config.schema import RENAMED, UNSAFE_RENAMES, type_problem
from tuner.config.context import Context
from tuner.lint.fixes import rename_key, replace_value, yaml_scalar
from tuner.lint.rule import Finding, Rule, Severity


class UnknownKey(Rule):
    """A key that LLaMA-Factory's argument parser does not know.

    LLaMA-Factory stops at start-up with ``ValueError: Some keys are not used by the HfArgumentParser`` when a
    config has a key no argument dataclass defines (unless ``ALLOW_EXTRA_ARGS=1``). Typos, keys from another
    trainer's config format and keys of a newer or older release all end the run before it starts. Keys that
    belong to another subcommand (``eval`` keys in a ``train`` config) or to another transformers major are
    named as such.

    Bad:

    ```yaml
    model_name_or_path: Qwen/Qwen2.5-7B-Instruct
    lerning_rate: 1.0e-4
    ```

    Good:

    ```yaml
    model_name_or_path: Qwen/Qwen2.5-7B-Instruct
    learning_rate: 1.0e-4
    ```
    """

    code = "KEY001"
    name = "unknown-key"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        schema = ctx.schema
        command = ctx.options.command
        major = ctx.options.transformers_major
        claimed = set(ctx.data)
        for key in ctx.data:
            if key in RENAMED or schema.accepted(key, command, major) is not None:
                continue
            spec = schema.get(key)
            if spec is not None and not spec.settable:
                continue  # KEY004 explains derived keys
            if spec is not None and command not in spec.commands:
                where = ", ".join(f"`llamafactory-cli {c}`" for c in spec.commands if c != "megatron")
                extra = " (only with USE_MEGATRON_BRIDGE=1)" if "megatron" in spec.commands else ""
                yield Finding(
                    key=key,
                    message=f"`{key}` is not a `{command}` argument: it belongs to {where or spec.group}{extra}",
                    hint="remove it, or lint with the subcommand that reads this file (--command)",
                )
                continue
            if spec is not None and major not in spec.transformers:
                other = spec.transformers[0] if spec.transformers else "another"
                yield Finding(
                    key=key,
                    message=f"`{key}` exists only in transformers {other}.x; this run uses transformers {major}.x, "
                    "where the parser refuses it",
                    hint=f"remove it, or lint with --transformers {other} if that is what the run installs",
                )
                continue
            suggestions = schema.suggest(key, command, major)
            fix = None
            hint = "check the spelling against `cfglint keys` or LLaMA-Factory's hparams"
            if suggestions:
                best = suggestions[0]
                hint = f"did you mean `{best}`?" + (
                    f" (other close keys: {', '.join(suggestions[1:])})" if len(suggestions) > 1 else ""
                )
                if best not in claimed:
                    claimed.add(best)
                    fix = rename_key(ctx, key, best, f"rename `{key}` to `{best}`", safe=False)
            yield Finding(
                key=key,
                message=f"unknown key `{key}`: LLaMA-Factory refuses the config "
                "(\"Some keys are not used by the HfArgumentParser\")",
                hint=hint,
                fix=fix,
            )


class RenamedKey(Rule):
    """A key that was renamed or deprecated, or another trainer's name for a LLaMA-Factory key.

    Old spellings such as ``evaluation_strategy`` (now ``eval_strategy``) are refused by the parser, or are
    deprecated aliases that newer releases drop. Renaming is a safe fix where the meaning is unchanged; where
    the value needs rewriting too (``load_in_4bit: true`` is ``quantization_bit: 4``) the fix is unsafe.

    Bad:

    ```yaml
    model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
    evaluation_strategy: steps
    eval_steps: 500
    ```

    Good:

    ```yaml
    model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
    eval_strategy: steps
    eval_steps: 500
    ```
    """

    code = "KEY002"
    name = "renamed-key"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        for key in ctx.data:
            if key not in RENAMED:
                continue
            new, why = RENAMED[key]
            safe = key not in UNSAFE_RENAMES
            fix = None
            if new in ctx.data:
                hint = f"`{new}` is already set; remove `{key}`"
            else:
                hint = f"rename it to `{new}`"
                value = ctx.data[key]
                if key in ("load_in_4bit", "load_in_8bit"):
                    if value is True:
                        fix = _rename_with_value(ctx, key, new, "4" if key == "load_in_4bit" else "8")
                    hint = f"use `{new}: {'4' if key == 'load_in_4bit' else '8'}`"
                else:
                    fix = rename_key(ctx, key, new, f"rename `{key}` to `{new}`", safe=safe)
            accepted = ctx.schema.accepted(key, ctx.options.command, ctx.options.transformers_major)
            state = "is deprecated" if accepted else "is not accepted"
            yield Finding(key=key, message=f"`{key}` {state}: use `{new}` ({why})", hint=hint, fix=fix)


def _rename_with_value(ctx: Context, key: str, new: str, value_text: str):  # type: ignore[no-untyped-def]
    from tuner.lint.fixes import combine

    return combine(
        f"replace `{key}: true` with `{new}: {value_text}`",
        [
            rename_key(ctx, key, new, "", safe=False),
            replace_value(ctx, key, value_text, "", safe=False),
        ],
        safe=False,
    )


class WrongType(Rule):
    """A value of the wrong type, or outside the allowed choices.

    LLaMA-Factory passes YAML values to its dataclasses without converting them, so ``lora_rank: "16"`` is the
    string ``"16"``: ``lora_alpha`` then defaults to ``"16" * 2 == "1616"`` and peft fails deep inside model
    loading. Enum-like keys (``eval_strategy``, ``lr_scheduler_type``, ``optim``) fail in transformers with
    ``… is not a valid …``; ``Literal`` keys of LLaMA-Factory (``stage``, ``finetuning_type``) fail an assert or
    are silently ignored. A quoted number is fixed by unquoting it (safe).

    Bad:

    ```yaml
    stage: sft
    lora_rank: "16"
    learning_rate: "1e-4"
    lr_scheduler_type: cosine_decay
    ```

    Good:

    ```yaml
    stage: sft
    lora_rank: 16
    learning_rate: 1.0e-4
    lr_scheduler_type: cosine
    ```
    """

    code = "KEY003"
    name = "wrong-type"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        major = ctx.options.transformers_major
        for key, value in ctx.data.items():
            spec = ctx.schema.accepted(key, ctx.options.command, major)
            if spec is None:
                continue
            problem = type_problem(spec, value, major)
            if problem is None:
                continue
            if key == "warmup_steps" and isinstance(value, float) and 0 < value < 1:
                continue  # a ratio written as steps: PRAC004 reports it with the rename to warmup_ratio
            fix = None
            kind = spec.kind_for(major)
            if isinstance(value, str) and kind in ("int", "float"):
                converted = _number(value, kind)
                if converted is not None:
                    fix = replace_value(ctx, key, yaml_scalar(converted), f"write `{key}` as a number", safe=True)
            elif isinstance(value, str) and kind == "bool" and value.strip().lower() in ("true", "false"):
                fix = replace_value(ctx, key, value.strip().lower(), f"write `{key}` as a boolean", safe=True)
            elif isinstance(value, float) and kind == "int" and value.is_integer():
                fix = replace_value(ctx, key, str(int(value)), f"write `{key}` as an integer", safe=True)
            elif isinstance(value, str) and "did you mean `" in problem:
                guess = problem.rsplit("did you mean `", 1)[1].split("`", 1)[0]
                fix = replace_value(ctx, key, yaml_scalar(guess), f"set `{key}: {guess}`", safe=False)
            hint = (
                "quote nothing: YAML reads 16 as an integer and \"16\" as a string"
                if isinstance(value, str) and kind in ("int", "float", "bool")
                else None
            )
            if spec.help and hint is None:
                hint = spec.help.split(". ")[0].rstrip(".")
            yield Finding(key=key, message=problem, hint=hint, fix=fix)


def _number(text: str, kind: str) -> int | float | None:
    t = text.strip().replace("_", "")
    try:
        if kind == "int":
            f = float(t)
            return int(f) if f.is_integer() else None
        return float(t)
    except ValueError:
        return None


class DerivedKey(Rule):
    """A key LLaMA-Factory derives itself and refuses from the config.

    ``compute_dtype``, ``device_map``, ``model_max_length`` and ``block_diag_attn`` are ``init=False`` fields:
    LLaMA-Factory computes them (``compute_dtype`` from ``bf16``/``fp16``, ``model_max_length`` from
    ``cutoff_len``), and the parser refuses them as unknown keys.

    Bad:

    ```yaml
    cutoff_len: 4096
    compute_dtype: bfloat16
    ```

    Good:

    ```yaml
    cutoff_len: 4096
    bf16: true
    ```
    """

    code = "KEY004"
    name = "derived-key"
    severity = Severity.ERROR

    _INSTEAD = {
        "compute_dtype": "set `bf16: true` or `fp16: true`",
        "model_max_length": "set `cutoff_len`",
        "device_map": "LLaMA-Factory places the model itself; use `quantization_device_map` for quantized inference",
        "block_diag_attn": "set `neat_packing: true`",
    }

    def check(self, ctx: Context) -> Iterator[Finding]:
        for key in ctx.data:
            spec = ctx.schema.get(key)
            if spec is None or spec.settable or key in RENAMED:
                continue
            yield Finding(
                key=key,
                message=f"`{key}` is derived by LLaMA-Factory and cannot be set: the parser refuses it as an unknown key",
                hint=self._INSTEAD.get(key, "remove it"),
            )
