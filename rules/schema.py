"""Key schema: unknown, renamed, derived and mistyped keys, for the target LLaMA-Factory/transformers versions.

``HfArgumentParser.parse_dict`` refuses unknown keys but checks neither types nor ``Literal`` choices: values
reach the dataclasses unconverted. A type is only reported where the value then breaks the run or changes what
it does (``lora_rank: "16"`` makes ``lora_alpha`` the string ``"1616"``); ``do_train: 1`` works, since the code
tests truth, and is not reported.
"""

from __future__ import annotations

from collections.abc import Iterator

from tuner.config.schema import UNSAFE_RENAMES, value_problem
from tuner.config.versions import Version
from tuner.config.context import Context
from tuner.lint.fixes import rename_key, replace_value, yaml_scalar
from tuner.lint.rule import Finding, Fix, Rule, Severity, SkipRule

from ._lf_common import STAGE_ONLY_KEYS


class UnknownKey(Rule):
    """A key that LLaMA-Factory's argument parser does not know.

    LLaMA-Factory stops at start-up with ``ValueError: Some keys are not used by the HfArgumentParser`` when a
    config has a key no argument dataclass defines (unless ``ALLOW_EXTRA_ARGS=1``). Typos, keys from another
    trainer's config format and keys of a newer or older release all end the run before it starts. Keys are
    judged for the target LLaMA-Factory and transformers versions (``--target-llamafactory``,
    ``--target-transformers``): a key of another release says when it was added, removed or renamed
    (``quantization_method`` was added in LLaMA-Factory 0.8.3; ``new_special_tokens`` became
    ``add_special_tokens`` in 0.9.3). Every ``TrainingArguments`` field of the target transformers (``seed``,
    ``data_seed``, ...) is accepted. Keys that belong to another subcommand (``eval`` keys in a ``train``
    config) are named as such.

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
        command = ctx.kind.command
        target = ctx.options.target
        claimed = set(ctx.data)
        env = {k: ctx.options.env.get(k, "").lower() in ("1", "true", "y") for k in ("USE_MCA", "USE_MEGATRON_BRIDGE")}
        if command == "train" and env["USE_MCA"] and ctx.lf >= Version.parse("0.9.4"):
            # USE_MCA=1 parses mcore_adapter's TrainingArguments, whose fields cfglint does not know
            raise SkipRule("USE_MCA=1: the train parser takes mcore_adapter's TrainingArguments, not in the key schema")
        bridge = command == "train" and env["USE_MEGATRON_BRIDGE"]
        for key in ctx.data:
            if schema.accepted(key, command, target) is not None or schema.renamed(key, command, target):
                continue  # KEY002 names the new key of a renamed one
            if bridge and schema.accepted(key, "megatron", target) is not None:
                continue  # USE_MEGATRON_BRIDGE=1 parses MegatronBridgeArguments beside the train groups
            spec = schema.get(key)
            other = schema.declaration(key, target)
            if other is not None and not other.settable:
                continue  # KEY004 explains derived keys
            if other is not None and command not in other.commands:
                live = [d for d in spec.declarations if d.covers(target)] if spec else []
                cmds = [c for c in ("train", "infer", "export", "eval") if any(c in d.commands for d in live)]
                where = ", ".join(f"`llamafactory-cli {c}`" for c in cmds)
                extra = " (only with USE_MEGATRON_BRIDGE=1)" if "megatron" in other.commands else ""
                yield Finding(
                    key=key,
                    message=f"`{key}` is not a `{command}` argument: it belongs to {where or other.group}{extra}",
                    hint="remove it, or lint with the subcommand that reads this file (--command)",
                )
                continue
            history = schema.history(key, target, command)
            if history is not None:
                yield Finding(
                    key=key,
                    message=f"`{key}` is not accepted by {target.describe()}: {history}; LLaMA-Factory refuses the "
                    "config (\"Some keys are not used by the HfArgumentParser\")",
                    hint=_version_hint(key, history),
                    depends_on_version=_version_side(ctx, key),
                )
                continue
            suggestions = schema.suggest(key, command, target)
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


def _version_side(ctx: Context, key: str) -> str | None:
    """Which release decides whether ``key`` is accepted, when some supported release accepts it: the finding
    then depends on the version the run really uses (``Finding.depends_on_version``). None for keys no release
    has (typos, other trainers' names)."""
    spec = ctx.schema.get(key)
    if spec is None:
        return None
    live = [d for d in spec.declarations if d.settable]
    if not live:
        return None
    return "transformers" if any(d.source == "transformers" for d in live) else "llamafactory"


def _version_hint(key: str, history: str) -> str:
    if history.startswith("renamed to"):
        new = history.split("`")[1]
        return f"rename it to `{new}`"
    if "calls it `" in history:
        return f"use `{history.split('calls it `')[1].split('`')[0]}` for that release, or lint for a newer one"
    if history.startswith("added in LLaMA-Factory"):
        return "upgrade LLaMA-Factory, or remove it (set --target-llamafactory to the release the run uses)"
    if history.startswith("added in transformers"):
        return "upgrade transformers, or remove it (set --target-transformers to the release the run uses)"
    return "remove it, or set --target-llamafactory/--target-transformers to the releases the run uses"


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
        target = ctx.options.target
        for key in ctx.data:
            renamed = ctx.schema.renamed(key, ctx.kind.command, target)
            if renamed is None:
                continue
            new, why = renamed
            accepted = ctx.schema.accepted(key, ctx.kind.command, target)
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
            state = "is deprecated" if accepted else "is not accepted"
            yield Finding(
                key=key,
                message=f"`{key}` {state}: use `{new}` ({why})",
                hint=hint,
                fix=fix,
                severity=Severity.WARNING if accepted else None,  # a deprecated alias still runs
                depends_on_version=_version_side(ctx, key),
            )


def _rename_with_value(ctx: Context, key: str, new: str, value_text: str) -> Fix | None:
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
    """A value that breaks the run or changes what it does, because of its type or outside its choices.

    ``HfArgumentParser.parse_dict`` passes YAML values to the dataclasses unconverted and unchecked, so only
    what the consuming code does with a value matters. Reported: a quoted number (``lora_rank: "16"`` stays a
    string: ``lora_alpha`` then defaults to ``"16" * 2 == "1616"``, and comparisons fail with TypeError); a
    string meaning false on a boolean (``"false"`` is a non-empty string, so ``if args.x:`` turns it on);
    ``null`` on a number; a float where torch or peft needs an int (batch sizes, ``lora_rank``); ``1e-4`` before
    LLaMA-Factory 0.9.4, which read files with plain YAML 1.1 (a string there); and values outside the choices
    only where upstream converts or checks them: transformers' enums (``eval_strategy``, ``optim``,
    ``lr_scheduler_type``, ...) in ``TrainingArguments.__post_init__``, LLaMA-Factory's ``stage`` and
    ``finetuning_type``. Not reported: ``do_train: 1`` (true), ``resume_from_checkpoint: false`` (transformers
    treats ``False`` as "do not resume"), ``export_device: gpu`` (only ``cpu`` is tested for; anything else
    behaves as ``auto``). A quoted number is fixed by unquoting it (safe).

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
    do_train: 1
    lora_rank: 16
    learning_rate: 1.0e-4
    lr_scheduler_type: cosine
    resume_from_checkpoint: false
    ```
    """

    code = "KEY003"
    name = "wrong-type"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        target = ctx.options.target
        datasets = len(ctx.as_list("dataset"))
        for key, value in ctx.data.items():
            if key == "quantization_method":
                yield from self._bitsandbytes_spelling(ctx, value)
                continue  # other methods: QUANT010 knows what each does with quantization_bit
            spec = ctx.schema.accepted(key, ctx.kind.command, target)
            if spec is None:
                continue
            if value is None and ctx.stage not in STAGE_ONLY_KEYS.get(key, (ctx.stage,)):
                continue  # a null that this stage's workflow never reads (`pref_beta: null` in SFT) breaks nothing
            entry = ctx.doc.entry(key)
            raw = ctx.doc.text[entry.value_span.start.offset : entry.value_span.end.offset] if entry else None
            problem = value_problem(spec, value, target, raw=raw, datasets=datasets)
            if problem is None:
                continue
            if key == "warmup_steps" and isinstance(value, float) and 0 < value < 1:
                continue  # a ratio written as steps: PRAC004 reports it with the rename to warmup_ratio
            fix = None
            kind = spec.kind
            if isinstance(value, str) and kind in ("int", "float") and problem.fixed is not None:
                fix = replace_value(ctx, key, yaml_scalar(problem.fixed), f"write `{key}` as a number", safe=True)
            elif isinstance(value, float) and kind == "float" and raw is not None:
                fix = replace_value(ctx, key, _dotted(raw), f"write `{key}` with a dot, as YAML 1.1 needs", safe=True)
            elif isinstance(value, float) and kind == "int" and isinstance(problem.fixed, int):
                fix = replace_value(ctx, key, str(problem.fixed), f"write `{key}` as an integer", safe=True)
            elif kind == "bool" and problem.fixed is False:
                fix = replace_value(ctx, key, "false", f"write `{key}: false`", safe=True)
            elif isinstance(value, bool) and isinstance(problem.fixed, str):
                fix = replace_value(ctx, key, problem.fixed, f"quote it: `{key}: {problem.fixed}`", safe=True)
            elif isinstance(value, str) and isinstance(problem.fixed, str):
                fix = replace_value(ctx, key, yaml_scalar(problem.fixed), f"set `{key}: {problem.fixed}`", safe=False)
            hint = (
                "quote nothing: YAML reads 16 as an integer and \"16\" as a string"
                if isinstance(value, str) and kind in ("int", "float", "bool")
                else None
            )
            if spec.help and hint is None:
                hint = spec.help.split(". ")[0].rstrip(".")
            yield Finding(key=key, message=problem.message, hint=hint, fix=fix)


    def _bitsandbytes_spelling(self, ctx: Context, value: object) -> Iterator[Finding]:
        """``bitsandbytes`` (LLaMA-Factory 0.8.3-0.9.2) vs ``bnb`` (0.9.3 on): the other release's spelling
        matches no branch of ``configure_quantization``, so the model loads unquantized."""
        choices = ctx.schema.choices("quantization_method", ctx.options.target) or ()
        if value not in BITSANDBYTES or value in choices or ctx.get("quantization_bit") is None:
            return
        right = next((c for c in choices if c in BITSANDBYTES), None)
        if right is None:
            return
        yield Finding(
            key="quantization_method",
            also=("quantization_bit",),
            message=f"`quantization_method: {value}` is not LLaMA-Factory {ctx.lf}'s name for bitsandbytes "
            f"(`{right}`; `bitsandbytes` until 0.9.2, `bnb` from 0.9.3): `configure_quantization` "
            "(`model/model_utils/quantization.py`) matches no method and loads the model unquantized",
            hint=f"write `quantization_method: {right}`",
            fix=replace_value(ctx, "quantization_method", right, f"write `quantization_method: {right}`", safe=True),
            depends_on_version="llamafactory",
        )


#: The two spellings of the bitsandbytes method across LLaMA-Factory releases.
BITSANDBYTES = ("bitsandbytes", "bnb")


def _dotted(raw: str) -> str:
    """``1e-4`` -> ``1.0e-4``: the same number, a float to every YAML loader."""
    text = raw.strip()
    mantissa, _, exponent = text.lower().partition("e")
    return f"{mantissa}.0e{exponent}"


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
        target = ctx.options.target
        for key in ctx.data:
            spec = ctx.schema.declaration(key, target)
            if spec is None or spec.settable or ctx.schema.renamed(key, ctx.kind.command, target):
                continue
            yield Finding(
                key=key,
                message=f"`{key}` is derived by LLaMA-Factory and cannot be set: the parser refuses it as an unknown key",
                hint=self._INSTEAD.get(key, "remove it"),
            )
