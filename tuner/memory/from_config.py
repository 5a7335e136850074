"""A :class:`TrainSetup` from a LLaMA-Factory config as the lint :class:`~tuner.config.context.Context` sees it.

Values are read the way LLaMA-Factory reads them (``ctx.get`` falls back to its defaults). A value of the
wrong type is left to the schema rules: here it falls back to the default, so one typo does not hide every
memory finding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuner.memory.estimator import MemoryEstimate, estimate
from tuner.memory.setup import (
    TrainSetup,
    ZeroConfig,
    parse_optim,
)

if TYPE_CHECKING:
    from tuner.config.context import Context

DEFAULT_CEILING = 0.90


def _int(ctx: Context, key: str, default: int, *, minimum: int = 1) -> int:
    v = ctx.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or int(v) < minimum:
        return default
    return int(v)


def _float(ctx: Context, key: str, default: float) -> float:
    v = ctx.number(key)
    return default if v is None else float(v)


def _names(ctx: Context, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    items = tuple(ctx.as_list(key))
    return items or default


def expandable_segments(env: dict[str, str]) -> bool:
    conf = env.get("PYTORCH_CUDA_ALLOC_CONF", "") + "," + env.get("PYTORCH_ALLOC_CONF", "")
    return "expandable_segments:true" in conf.replace(" ", "").lower()


def setup_from_context(ctx: Context) -> TrainSetup:
    """The memory-relevant facts of the config in ``ctx`` (model from ``ctx.model``, launch size from ``ctx``)."""
    model = ctx.model
    if model is None:
        raise LookupError("memory estimate needs a known model")
    arch = getattr(model, "arch", model)
    hardware = ctx.hardware
    ds = ctx.deepspeed
    stage = ctx.zero_stage
    if stage is not None and stage not in (0, 1, 2, 3):
        stage = None  # an invalid stage is reported by the DeepSpeed rules; estimate as if plain DDP
    resolved = ctx.resolved
    precision = resolved.precision
    qbit = ctx.get("quantization_bit")
    quantization_bit = int(qbit) if isinstance(qbit, int) and not isinstance(qbit, bool) and qbit in (2, 3, 4, 5, 6, 8) else None
    gc = resolved.gradient_checkpointing
    ft = ctx.finetuning_type if ctx.finetuning_type in ("lora", "freeze", "full", "oft") else "lora"
    stage_name = ctx.stage if ctx.stage in ("pt", "sft", "rm", "ppo", "dpo", "kto") else "sft"
    pref_loss = str(ctx.get("pref_loss") or "sigmoid")
    use_ref = (stage_name == "kto" or (stage_name == "dpo" and pref_loss not in ("orpo", "simpo"))) and not ctx.get("ref_model")
    # An unstated optimizer is the target transformers version's default (fused AdamW since 4.54 on torch >= 2.8),
    # as the resolved configuration says; the estimator sizes the fused second-step peak as well as foreach's step.
    optim = "adam_mini" if resolved.custom_optimizer == "adam_mini" else parse_optim(resolved.optim)
    gpus = ctx.gpus
    # LLaMA-Factory packs pre-training data unless told not to (v0.9.5 hparams/parser.py: packing defaults to
    # stage == "pt"; data_args.py: neat_packing implies packing); anything else pads each batch to its longest row
    packing = ctx.get("packing")
    packed = bool(ctx.flag("neat_packing")) or (bool(packing) if packing is not None else stage_name == "pt")
    return TrainSetup(
        arch=arch,
        finetuning_type=ft,
        stage=stage_name,
        lora_rank=ctx.lora_rank if ctx.lora_rank and ctx.lora_rank > 0 else 8,
        lora_target=_names(ctx, "lora_target", ("all",)),
        lora_dropout=max(0.0, _float(ctx, "lora_dropout", 0.0)),
        use_dora=ctx.flag("use_dora"),
        pissa_init=ctx.flag("pissa_init"),
        additional_target=_names(ctx, "additional_target", ()),
        oft_block_size=_int(ctx, "oft_block_size", 32),
        freeze_trainable_layers=_int(ctx, "freeze_trainable_layers", 2, minimum=-(10**6)) or 2,
        freeze_trainable_modules=_names(ctx, "freeze_trainable_modules", ("all",)),
        freeze_extra_modules=_names(ctx, "freeze_extra_modules", ()),
        freeze_vision_tower=bool(ctx.get("freeze_vision_tower", True)),
        quantization_bit=quantization_bit,
        quantization_method=str(ctx.get("quantization_method") or "bnb").lower(),
        quantization_type=str(ctx.get("quantization_type") or "nf4").lower(),
        double_quantization=bool(ctx.get("double_quantization", True)),
        batch_size=_int(ctx, "per_device_train_batch_size", 8),
        cutoff_len=_int(ctx, "cutoff_len", 2048),
        gradient_accumulation_steps=_int(ctx, "gradient_accumulation_steps", 1),
        varying_lengths=not packed,
        gradient_checkpointing=gc,
        unsloth_gc=ctx.flag("use_unsloth_gc"),
        loss_shift=resolved.loss_shift,
        attention=resolved.attention(arch.model_type, fa2_available=bool(getattr(hardware, "flash_attn2", True)) if hardware is not None else True),
        liger=ctx.flag("enable_liger_kernel"),
        optim=optim,
        precision=precision,
        upcast_lmhead_output=ctx.flag("upcast_lmhead_output"),
        upcast_layernorm=ctx.flag("upcast_layernorm"),
        expandable_segments=expandable_segments(ctx.options.env),
        zero_stage=stage,
        offload_optimizer=ds.offload_optimizer if ds is not None else None,
        offload_param=ds.offload_param if ds is not None else None,
        zero=ZeroConfig.from_dict(ds.zero) if ds is not None else ZeroConfig(),
        world_size=max(1, ctx.world_size),
        gpus_per_node=gpus if gpus else None,
        use_galore=ctx.flag("use_galore"),
        galore_rank=_int(ctx, "galore_rank", 16),
        galore_target=_names(ctx, "galore_target", ("all",)),
        galore_layerwise=ctx.flag("galore_layerwise"),
        use_apollo=ctx.flag("use_apollo"),
        apollo_rank=_int(ctx, "apollo_rank", 16),
        apollo_layerwise=ctx.flag("apollo_layerwise"),
        use_badam=ctx.flag("use_badam"),
        badam_mode=str(ctx.get("badam_mode") or "layer"),
        badam_update_ratio=min(1.0, max(0.0, _float(ctx, "badam_update_ratio", 0.05))),
        use_adam_mini=ctx.flag("use_adam_mini"),
        use_ref_model=use_ref,
    )


def estimate_for_context(ctx: Context, ceiling: float = DEFAULT_CEILING) -> MemoryEstimate:
    """The estimate the lint rules share (``ctx.estimate``): the config on ``--hw`` with ``--gpus``."""
    return estimate(setup_from_context(ctx), ctx.hardware, ceiling=ceiling)
