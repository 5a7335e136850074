"""What LLaMA-Factory silently changes or only logs at start-up, surfaced before the run.

``__post_init__`` methods and ``get_train_args`` (``hparams/*.py``) split strings, fill defaults and override
values, and log warnings that scroll past in the first seconds of a run. These rules report the ones a user
would want to know about: as warnings when the result is probably not what the config says, as infos when it
is a notable default. Rewrites that do exactly what the config obviously means are not reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import yaml

from tuner.config.loader import LLaMAFactoryLoader
from tuner.config.context import Context
from tuner.lint.fixes import replace_value, set_key
from tuner.lint.rule import Edit, Finding, Fix, Rule, Severity

from ._lf_common import keys_text, report_to


def _string_value(text: str) -> str:
    """``text`` as a block-context YAML scalar: plain when LLaMA-Factory reads it back unchanged, else quoted."""
    try:
        if yaml.load(f"k: {text}\n", Loader=LLaMAFactoryLoader) == {"k": text}:
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(text)


def _set_string(ctx: Context, key: str, text: str, description: str) -> Fix | None:
    """Replace a value, block lists included, with a one-line string after ``key:`` (comments after it stay)."""
    entry = ctx.doc.entry(key)
    if entry is None:
        return None
    value = json.dumps(text) if ctx.doc.flow_end is not None else _string_value(text)  # a JSON-syntax config stays JSON
    return Fix(description, (Edit(entry.key_span.end.offset, entry.value_span.end.offset, f": {value}"),))


#: Keys whose value LLaMA-Factory ``.split(",")``s without checking that it is a string (``model_args.py``).
_STRING_ONLY = ("adapter_name_or_path", "add_tokens", "add_special_tokens")


class ListWhereStringExpected(Rule):
    """``adapter_name_or_path``, ``add_tokens`` or ``add_special_tokens`` written as a YAML list.

    These are comma-separated strings. ``ModelArguments.__post_init__`` calls ``.split(",")`` on them directly
    (``model_args.py``), so a YAML list stops the run with ``AttributeError: 'list'
    object has no attribute 'split'``. Other list-like keys (``dataset``, ``lora_target``…) accept both forms.

    Bad:

    ```yaml
    adapter_name_or_path: [saves/lora_a, saves/lora_b]
    ```

    Good:

    ```yaml
    adapter_name_or_path: saves/lora_a,saves/lora_b
    ```
    """

    code = "LF001"
    name = "list-where-string-expected"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        for key in _STRING_ONLY:
            v = ctx.get(key)
            if not isinstance(v, list):
                continue
            if key == "add_special_tokens" and ctx.get("new_special_tokens_config") is not None:
                continue  # the config file replaces the list before it is split
            items = [str(i).strip() for i in v]
            fix = None
            if all(items) and not any("," in i for i in items):
                joined = ",".join(items)
                fix = _set_string(ctx, key, joined, f"write `{key}` as a comma-separated string")
            yield Finding(
                key=key,
                message=f"`{key}` is a YAML list, but LLaMA-Factory splits it as a string: the run stops at start-up "
                "with \"AttributeError: 'list' object has no attribute 'split'\"",
                hint=f"write it as one comma-separated string: `{key}: {','.join(items)}`",
                fix=fix,
            )


#: Comma-separated keys, and whether an empty entry stops the run (True) or is merely ignored (False).
_COMMA_KEYS = {
    "dataset": True,  # "Undefined dataset  in dataset_info.json."
    "eval_dataset": True,
    "adapter_name_or_path": True,  # an adapter path ""
    "freeze_trainable_modules": True,  # "Module  is not found"
    "freeze_extra_modules": True,
    "add_tokens": False,
    "add_special_tokens": False,
    "lora_target": False,
    "oft_target": False,
    "additional_target": False,
    "galore_target": False,
    "apollo_target": False,
}


class EmptyCommaItem(Rule):
    """A comma-separated value with an empty entry (``a,,b`` or a trailing comma).

    LLaMA-Factory splits on every comma and keeps empty pieces (``split_arg`` in ``data_args.py`` and
    ``finetuning_args.py``). An empty dataset name stops the run with "Undefined
    dataset  in dataset_info.json.", an empty freeze module with "Module  is not found"; elsewhere the empty entry
    is passed on as a module or token name.

    Bad:

    ```yaml
    dataset: alpaca_en_demo,identity,
    ```

    Good:

    ```yaml
    dataset: alpaca_en_demo,identity
    ```
    """

    code = "LF002"
    name = "empty-comma-item"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        for key, fatal in _COMMA_KEYS.items():
            v = ctx.get(key)
            if not isinstance(v, str) or "," not in v:
                continue
            parts = [p.strip() for p in v.split(",")]
            if all(parts):
                continue
            kept = [p for p in parts if p]
            fix = _set_string(ctx, key, ",".join(kept), f"drop the empty entries of `{key}`") if kept else None
            effect = {
                "dataset": 'the run stops with "Undefined dataset  in dataset_info.json."',
                "eval_dataset": 'the run stops with "Undefined dataset  in dataset_info.json."',
                "adapter_name_or_path": "the run stops when it tries to load an adapter from the path ``",
                "freeze_trainable_modules": 'the run stops after loading the model with "Module  is not found"',
                "freeze_extra_modules": 'the run stops after loading the model with "Module  is not found"',
            }.get(key, "the empty name is passed on as is")
            yield Finding(
                key=key,
                severity=None if fatal else Severity.WARNING,
                message=f"`{key}: {v}` has an empty entry (a doubled or trailing comma): LLaMA-Factory keeps it, and "
                + effect,
                hint=f"remove the extra comma: `{key}: {','.join(kept)}`",
                fix=fix,
            )


class TargetAllMixed(Rule):
    """``all`` combined with module names in ``lora_target`` (or ``oft_target``, ``galore_target``, ``apollo_target``).

    ``all`` means "every linear layer" only when it is the whole value: LLaMA-Factory checks
    ``len(lora_target) == 1 and lora_target[0] == "all"`` (``model/adapter.py``). In a list it is looked up as a
    module literally named ``all``, which matches nothing, so only the other names are trained.

    Bad:

    ```yaml
    finetuning_type: lora
    lora_target: all,lm_head
    ```

    Good:

    ```yaml
    finetuning_type: lora
    lora_target: all
    additional_target: lm_head
    ```
    """

    code = "LF003"
    name = "target-all-mixed"
    severity = Severity.WARNING
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        in_use = {
            "lora_target": ctx.finetuning_type == "lora",
            "oft_target": ctx.finetuning_type == "oft",
            "galore_target": ctx.flag("use_galore"),
            "apollo_target": ctx.flag("use_apollo"),
        }
        for key, used in in_use.items():
            if not used or not ctx.has(key):
                continue
            v = ctx.get(key)
            parts = [p.strip() for p in v.split(",")] if isinstance(v, str) else [str(p).strip() for p in v] if isinstance(v, list) else []
            if "all" not in parts or len(parts) < 2:
                continue
            others = [p for p in parts if p and p != "all"]
            yield Finding(
                key=key,
                message=f"`{key}` combines `all` with {keys_text(others)}: `all` means every linear layer only on its "
                f"own; in a list it matches no module, so only {keys_text(others)} will be adapted",
                hint=f"use `{key}: all` alone (put extra trainable modules such as `lm_head` in `additional_target`), "
                "or list the modules explicitly",
                fix=replace_value(ctx, key, "all", f"set `{key}: all`", safe=False),
            )


class InitSpecialTokensFallback(Rule):
    """``init_special_tokens: desc_init`` (or ``desc_init_w_noise``) without ``new_special_tokens_config``.

    Description-based initialisation needs the token descriptions from ``new_special_tokens_config``. Without it
    ``ModelArguments.__post_init__`` logs "init_special_tokens='desc_init' requires new_special_tokens_config.
    Falling back to 'noise_init'", so the new embeddings start from noise.

    Bad:

    ```yaml
    add_special_tokens: <think>,</think>
    init_special_tokens: desc_init
    ```

    Good:

    ```yaml
    new_special_tokens_config: special_tokens.yaml
    init_special_tokens: desc_init
    ```
    """

    code = "LF004"
    name = "init-special-tokens-fallback"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        mode = ctx.get("init_special_tokens")
        if mode in ("desc_init", "desc_init_w_noise") and ctx.get("new_special_tokens_config") is None:
            yield Finding(
                key="init_special_tokens",
                message=f"`init_special_tokens: {mode}` without `new_special_tokens_config`: LLaMA-Factory falls back "
                "to `noise_init`, so the new token embeddings do not start from their descriptions",
                hint="describe the tokens in a `new_special_tokens_config` YAML file (`token: description`)",
            )


class NeatPackingForcesPacking(Rule):
    """``neat_packing: true`` with ``packing: false``.

    ``DataArguments.__post_init__`` sets ``packing = True`` whenever ``neat_packing`` is on (``data_args.py``), so
    the explicit ``packing: false`` is overridden.

    Bad:

    ```yaml
    stage: sft
    packing: false
    neat_packing: true
    ```

    Good:

    ```yaml
    stage: sft
    neat_packing: true
    ```
    """

    code = "LF005"
    name = "neat-packing-forces-packing"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.flag("neat_packing") and ctx.has("packing") and ctx.get("packing") is False:
            yield Finding(
                key="packing",
                also=("neat_packing",),
                message="`packing: false` is overridden: `neat_packing: true` turns packing on",
                hint="remove `packing: false`, or turn off `neat_packing` if you do not want packing",
            )


class PackingCutoffLen(Rule):
    """Explicit packing shortens every sequence to ``cutoff_len - 1`` tokens.

    When ``packing`` (or ``neat_packing``) is set to true in the config, ``DataArguments.__post_init__`` subtracts
    one from ``cutoff_len`` (``data_args.py``, "avoid pad_to_multiple_of"). The
    implicit packing of ``stage: pt`` is decided later and keeps the full length.

    Bad:

    ```yaml
    stage: sft
    packing: true
    cutoff_len: 4096
    ```

    Good:

    ```yaml
    stage: sft
    cutoff_len: 4096
    ```
    """

    code = "LF006"
    name = "packing-cutoff-len"
    severity = Severity.INFO

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not (ctx.get("packing") is True or ctx.flag("neat_packing")):
            return
        cutoff = ctx.get("cutoff_len")
        if not isinstance(cutoff, int) or isinstance(cutoff, bool):
            return
        key = "neat_packing" if ctx.flag("neat_packing") else "packing"
        yield Finding(
            key="cutoff_len" if ctx.has("cutoff_len") else key,
            also=(key,),
            message=f"with `{key}: true` LLaMA-Factory packs sequences of `cutoff_len - 1` = {cutoff - 1} tokens, "
            f"not {cutoff}",
            hint=f"set `cutoff_len: {cutoff + 1}` if you need exactly {cutoff}-token sequences",
        )


class LoraAlphaDefault(Rule):
    """``lora_rank`` is set but ``lora_alpha`` is not: LLaMA-Factory uses ``2 × lora_rank``.

    ``FinetuningArguments.__post_init__`` sets ``lora_alpha = lora_alpha or lora_rank * 2`` (``finetuning_args.py``),
    unlike PEFT's fixed default of 8. The LoRA update is scaled by
    ``alpha / rank`` = 2 (``alpha / sqrt(rank)`` with ``use_rslora``), whatever the rank.

    Bad:

    ```yaml
    do_train: true
    finetuning_type: lora
    lora_rank: 64
    ```

    Good:

    ```yaml
    do_train: true
    finetuning_type: lora
    lora_rank: 64
    lora_alpha: 128
    ```
    """

    code = "LF007"
    name = "lora-alpha-default"
    severity = Severity.INFO
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.finetuning_type != "lora" or not ctx.has("lora_rank") or ctx.has("lora_alpha"):
            return
        rank = ctx.lora_rank
        if rank is None or rank <= 0:
            return
        yield Finding(
            key="lora_rank",
            also=("lora_alpha",),
            message=f"`lora_alpha` is unset, so LLaMA-Factory uses 2 × `lora_rank` = {2 * rank} (PEFT's own default "
            "would be 8)",
            hint=f"write `lora_alpha: {2 * rank}` to make the scaling explicit",
            fix=set_key(ctx, "lora_alpha", str(2 * rank), f"write `lora_alpha: {2 * rank}`", after="lora_rank"),
        )


class ResizeVocabEmbeddings(Rule):
    """LoRA with ``resize_vocab`` and no ``additional_target``: the embeddings are trained in full.

    New token embeddings must be trainable. ``get_train_args`` logs "Remember to add embedding layers to
    `additional_target` to make the added tokens trainable." and ``model/adapter.py`` then adds the input and
    output embeddings to ``additional_target`` itself. They are trained and saved in
    full next to the adapter: a vocabulary-sized matrix (or two) in optimizer memory and in the checkpoint.

    Bad:

    ```yaml
    do_train: true
    finetuning_type: lora
    resize_vocab: true
    ```

    Good:

    ```yaml
    do_train: true
    finetuning_type: lora
    resize_vocab: true
    additional_target: embed_tokens,lm_head
    ```
    """

    code = "LF008"
    name = "resize-vocab-embeddings"
    severity = Severity.INFO

    def check(self, ctx: Context) -> Iterator[Finding]:
        if (
            ctx.is_training
            and ctx.finetuning_type == "lora"
            and ctx.get("quantization_bit") is None
            and ctx.flag("resize_vocab")
            and ctx.get("additional_target") is None
        ):
            yield Finding(
                key="resize_vocab",
                also=("additional_target",),
                message="`resize_vocab` with LoRA and no `additional_target`: LLaMA-Factory makes the input and output "
                "embeddings fully trainable (`additional_target`), which adds their full size to optimizer memory and "
                "to every saved adapter",
                hint="name them explicitly in `additional_target` (e.g. `embed_tokens,lm_head`) so the cost is visible",
            )


class QuantizedUpcastLayernorm(Rule):
    """Quantized training without ``upcast_layernorm``.

    ``get_train_args`` logs "We recommend enable `upcast_layernorm` in quantized training."
    : layer norms computed in fp32 make QLoRA numerically more stable.

    It is not free with bitsandbytes 4-bit layers: ``Linear4bit`` takes an fp32 input's dtype as its compute dtype
    and returns its input's dtype (bitsandbytes ``nn/modules.py``, ``Linear4bit.set_compute_type`` and
    ``forward``), so q/k/v and the MLP run in fp32 on the fp32 norm outputs and the residual stream turns fp32:
    the checkpoints of every layer but the first double and the MLP keeps fp32 activations. ``cfgtune estimate``
    counts it (checked against the trace of the real step), so the fix is not applied unasked.

    Bad:

    ```yaml
    do_train: true
    quantization_bit: 4
    ```

    Good:

    ```yaml
    do_train: true
    quantization_bit: 4
    upcast_layernorm: true
    ```
    """

    code = "LF009"
    name = "quantized-upcast-layernorm"
    severity = Severity.INFO
    fixable = "unsafe"  # more activation memory with bitsandbytes 4-bit: see the docstring

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_training and ctx.get("quantization_bit") is not None and not ctx.flag("upcast_layernorm"):
            yield Finding(
                key="quantization_bit",
                also=("upcast_layernorm",),
                message="quantized training without `upcast_layernorm`: LLaMA-Factory recommends computing layer norms "
                "in fp32 for QLoRA",
                hint="set `upcast_layernorm: true`; with bitsandbytes 4-bit it makes the layers compute in fp32 and the "
                "residual stream fp32, so check the memory with `cfgtune estimate`",
                fix=set_key(ctx, "upcast_layernorm", "true", "set `upcast_layernorm: true`", after="quantization_bit", safe=False),
            )


class GaloreMixedPrecision(Rule):
    """GaLore or APOLLO without ``pure_bf16``.

    ``get_train_args`` logs "Using GaLore or APOLLO with mixed precision training may significantly increases GPU
    memory usage.": with mixed precision the full model is kept in fp32, which
    undoes much of the memory GaLore/APOLLO save. LLaMA-Factory's examples pair them with ``pure_bf16: true``.

    Bad:

    ```yaml
    do_train: true
    finetuning_type: full
    use_galore: true
    bf16: true
    ```

    Good:

    ```yaml
    do_train: true
    finetuning_type: full
    use_galore: true
    pure_bf16: true
    ```
    """

    code = "LF010"
    name = "galore-mixed-precision"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.flag("pure_bf16"):
            return
        on = [k for k in ("use_galore", "use_apollo") if ctx.flag(k)]
        if on:
            yield Finding(
                key=on[0],
                also=("pure_bf16",),
                message=f"{keys_text(on)} without `pure_bf16`: the weights stay in fp32 under mixed precision, which "
                "can use much more GPU memory than GaLore/APOLLO are meant to",
                hint="use `pure_bf16: true` (and drop `bf16`) on GPUs with bf16",
            )


class EvalQuantized(Rule):
    """Evaluating or predicting with a quantized model.

    ``get_train_args`` logs "Evaluating model in 4/8-bit mode may cause lower scores.": scores of a 4/8-bit model are
    not those of the model you will deploy.

    Bad:

    ```yaml
    do_eval: true
    eval_dataset: alpaca_en_demo
    quantization_bit: 4
    ```

    Good:

    ```yaml
    do_eval: true
    eval_dataset: alpaca_en_demo
    ```
    """

    code = "LF011"
    name = "eval-quantized"
    severity = Severity.INFO

    def check(self, ctx: Context) -> Iterator[Finding]:
        evaluates = ctx.flag("do_eval") or ctx.flag("do_predict")
        if ctx.is_train_command and not ctx.flag("do_train") and evaluates and ctx.get("quantization_bit") is not None:
            yield Finding(
                key="quantization_bit",
                message="evaluating a 4/8-bit model: scores may be lower than the unquantized model's",
                hint="evaluate without `quantization_bit` when memory allows",
            )


class DPOEvalRefModel(Rule):
    """DPO evaluation without ``ref_model``: reward metrics are dropped.

    Without training, the DPO workflow uses the model itself as the reference, so chosen/rejected rewards are all
    zero and are removed from the metrics; ``get_train_args`` logs "Specify `ref_model` for computing rewards at
    evaluation." (``parser.py``, ``train/dpo/workflow.py``).

    Bad:

    ```yaml
    stage: dpo
    do_eval: true
    eval_dataset: dpo_en_demo
    ```

    Good:

    ```yaml
    stage: dpo
    do_eval: true
    eval_dataset: dpo_en_demo
    ref_model: meta-llama/Meta-Llama-3-8B-Instruct
    ```
    """

    code = "LF012"
    name = "dpo-eval-ref-model"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.flag("do_train") or ctx.stage != "dpo" or not ctx.flag("do_eval"):
            return
        if ctx.get("pref_loss") in ("orpo", "simpo") or ctx.get("ref_model") is not None:
            return
        yield Finding(
            key="do_eval",
            also=("ref_model", "stage"),
            message="DPO evaluation without `ref_model`: the model is its own reference, so the reward metrics are "
            "meaningless and LLaMA-Factory drops them",
            hint="set `ref_model` to the model the policy was trained from",
        )


class OverriddenTrainingArgs(Rule):
    """Training arguments that LLaMA-Factory overrides: ``remove_unused_columns``, ``generation_num_beams``.

    ``get_train_args`` always sets ``remove_unused_columns = False`` (multimodal inputs need the extra columns)
    and replaces ``generation_num_beams`` with ``eval_num_beams`` when that is set (``parser.py``), so these values
    in the config have no effect.

    Bad:

    ```yaml
    do_train: true
    remove_unused_columns: true
    ```

    Good:

    ```yaml
    do_train: true
    ```
    """

    code = "LF013"
    name = "overridden-training-args"
    severity = Severity.INFO

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command:
            return
        if ctx.get("remove_unused_columns") is True and ctx.has("remove_unused_columns"):
            yield Finding(
                key="remove_unused_columns",
                message="`remove_unused_columns: true` has no effect: LLaMA-Factory always sets it to false",
                hint="remove `remove_unused_columns`",
            )
        beams, eval_beams = ctx.get("generation_num_beams"), ctx.get("eval_num_beams")
        if ctx.has("generation_num_beams") and eval_beams is not None and eval_beams != beams:
            yield Finding(
                key="generation_num_beams",
                also=("eval_num_beams",),
                message=f"`generation_num_beams: {beams}` is replaced by `eval_num_beams: {eval_beams}`",
                hint="keep only `eval_num_beams`",
            )


class SwanlabReportTo(Rule):
    """``report_to`` lists ``swanlab`` and ``use_swanlab`` is on: LLaMA-Factory drops it from ``report_to``.

    ``get_train_args`` removes ``swanlab`` from ``report_to`` when ``use_swanlab`` is set, so the run is not
    logged twice. Its ``swanlab_*`` settings are the ones that apply.

    Bad:

    ```yaml
    report_to: [swanlab, tensorboard]
    use_swanlab: true
    ```

    Good:

    ```yaml
    report_to: tensorboard
    use_swanlab: true
    ```
    """

    code = "LF014"
    name = "swanlab-report-to"
    severity = Severity.INFO

    def check(self, ctx: Context) -> Iterator[Finding]:
        loggers, _ = report_to(ctx)
        if ctx.is_train_command and "swanlab" in loggers and ctx.flag("use_swanlab"):
            yield Finding(
                key="report_to",
                also=("use_swanlab",),
                message="`swanlab` in `report_to` is dropped because `use_swanlab` is on: LLaMA-Factory logs to "
                "SwanLab through its own callback and `swanlab_*` settings",
                hint="remove `swanlab` from `report_to`",
            )


class ResumeDroppedRmPpo(Rule):
    """``resume_from_checkpoint`` with freeze/full RM or PPO: LLaMA-Factory drops it.

    ``get_train_args`` logs "Cannot resume from checkpoint in current stage." and sets ``resume_from_checkpoint``
    to None for these stages: the run starts from step 0, not from the checkpoint.

    Bad:

    ```yaml
    stage: rm
    finetuning_type: full
    resume_from_checkpoint: saves/rm/checkpoint-1000
    ```

    Good:

    ```yaml
    stage: rm
    finetuning_type: full
    ```
    """

    code = "LF015"
    name = "resume-dropped-rm-ppo"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.stage not in ("rm", "ppo") or ctx.finetuning_type not in ("full", "freeze"):
            return
        if ctx.get("resume_from_checkpoint") not in (None, ""):
            yield Finding(
                key="resume_from_checkpoint",
                message=f"`resume_from_checkpoint` is ignored for {ctx.finetuning_type} `stage: {ctx.stage}`: "
                "LLaMA-Factory drops it (\"Cannot resume from checkpoint in current stage.\") and trains from step 0",
                hint="remove it; to continue, start from the checkpoint's weights with `model_name_or_path`",
            )


class ResumeRmLora(Rule):
    """LoRA reward-model training resumed with ``resume_from_checkpoint`` only.

    ``get_train_args`` logs "Add <checkpoint> to `adapter_name_or_path` to resume training from checkpoint."
: the trainer restores the optimizer state, but the LoRA weights and value head
    are loaded through ``adapter_name_or_path``.

    Bad:

    ```yaml
    stage: rm
    finetuning_type: lora
    resume_from_checkpoint: saves/rm/checkpoint-1000
    ```

    Good:

    ```yaml
    stage: rm
    finetuning_type: lora
    adapter_name_or_path: saves/rm/checkpoint-1000
    resume_from_checkpoint: saves/rm/checkpoint-1000
    ```
    """

    code = "LF016"
    name = "resume-rm-lora"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.stage != "rm" or ctx.finetuning_type != "lora":
            return
        ckpt = ctx.get("resume_from_checkpoint")
        if ckpt in (None, "") or not isinstance(ckpt, str):
            return
        if ckpt.rstrip("/") in [a.rstrip("/") for a in (ctx.as_list("adapter_name_or_path"))]:
            return
        yield Finding(
            key="resume_from_checkpoint",
            also=("adapter_name_or_path",),
            message="LoRA `stage: rm` resumed with `resume_from_checkpoint` only: LLaMA-Factory asks for the "
            "checkpoint in `adapter_name_or_path` as well, or the adapter and value head start from scratch",
            hint=f"add `{ckpt}` to `adapter_name_or_path`",
        )


class PackingIgnored(Rule):
    """``packing: true`` with a stage that never packs (``rm``, ``dpo``, ``kto``, ``ppo``).

    Only the pre-training and SFT data processors pack sequences (``data/loader.py``). Pairwise, feedback and
    PPO data is never packed, so ``packing`` is ignored.

    Bad:

    ```yaml
    stage: dpo
    packing: true
    ```

    Good:

    ```yaml
    stage: dpo
    ```
    """

    code = "LF017"
    name = "packing-ignored"
    severity = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_train_command and ctx.get("packing") is True and ctx.stage in ("rm", "dpo", "kto", "ppo"):
            yield Finding(
                key="packing",
                also=("stage",),
                message=f"`packing: true` has no effect with `stage: {ctx.stage}`: only `pt` and `sft` data is packed",
                hint="remove `packing`",
            )


class ReportToAllDefault(Rule):
    """``report_to`` unset (or ``all``) with transformers 4: every installed tracker is used.

    transformers 4 turns an unset ``report_to`` into ``"all"``, i.e. every tracker package installed in the
    environment (``TrainingArguments.__post_init__``). With wandb installed, a
    non-interactive job stops at wandb's login prompt or uploads to an account nobody configured. transformers 5
    defaults to ``none``. LLaMA-Factory's examples all set ``report_to`` explicitly.

    Bad:

    ```yaml
    # cfglint --transformers 4
    do_train: true
    ```

    Good:

    ```yaml
    do_train: true
    report_to: none
    ```
    """

    code = "LF018"
    name = "report-to-all-default"
    severity = Severity.WARNING
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.stage == "ppo":  # STAGE011 covers PPO, where it can be fatal
            return
        _, everything = report_to(ctx)
        if not everything:
            return
        written = ctx.has("report_to")
        yield Finding(
            key="report_to",
            also=("do_train",),
            message=("`report_to: all`" if written else "`report_to` is unset, which transformers 4 reads as `all`")
            + ": the run logs to every tracker installed in the environment (wandb, mlflow, ...), and wandb may "
            "stop a non-interactive job at its login prompt",
            hint="name the trackers you want (`report_to: tensorboard`, `[wandb, tensorboard]`) or `report_to: none`",
            fix=set_key(ctx, "report_to", "none", "set `report_to: none`", safe=False),
        )


class KTReentrantGC(Rule):
    """``use_reentrant_gc: true`` with ``use_kt``: KTransformers turns it off.

    KTransformers supplies its own checkpoint context, and ``configure_kt_checkpointing`` sets
    ``use_reentrant_gc = False`` and ``gradient_checkpointing = False`` on the trainer (``model_args.py``). The
    setting has no effect.

    Bad:

    ```yaml
    use_kt: true
    use_reentrant_gc: true
    ```

    Good:

    ```yaml
    use_kt: true
    ```
    """

    code = "LF019"
    name = "kt-reentrant-gc"
    severity = Severity.INFO

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or not ctx.flag("use_kt") or ctx.flag("disable_gradient_checkpointing"):
            return
        if ctx.has("use_reentrant_gc") and ctx.get("use_reentrant_gc") is True:
            yield Finding(
                key="use_reentrant_gc",
                also=("use_kt",),
                message="`use_reentrant_gc: true` has no effect with `use_kt`: KTransformers uses non-reentrant "
                "checkpointing",
                hint="remove `use_reentrant_gc`",
            )
