"""Fine-tuning methods: which options go with LoRA, freeze, full, GaLore, APOLLO and BAdam, and where they run.

Mirrors ``FinetuningArguments.__post_init__`` (``hparams/finetuning_args.py``), the distributed checks of
``get_train_args`` (``hparams/parser.py``), and the optimizer set-up in ``train/trainer_utils.py`` and
``model/adapter.py`` that stops a run before its first step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tuner.config.context import Context
from tuner.lint.fixes import remove_key, set_key
from tuner.lint.rule import Finding, Need, Rule, Severity, lf_stops

from ._lf_common import (
    adapters,
    distributed,
    int_value,
    keys_text,
    lf_split,
)


_OPTIMIZERS = ("use_galore", "use_apollo", "use_badam")
_OPT_NAMES = {"use_galore": "GaLore", "use_apollo": "APOLLO", "use_badam": "BAdam"}


class RefRewardQuantizationBits(Rule):
    """``ref_model_quantization_bit`` or ``reward_model_quantization_bit`` other than 4 or 8.

    The reference and reward models are quantized with bitsandbytes, which has 4- and 8-bit modes only.
    ``FinetuningArguments.__post_init__`` asserts "We only accept 4-bit or 8-bit quantization."
    (``finetuning_args.py``).

    Bad:

    ```yaml
    stage: dpo
    ref_model: meta-llama/Meta-Llama-3-8B-Instruct
    ref_model_quantization_bit: 2
    ```

    Good:

    ```yaml
    stage: dpo
    ref_model: meta-llama/Meta-Llama-3-8B-Instruct
    ref_model_quantization_bit: 4
    ```
    """

    code = "FT001"
    name = "ref-reward-quantization-bits"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        for key in ("ref_model_quantization_bit", "reward_model_quantization_bit"):
            bits = int_value(ctx, key)
            if bits is not None and bits not in (4, 8):
                yield Finding(
                    key=key,
                    message=f"`{key}: {bits}`: " + lf_stops("We only accept 4-bit or 8-bit quantization."),
                    hint=f"use `{key}: 4` or `8`, or remove it",
                )


class HyperParallelCpSize(Rule):
    """``hyper_parallel_cp_size`` is zero or negative.

    ``FinetuningArguments.__post_init__`` asserts "`hyper_parallel_cp_size` must be greater than 0.".

    Bad:

    ```yaml
    finetuning_type: full
    hyper_parallel_cp_size: 0
    ```

    Good:

    ```yaml
    finetuning_type: full
    hyper_parallel_cp_size: 1
    ```
    """

    code = "FT002"
    name = "hyper-parallel-cp-size"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        size = int_value(ctx, "hyper_parallel_cp_size")
        if size is not None and size <= 0:
            yield Finding(
                key="hyper_parallel_cp_size",
                message=f"`hyper_parallel_cp_size: {size}`: "
                + lf_stops("`hyper_parallel_cp_size` must be greater than 0."),
                hint="use 1 (no context parallelism) or the number of GPUs that share one sequence",
                fix=set_key(ctx, "hyper_parallel_cp_size", "1", "set `hyper_parallel_cp_size: 1`"),
            )


class LlamaProWithFull(Rule):
    """``use_llama_pro`` with ``finetuning_type: full``.

    LLaMA Pro trains only the expanded blocks, which needs freeze or LoRA tuning. ``finetuning_args.py`` raises
    "`use_llama_pro` is only valid for Freeze or LoRA training.".

    Bad:

    ```yaml
    finetuning_type: full
    use_llama_pro: true
    ```

    Good:

    ```yaml
    finetuning_type: freeze
    use_llama_pro: true
    freeze_trainable_layers: 8
    ```
    """

    code = "FT003"
    name = "llama-pro-with-full"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.flag("use_llama_pro") and ctx.finetuning_type == "full":
            yield Finding(
                key="use_llama_pro",
                also=("finetuning_type",),
                message="`use_llama_pro` with `finetuning_type: full`: "
                + lf_stops("`use_llama_pro` is only valid for Freeze or LoRA training."),
                hint="use `finetuning_type: freeze` (or `lora`) with LLaMA Pro",
            )


class LoraWithOptimizerMethods(Rule):
    """LoRA together with GaLore, APOLLO or BAdam.

    GaLore, APOLLO and BAdam are memory-efficient ways to train *all* weights; they replace LoRA rather than
    combine with it. ``finetuning_args.py`` raises "Cannot use LoRA with GaLore, APOLLO or BAdam together.".
    ``finetuning_type`` defaults to ``lora``, so a GaLore config that forgets
    ``finetuning_type: full`` hits this.

    Bad:

    ```yaml
    stage: sft
    use_galore: true
    ```

    Good:

    ```yaml
    stage: sft
    finetuning_type: full
    use_galore: true
    ```
    """

    code = "FT004"
    name = "lora-with-galore-apollo-badam"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.finetuning_type != "lora":
            return
        on = [k for k in _OPTIMIZERS if ctx.flag(k)]
        if not on:
            return
        fix = set_key(ctx, "finetuning_type", "full", "set `finetuning_type: full`", safe=False)
        yield Finding(
            key="finetuning_type",
            also=tuple(on),
            message=f"{keys_text(on)} with `finetuning_type: lora`"
            f"{'' if ctx.has('finetuning_type') else ' (the default)'}: "
            + lf_stops("Cannot use LoRA with GaLore, APOLLO or BAdam together."),
            hint=f"{' / '.join(_OPT_NAMES[k] for k in on)} trains the full model: set `finetuning_type: full`, "
            f"or remove {keys_text(on)} to train LoRA",
            fix=fix,
        )


class OneOptimizerMethod(Rule):
    """More than one of ``use_galore``, ``use_apollo`` and ``use_badam``.

    Each replaces the optimizer; ``finetuning_args.py`` raises "Cannot use GaLore, APOLLO or BAdam together.".

    Bad:

    ```yaml
    finetuning_type: full
    use_galore: true
    use_badam: true
    ```

    Good:

    ```yaml
    finetuning_type: full
    use_badam: true
    ```
    """

    code = "FT005"
    name = "one-optimizer-method"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        on = [k for k in _OPTIMIZERS if ctx.flag(k)]
        if len(on) > 1:
            yield Finding(
                key=on[1],
                also=(on[0],),
                message=f"{keys_text(on)} are all on: " + lf_stops("Cannot use GaLore, APOLLO or BAdam together."),
                hint="keep one of them",
            )


class PissaStage(Rule):
    """``pissa_init`` with PPO, KTO, or DPO with a reference model.

    These stages use the initial model as the reference (the adapter disabled). PiSSA changes the base weights
    when it initialises the adapter, so the reference would no longer be the original model.
    ``finetuning_args.py`` raises "Cannot use PiSSA for current training stage.".

    Bad:

    ```yaml
    stage: dpo
    pref_loss: sigmoid
    pissa_init: true
    ```

    Good:

    ```yaml
    stage: dpo
    pref_loss: simpo
    pissa_init: true
    ```
    """

    code = "FT006"
    name = "pissa-stage"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.flag("pissa_init"):
            return
        stage = ctx.stage
        uses_ref = stage == "dpo" and ctx.get("pref_loss") not in ("orpo", "simpo")
        if stage in ("ppo", "kto") or uses_ref:
            why = f"`stage: {stage}`" + (f" with `pref_loss: {ctx.get('pref_loss')}` (uses a reference model)" if uses_ref else "")
            yield Finding(
                key="pissa_init",
                also=("stage",),
                message=f"`pissa_init` with {why}: " + lf_stops("Cannot use PiSSA for current training stage."),
                hint="initialise PiSSA in an SFT run first (or with `scripts/pissa_init.py`) and continue from that "
                "adapter, or use a reference-free loss (`pref_loss: orpo|simpo`)",
            )


class LoraOnlyOptions(Rule):
    """``loraplus_lr_ratio``, ``use_rslora``, ``use_dora`` or ``pissa_init`` without ``finetuning_type: lora``.

    These options configure LoRA adapters. ``finetuning_args.py`` raises "`X` is only valid for LoRA training.".

    Bad:

    ```yaml
    finetuning_type: full
    use_dora: true
    ```

    Good:

    ```yaml
    finetuning_type: lora
    use_dora: true
    ```
    """

    code = "FT007"
    name = "lora-only-options"
    severity = Severity.ERROR
    fixable = "unsafe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.finetuning_type == "lora":
            return
        for key in ("loraplus_lr_ratio", "use_rslora", "use_dora", "pissa_init"):
            on = ctx.get(key) is not None if key == "loraplus_lr_ratio" else ctx.flag(key)
            if on:
                yield Finding(
                    key=key,
                    also=("finetuning_type",),
                    message=f"`{key}` with `finetuning_type: {ctx.finetuning_type}`: "
                    + lf_stops(f"`{key}` is only valid for LoRA training."),
                    hint=f"remove `{key}`, or use `finetuning_type: lora`",
                    fix=remove_key(ctx, key, f"remove `{key}`", safe=False),
                )


class AdapterNeedsLora(Rule):
    """``adapter_name_or_path`` without ``finetuning_type: lora``.

    Adapters are loaded with PEFT as LoRA weights; ``_verify_model_args`` (``parser.py``) raises "Adapter is only
    valid for the LoRA method." for train, chat, export and eval alike. To fully
    fine-tune a LoRA result, merge it first (``llamafactory-cli export``).

    Bad:

    ```yaml
    finetuning_type: full
    adapter_name_or_path: saves/llama3-8b/lora/sft
    ```

    Good:

    ```yaml
    finetuning_type: lora
    adapter_name_or_path: saves/llama3-8b/lora/sft
    ```
    """

    code = "FT008"
    name = "adapter-needs-lora"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.get("adapter_name_or_path") is not None and ctx.finetuning_type != "lora":
            yield Finding(
                key="adapter_name_or_path",
                also=("finetuning_type",),
                message=f"`adapter_name_or_path` with `finetuning_type: {ctx.finetuning_type}`: "
                + lf_stops("Adapter is only valid for the LoRA method."),
                hint="merge the adapter into the model (`llamafactory-cli export`) and point `model_name_or_path` "
                "at the merged model, or use `finetuning_type: lora`",
            )


class SingleAdapterBackends(Rule):
    """Several adapters under DeepSpeed ZeRO-3, Unsloth or KTransformers.

    Stacked adapters are merged into the base weights before training, which sharded (ZeRO-3), Unsloth and
    KTransformers models cannot do. ``_setup_lora_tuning`` (``model/adapter.py``) asserts "Cannot use multiple
    adapters in DeepSpeed ZeRO-3." / "Unsloth model only accepts a single adapter." once the model is loaded
    (``model_args.py`` refuses several adapters with ``use_kt`` before that).

    Bad:

    ```yaml
    finetuning_type: lora
    adapter_name_or_path: saves/lora_a,saves/lora_b
    use_unsloth: true
    ```

    Good:

    ```yaml
    finetuning_type: lora
    adapter_name_or_path: saves/lora_ab_merged
    use_unsloth: true
    ```
    """

    code = "FT016"
    name = "single-adapter-backends"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        names = adapters(ctx)
        if names is None or len(names) < 2 or ctx.finetuning_type != "lora":
            return
        if ctx.is_train_command and ctx.zero3:
            backend, text = "DeepSpeed ZeRO-3", "Cannot use multiple adapters in DeepSpeed ZeRO-3."
        elif ctx.flag("use_kt"):
            backend, text = "`use_kt`", "KTransformers accepts a single `adapter_name_or_path`."
        elif ctx.flag("use_unsloth"):
            backend, text = "`use_unsloth`", "Unsloth model only accepts a single adapter."
        else:
            return
        yield Finding(
            key="adapter_name_or_path",
            message=f"{len(names)} adapters with {backend}: " + lf_stops(text),
            hint="merge the adapters into the base model first (`llamafactory-cli export`), then load one adapter",
        )


class LayerwiseDistributed(Rule):
    """Layer-wise GaLore or APOLLO in a distributed (torchrun/DeepSpeed) run.

    Layer-wise optimizers step inside backward hooks, one parameter at a time, which DDP's gradient
    synchronisation does not support. ``get_train_args`` raises "Distributed training does not support
    layer-wise GaLore." / "… APOLLO.". Checked when the GPU count is known
    (``--gpus``, ``CUDA_VISIBLE_DEVICES``) or DeepSpeed/``FORCE_TORCHRUN`` implies torchrun.

    Bad:

    ```yaml
    # cfglint --gpus 4
    finetuning_type: full
    use_galore: true
    galore_layerwise: true
    ```

    Good:

    ```yaml
    # cfglint --gpus 4
    finetuning_type: full
    use_galore: true
    galore_layerwise: false
    ```
    """

    code = "FT009"
    name = "layerwise-distributed"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or distributed(ctx) is not True:
            return
        for use, layerwise, name in (("use_galore", "galore_layerwise", "GaLore"), ("use_apollo", "apollo_layerwise", "APOLLO")):
            if ctx.flag(use) and ctx.flag(layerwise):
                yield Finding(
                    key=layerwise,
                    also=(use,),
                    message=f"`{layerwise}` in a distributed run ({_how(ctx)}): "
                    + lf_stops(f"Distributed training does not support layer-wise {name}."),
                    hint=f"set `{layerwise}: false` for multi-GPU training, or train on one GPU",
                )


def _how(ctx: Context) -> str:
    if ctx.uses_deepspeed:
        return "DeepSpeed runs under torchrun"
    if ctx.options.nodes > 1:
        return f"{ctx.options.nodes} nodes"
    if ctx.gpus and ctx.gpus > 1:
        return f"{ctx.gpus} GPUs"
    return "FORCE_TORCHRUN=1"


class BAdamDistributed(Rule):
    """Distributed BAdam that is ratio-based, or layer-wise without DeepSpeed ZeRO-3.

    ``get_train_args`` raises "Radio-based BAdam does not yet support distributed training, use layer-wise
    BAdam." and "Layer-wise BAdam only supports DeepSpeed ZeRO-3 training.".
    Checked when the run is known to be distributed.

    Bad:

    ```yaml
    # cfglint --gpus 4
    finetuning_type: full
    use_badam: true
    badam_mode: layer
    ```

    Good:

    ```yaml
    # ds_z3_config.json: {"zero_optimization": {"stage": 3}}
    # cfglint --gpus 4
    finetuning_type: full
    use_badam: true
    badam_mode: layer
    deepspeed: ds_z3_config.json
    ```
    """

    code = "FT010"
    name = "badam-distributed"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or not ctx.flag("use_badam") or distributed(ctx) is not True:
            return
        if ctx.get("badam_mode") == "ratio":
            yield Finding(
                key="badam_mode",
                also=("use_badam",),
                message=f"`badam_mode: ratio` in a distributed run ({_how(ctx)}): "
                + lf_stops("Radio-based BAdam does not yet support distributed training, use layer-wise BAdam."),
                hint="use `badam_mode: layer` with DeepSpeed ZeRO-3, or train on one GPU",
            )
        elif not ctx.zero3:
            yield Finding(
                key="use_badam",
                also=("deepspeed",),
                message=f"layer-wise BAdam in a distributed run ({_how(ctx)}) without DeepSpeed ZeRO-3: "
                + lf_stops("Layer-wise BAdam only supports DeepSpeed ZeRO-3 training."),
                hint="add `deepspeed: examples/deepspeed/ds_z3_config.json`, or train on one GPU",
            )


class GaloreApolloDeepSpeed(Rule):
    """GaLore or APOLLO with DeepSpeed.

    DeepSpeed wraps its own optimizer and cannot drive GaLore's or APOLLO's projected updates.
    ``get_train_args`` raises "GaLore and APOLLO are incompatible with DeepSpeed yet.".

    Bad:

    ```yaml
    # ds_z2_config.json: {"zero_optimization": {"stage": 2}}
    finetuning_type: full
    use_galore: true
    deepspeed: ds_z2_config.json
    ```

    Good:

    ```yaml
    finetuning_type: full
    use_galore: true
    ```
    """

    code = "FT011"
    name = "galore-apollo-deepspeed"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command or ctx.get("deepspeed") is None:
            return
        on = [k for k in ("use_galore", "use_apollo") if ctx.flag(k)]
        if on:
            yield Finding(
                key=on[0],
                also=("deepspeed",),
                message=f"{keys_text(on)} with `deepspeed`: " + lf_stops("GaLore and APOLLO are incompatible with DeepSpeed yet."),
                hint="remove `deepspeed` (GaLore/APOLLO already save the optimizer memory ZeRO would), or use BAdam "
                "with ZeRO-3",
            )


_GALORE_OPTIMS = ("adamw_torch", "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "adafactor")


class GaloreApolloOptim(Rule):
    """GaLore or APOLLO with an ``optim`` they cannot wrap.

    LLaMA-Factory builds the GaLore optimizer from ``optim``: ``adamw_torch``, ``adamw_bnb_8bit``/``adamw_8bit``/
    ``paged_adamw_8bit`` or ``adafactor``; APOLLO accepts only ``adamw_torch``. Anything else raises
    ``NotImplementedError: Unknown optim`` when the trainer creates the optimizer (``train/trainer_utils.py``).
    transformers' default ``optim`` is ``adamw_torch_fused`` with torch ≥ 2.8, so a
    GaLore/APOLLO config that leaves ``optim`` unset fails on current PyTorch (a warning, since the torch version
    is not in the config).

    Bad:

    ```yaml
    finetuning_type: full
    use_galore: true
    optim: adamw_torch_fused
    ```

    Bad (a warning: fails with torch >= 2.8):

    ```yaml
    finetuning_type: full
    use_galore: true
    ```

    Good:

    ```yaml
    finetuning_type: full
    use_galore: true
    optim: adamw_torch
    ```
    """

    code = "FT012"
    name = "galore-apollo-optim"
    severity = Severity.ERROR
    fixable = "safe"

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command:
            return
        for use, name, allowed in (("use_galore", "GaLore", _GALORE_OPTIMS), ("use_apollo", "APOLLO", ("adamw_torch",))):
            if not ctx.flag(use):
                continue
            if not ctx.has("optim") and ctx.schema.torch_default("optim", ctx.options.target):  # transformers >= 4.54
                yield Finding(
                    key=use,
                    also=("optim",),
                    severity=Severity.WARNING,
                    message=f"`{use}` with `optim` unset: transformers picks `adamw_torch_fused` on torch >= 2.8, "
                    f'which {name} does not support ("NotImplementedError: Unknown optim: adamw_torch_fused")',
                    hint="set `optim: adamw_torch`",
                    fix=set_key(ctx, "optim", "adamw_torch", "set `optim: adamw_torch`", after=use),
                )
            else:
                optim = ctx.get("optim")
                if isinstance(optim, str) and optim not in allowed:
                    yield Finding(
                        key="optim",
                        also=(use,),
                        message=f"`optim: {optim}` with `{use}`: LLaMA-Factory fails when it builds the optimizer "
                        f'("NotImplementedError: Unknown optim: {optim}")',
                        hint=f"{name} supports `optim`: {', '.join(f'`{o}`' for o in allowed)}",
                        fix=set_key(ctx, "optim", "adamw_torch", "set `optim: adamw_torch`", safe=False),
                    )
            return  # FT005 reports GaLore together with APOLLO


class LayerwiseGradAccum(Rule):
    """Layer-wise GaLore or APOLLO with ``gradient_accumulation_steps`` other than 1.

    Layer-wise optimizers update each parameter as soon as its gradient is ready, so gradients cannot be
    accumulated. ``train/trainer_utils.py`` raises "Per-layer GaLore does not support gradient accumulation."
    (or APOLLO) when it creates the optimizer.

    Bad:

    ```yaml
    finetuning_type: full
    use_galore: true
    galore_layerwise: true
    gradient_accumulation_steps: 8
    ```

    Good:

    ```yaml
    finetuning_type: full
    use_galore: true
    galore_layerwise: true
    gradient_accumulation_steps: 1
    ```
    """

    code = "FT013"
    name = "layerwise-grad-accum"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_train_command:
            return
        ga = int_value(ctx, "gradient_accumulation_steps")
        if ga is None or ga == 1:
            return
        for use, layerwise, name in (("use_galore", "galore_layerwise", "GaLore"), ("use_apollo", "apollo_layerwise", "APOLLO")):
            if ctx.flag(use) and ctx.flag(layerwise):
                yield Finding(
                    key="gradient_accumulation_steps",
                    also=(layerwise,),
                    message=f"`gradient_accumulation_steps: {ga}` with `{layerwise}`: LLaMA-Factory fails when it "
                    f'builds the optimizer ("Per-layer {name} does not support gradient accumulation.")',
                    hint=f"set `gradient_accumulation_steps: 1` (raise `per_device_train_batch_size` instead), or "
                    f"`{layerwise}: false`",
                )


#: Names that are never direct children of a decoder layer (what ``freeze_trainable_modules`` selects).
_NOT_LAYER_CHILDREN = {
    "q_proj": "a projection inside `self_attn`", "k_proj": "a projection inside `self_attn`",
    "v_proj": "a projection inside `self_attn`", "o_proj": "a projection inside `self_attn`",
    "qkv_proj": "a projection inside `self_attn`", "query_key_value": "a projection inside the attention block",
    "embed_tokens": "a model-level module", "lm_head": "a model-level module",
}  # fmt: skip
#: Names that are decoder-layer children, so never model-level modules (what ``freeze_extra_modules`` selects).
_LAYER_CHILDREN = {"self_attn", "mlp", "input_layernorm", "post_attention_layernorm", "q_proj", "k_proj", "v_proj", "o_proj"}


class FreezeModules(Rule):
    """Freeze-tuning options that select nothing, or modules that cannot exist where they are looked up.

    Freeze tuning unfreezes ``freeze_trainable_layers`` layers (the last N; the first N when negative) and, in
    them, the direct children of a decoder layer named in ``freeze_trainable_modules`` (``self_attn``, ``mlp``,
    ``all``…); ``freeze_extra_modules`` adds model-level modules (``embed_tokens``, ``lm_head``…). A name that is
    not found raises "Module X is not found, please choose from …" (``model/adapter.py``) after the model has loaded.
    ``freeze_trainable_layers: 0`` selects no layer, so
    nothing is trained (the optimizer gets an empty parameter list), and LLaMA Pro divides the model into
    ``freeze_trainable_layers`` groups, which needs a positive number.

    Bad:

    ```yaml
    do_train: true
    finetuning_type: freeze
    freeze_trainable_modules: q_proj,v_proj
    ```

    Good:

    ```yaml
    do_train: true
    finetuning_type: freeze
    freeze_trainable_modules: self_attn
    ```
    """

    code = "FT014"
    name = "freeze-modules"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.finetuning_type not in ("freeze", "lora"):
            return
        layers = int_value(ctx, "freeze_trainable_layers")
        if ctx.flag("use_llama_pro") and layers is not None and layers <= 0:
            yield Finding(
                key="freeze_trainable_layers",
                also=("use_llama_pro",),
                message=f"`freeze_trainable_layers: {layers}` with `use_llama_pro`: LLaMA Pro splits the layers into "
                "that many groups, so it must be positive (0 divides by zero, a negative number trains nothing)",
                hint="set `freeze_trainable_layers` to the number of blocks to train, a divisor of the layer count",
            )
            return
        if ctx.finetuning_type != "freeze":
            return
        trainable = [m for m in lf_split(ctx.get("freeze_trainable_modules")) or [] if m]
        wrong = [m for m in trainable if m in _NOT_LAYER_CHILDREN]
        if wrong:
            what = "; ".join(f"`{m}` is {_NOT_LAYER_CHILDREN[m]}" for m in wrong)
            model_level = [m for m in wrong if m in ("embed_tokens", "lm_head")]
            yield Finding(
                key="freeze_trainable_modules",
                message=f"`freeze_trainable_modules` names modules a decoder layer does not have directly ({what}): "
                f'LLaMA-Factory stops after loading the model with "Module {wrong[0]} is not found"',
                hint="name direct children of a decoder layer (`self_attn`, `mlp`, or `all`)"
                + (f"; put {keys_text(model_level)} in `freeze_extra_modules`" if model_level else ""),
            )
        extra = [m for m in lf_split(ctx.get("freeze_extra_modules")) or [] if m]
        inner = [m for m in extra if m in _LAYER_CHILDREN]
        if inner:
            yield Finding(
                key="freeze_extra_modules",
                message=f"`freeze_extra_modules` names layer modules ({keys_text(inner)}), but it only matches "
                f'model-level modules such as `embed_tokens` or `lm_head`: LLaMA-Factory stops with "Module {inner[0]} '
                'is not found"',
                hint="select layer modules with `freeze_trainable_modules` and the layers with `freeze_trainable_layers`",
            )
        projector = ctx.has("freeze_multi_modal_projector") and not ctx.flag("freeze_multi_modal_projector")
        if layers == 0 and not extra and not projector:
            yield Finding(
                key="freeze_trainable_layers",
                message="`freeze_trainable_layers: 0` selects no layer and `freeze_extra_modules` is unset: nothing "
                "is trainable, and the optimizer fails with an empty parameter list",
                hint="train the last N layers with a positive number, the first N with a negative one",
            )


def _num_layers(model: Any) -> int | None:
    """The decoder layer count from the resolved model, wherever the model object keeps it."""
    for holder in (getattr(model, "arch", None), model, getattr(model, "config", None)):
        n = getattr(holder, "num_hidden_layers", None)
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
    return None


class LlamaProLayers(Rule):
    """LLaMA Pro with a ``freeze_trainable_layers`` that does not divide the model's layer count.

    LLaMA Pro expands the model into ``freeze_trainable_layers`` equal groups and trains one block per group;
    ``model/adapter.py`` raises "`num_layers` N should be divisible by `num_layer_trainable` K." after the model has
    loaded. Needs the model's architecture.

    Bad:

    ```yaml
    # the model's config.json: {"num_hidden_layers": 32}
    model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
    do_train: true
    finetuning_type: freeze
    use_llama_pro: true
    freeze_trainable_layers: 5
    ```

    Good:

    ```yaml
    # the model's config.json: {"num_hidden_layers": 32}
    model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
    do_train: true
    finetuning_type: freeze
    use_llama_pro: true
    freeze_trainable_layers: 8
    ```
    """

    code = "FT015"
    name = "llama-pro-layers"
    severity = Severity.ERROR
    needs = frozenset({Need.MODEL})

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.flag("use_llama_pro") or ctx.finetuning_type == "full" or not ctx.is_training:
            return
        k = int_value(ctx, "freeze_trainable_layers")
        n = _num_layers(ctx.model)
        if k is None or k <= 0 or n is None or n % k == 0:
            return
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        near = sorted(divisors, key=lambda d: (abs(d - k), d))[:2]
        yield Finding(
            key="freeze_trainable_layers",
            also=("use_llama_pro",),
            message=f"`freeze_trainable_layers: {k}` does not divide the model's {n} layers: LLaMA-Factory stops after "
            f'loading the model with "`num_layers` {n} should be divisible by `num_layer_trainable` {k}."',
            hint=f"use a divisor of {n}, e.g. {' or '.join(str(d) for d in sorted(near))}",
        )


class FreezeSelectsEveryLayer(Rule):
    """``freeze_trainable_layers`` as large as the model's layer count: freeze tuning trains every layer.

    ``_setup_freeze_tuning`` (LLaMA-Factory v0.8.3-v0.9.5 ``src/llamafactory/model/adapter.py``) trains the last N
    decoder layers for a positive ``freeze_trainable_layers`` and the first N for a negative one, clamping N to
    the layer count. With ``|N|`` equal to or above the count every decoder layer is trainable: the run has full
    fine-tuning's gradient and optimizer-state memory (minus the embeddings and LM head), which is rarely what
    ``finetuning_type: freeze`` was chosen for. Needs the model's layer count. LLaMA Pro reads the number
    differently (FT015).

    Bad:

    ```yaml
    # the model's config.json: {"num_hidden_layers": 32}
    do_train: true
    finetuning_type: freeze
    freeze_trainable_layers: 32
    ```

    Good:

    ```yaml
    # the model's config.json: {"num_hidden_layers": 32}
    do_train: true
    finetuning_type: freeze
    freeze_trainable_layers: 8
    ```
    """

    code = "FT018"
    name = "freeze-selects-every-layer"
    severity = Severity.WARNING
    needs = frozenset({Need.MODEL})

    def check(self, ctx: Context) -> Iterator[Finding]:
        if not ctx.is_training or ctx.finetuning_type != "freeze" or ctx.flag("use_llama_pro"):
            return
        k = int_value(ctx, "freeze_trainable_layers")
        n = _num_layers(ctx.model)
        if k is None or k == 0 or n is None or abs(k) < n:
            return
        which = "last" if k > 0 else "first"
        yield Finding(
            key="freeze_trainable_layers" if ctx.has("freeze_trainable_layers") else "finetuning_type",
            message=f"`freeze_trainable_layers: {k}` selects the {which} {abs(k)} layers, and the model has {n}: "
            "every decoder layer trains, with full fine-tuning's gradient and optimizer memory",
            hint=f"train fewer layers (|N| < {n}, e.g. {'' if k > 0 else '-'}{max(1, n // 4)}), or use "
            "`finetuning_type: full` if training everything is intended",
        )


class PissaZero3(Rule):
    """``pissa_init`` under DeepSpeed ZeRO-3.

    PiSSA initialises the adapter from an SVD of each full weight matrix, which ZeRO-3 has partitioned across
    GPUs. ``get_train_args`` raises "Please use scripts/pissa_init.py to initialize PiSSA in DeepSpeed ZeRO-3."
    (``parser.py``).

    Bad:

    ```yaml
    # ds_z3_config.json: {"zero_optimization": {"stage": 3}}
    finetuning_type: lora
    pissa_init: true
    deepspeed: ds_z3_config.json
    ```

    Good:

    ```yaml
    # ds_z3_config.json: {"zero_optimization": {"stage": 3}}
    finetuning_type: lora
    adapter_name_or_path: saves/llama3-8b/pissa_init
    deepspeed: ds_z3_config.json
    ```
    """

    code = "FT017"
    name = "pissa-zero3"
    severity = Severity.ERROR

    def check(self, ctx: Context) -> Iterator[Finding]:
        if ctx.is_train_command and ctx.flag("pissa_init") and ctx.zero3:
            yield Finding(
                key="pissa_init",
                also=("deepspeed",),
                message="`pissa_init` under DeepSpeed ZeRO-3: "
                + lf_stops("Please use scripts/pissa_init.py to initialize PiSSA in DeepSpeed ZeRO-3."),
                hint="run `python scripts/pissa_init.py` once without ZeRO-3 and train with `adapter_name_or_path` "
                "pointing at the PiSSA adapter",
            )
