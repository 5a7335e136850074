"""Shared readings of a config for the rules that mirror LLaMA-Factory's start-up checks.

Each helper answers one question the way LLaMA-Factory (and the transformers ``TrainingArguments`` it
builds on) would answer it at start-up, from the YAML alone. When the answer depends on something the
YAML does not say (how many GPUs, which trackers are installed), the helper says "unknown" (None) and the
rules skip instead of guessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.config.context import Context

#: ``llamafactory-cli`` subcommands that go through ``get_infer_args`` (chat, API, web chat, export).
INFER_COMMANDS = frozenset({"infer", "chat", "api", "webchat", "export"})

#: transformers ``INTEGRATION_TO_CALLBACK`` keys (4.57.1; 5.x adds ``kubeflow``).
INTEGRATIONS_4 = (
    "azure_ml", "comet_ml", "mlflow", "neptune", "tensorboard", "trackio", "wandb", "codecarbon",
    "clearml", "dagshub", "flyte", "dvclive", "swanlab",
)  # fmt: skip
INTEGRATIONS_5 = (*INTEGRATIONS_4, "kubeflow")


def command(ctx: Context) -> str:
    return (ctx.options.command or "train").lower()


def env_enabled(ctx: Context, name: str) -> bool:
    """LLaMA-Factory's ``is_env_enabled``: the variable is ``1``, ``true`` or ``y``."""
    return str(ctx.options.env.get(name, "0")).strip().lower() in {"true", "y", "1"}


def distributed(ctx: Context) -> bool | None:
    """Whether the run is launched with torchrun (``ParallelMode.DISTRIBUTED``); None when unknown.

    DeepSpeed only runs under torchrun (LLaMA-Factory refuses it otherwise), ``FORCE_TORCHRUN=1`` forces
    it, and the launcher uses torchrun whenever more than one device is visible.
    """
    if ctx.uses_deepspeed or env_enabled(ctx, "FORCE_TORCHRUN") or ctx.options.nodes > 1:
        return True
    if ctx.gpus is None:
        return None
    if ctx.flag("use_kt"):  # KTransformers runs as one process on several GPUs
        return False
    return ctx.world_size > 1


def fsdp_enabled(ctx: Context) -> bool:
    """FSDP from the YAML's ``fsdp`` or from an Accelerate launch (``ACCELERATE_USE_FSDP``)."""
    return ctx.fsdp or env_enabled(ctx, "ACCELERATE_USE_FSDP")


def sharded_by(ctx: Context) -> str | None:
    """``DeepSpeed ZeRO-3`` or ``FSDP`` when the parameters are sharded at load time, else None."""
    if ctx.zero3:
        return "DeepSpeed ZeRO-3"
    if fsdp_enabled(ctx):
        return "FSDP"
    return None


def report_to(ctx: Context) -> tuple[list[str], bool]:
    """The loggers ``report_to`` names after transformers normalises it, and whether it means "all".

    transformers 4 turns an unset ``report_to`` into ``"all"``: every tracker installed in the environment.
    """
    v = ctx.get("report_to")
    if v is None:
        return [], ctx.options.transformers_major < 5
    items = [v] if isinstance(v, str) else list(v) if isinstance(v, list) else []
    items = [str(i) for i in items]
    if items == ["all"]:
        return [], True
    if items == ["none"]:
        return [], False
    return items, False


def lf_split(value: Any) -> list[str] | None:
    """``split_arg`` of LLaMA-Factory: a string is split on commas and stripped, a list is kept as is."""
    if value is None:
        return None
    if isinstance(value, str):
        return [item.strip() for item in value.split(",")]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def int_value(ctx: Context, key: str) -> int | None:
    """An integer value, or None when unset or not an integer (the key schema reports wrong types)."""
    v = ctx.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def val_size(ctx: Context) -> float:
    v = ctx.number("val_size", 0.0) or 0.0
    return v if isinstance(v, float) else float(max(-(2**53), min(v, 2**53)))  # huge ints stay huge, not crash


def adapters(ctx: Context) -> list[str] | None:
    """``adapter_name_or_path`` as LLaMA-Factory splits it; None when unset."""
    return lf_split(ctx.get("adapter_name_or_path"))


def resolve_dir(ctx: Context, value: str) -> Path:
    """A path from the config as the launched process sees it: relative to the working directory."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    return (ctx.options.cwd or Path.cwd()) / p


def keys_text(keys: list[str]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


#: Keys only one workflow reads, and the stages that read them (``train/{dpo,kto,ppo}/``).
STAGE_ONLY_KEYS: dict[str, tuple[str, ...]] = {
    "pref_beta": ("dpo", "kto"),
    "pref_ftx": ("dpo", "kto"),
    "pref_loss": ("dpo",),
    "pref_bco_weight": ("dpo",),
    "dpo_label_smoothing": ("dpo",),
    "simpo_gamma": ("dpo",),
    "ld_alpha": ("dpo",),
    "kto_chosen_weight": ("kto",),
    "kto_rejected_weight": ("kto",),
    "ppo_buffer_size": ("ppo",),
    "ppo_epochs": ("ppo",),
    "ppo_score_norm": ("ppo",),
    "ppo_target": ("ppo",),
    "ppo_whiten_rewards": ("ppo",),
    "reward_model": ("ppo",),
    "reward_model_adapters": ("ppo",),
    "reward_model_quantization_bit": ("ppo",),
    "reward_model_type": ("ppo",),
}


def eval_strategy_key(ctx: Context) -> str:
    """The key that states the evaluation strategy: ``eval_strategy``, or its old name ``evaluation_strategy``
    when only that is written (the transformers releases that accept it copy it into ``eval_strategy`` in
    ``TrainingArguments.__post_init__``; where it is not accepted, KEY002 reports the name)."""
    return "evaluation_strategy" if not ctx.has("eval_strategy") and ctx.has("evaluation_strategy") else "eval_strategy"


def eval_strategy_on(ctx: Context) -> bool:
    """Whether the evaluation strategy (``eval_strategy`` or its old name, :func:`eval_strategy_key`) names one
    other than "no": transformers' ``TrainingArguments.__post_init__`` then turns ``do_eval`` on. YAML's bare
    ``no`` reads as false, which is "no" too."""
    strategy = ctx.get(eval_strategy_key(ctx))
    return isinstance(strategy, str) and strategy != "no"


def adapters_mergeable(ctx: Context) -> bool:
    """Whether ``_setup_lora_tuning`` can merge adapters: not into a quantized model, under ZeRO-3, Unsloth or
    KTransformers, where the last adapter is always resumed (even with ``create_new_adapter``)."""
    if ctx.get("quantization_bit") is not None or ctx.flag("use_unsloth") or ctx.flag("use_kt"):
        return False
    return not (ctx.is_train_command and ctx.zero3)
