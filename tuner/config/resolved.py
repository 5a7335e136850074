"""What LLaMA-Factory will actually run with: one reading of a config, for the linter, the estimator and the tuner.

A YAML says little about several settings that decide memory and speed: the attention kernel (``flash_attn:
auto`` leaves it to transformers, and LLaMA-Factory overrides it for some families), the optimizer (the default
moved from foreach to fused AdamW), gradient checkpointing (on unless disabled, reentrant unless told
otherwise), mixed precision, the DeepSpeed stage and offload, and the world size. These used to be worked out
separately by the lint context, the memory estimator and the tuner, which disagreed on the attention kernel.
Everything here is computed once, from the config, its DeepSpeed JSON, the launch options and the target
versions, with the upstream code each value follows:

* attention: LLaMA-Factory ``src/llamafactory/model/model_utils/attention.py``
  ``configure_attn_implementation`` (v0.8.3 to v0.9.5): ``auto`` keeps transformers' default (SDPA where the
  model supports it); ``disabled`` is eager; ``fa2`` falls back to the default when flash-attn is missing;
  Gemma 2 under ``auto``/``fa2`` uses FlashAttention-2 when installed, else eager; ``fa3`` is refused except for
  gpt-oss, which v0.9.5 always runs with FlashAttention-3;
* gradient checkpointing: ``model_utils/checkpointing.py`` ``prepare_model_for_training``: on unless
  ``disable_gradient_checkpointing``, reentrant unless ``use_reentrant_gc: false`` (and never under FSDP2);
* optimizer: transformers ``TrainingArguments.optim`` defaults to ``adamw_torch_fused`` on torch >= 2.8 since
  huggingface/transformers#37358 (transformers 4.54), else ``adamw_torch``; LLaMA-Factory's GaLore, APOLLO,
  BAdam and Adam-mini replace it (``train/trainer_utils.py`` ``create_custom_optimizer``);
* precision: ``pure_bf16`` trains bf16 weights without an fp32 master copy; ``bf16``/``fp16`` are autocast
  with fp32 trainable weights; neither is fp32 training;
* the causal-LM loss's shift (``loss_shift``): transformers 4.49+ pads and shifts the labels
  (huggingface/transformers#35646); 4.46-4.48 ``src/transformers/loss/loss_utils.py`` ``ForCausalLMLoss`` copies
  the shifted fp32 logits; 4.45 and older upcast and shift in the model's forward (``LlamaForCausalLM.forward``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner.config.versions import TargetVersions, v

#: The transformers release whose default optimizer became fused AdamW (on torch >= 2.8).
FUSED_ADAMW_DEFAULT_SINCE = v("4.54.0")

#: The first transformers release with ``ForCausalLMLoss`` (the fp32 copy of the shifted logits inside it), and the
#: first that shifts the labels instead (see the module docstring).
LOSS_UTILS_SINCE = v("4.46.0")
LABELS_SHIFTED_SINCE = v("4.49.0")

#: ``flash_attn`` values -> the kernel when nothing overrides it (``auto``: transformers' default, SDPA).
FLASH_ATTN_KERNEL = {"auto": "sdpa", "sdpa": "sdpa", "fa2": "fa2", "fa3": "fa3", "disabled": "eager", "eager": "eager"}

#: The config keys :func:`resolve` reads (the lint context hands their values, defaults applied).
RESOLVED_KEYS = (
    "stage", "finetuning_type", "optim", "use_galore", "use_apollo", "use_badam", "use_adam_mini", "fsdp",
    "pure_bf16", "bf16", "fp16", "flash_attn", "disable_gradient_checkpointing", "gradient_checkpointing",
    "use_reentrant_gc", "use_unsloth_gc",
)  # fmt: skip

#: Families for which LLaMA-Factory picks the kernel itself (see the module docstring).
_EAGER_ONLY = {"youtu", "youtu_vl"}


def attention_kernel(flash_attn: Any, model_type: str | None = None, *, fa2_available: bool = True) -> str:
    """The attention kernel a run ends up with: ``sdpa``, ``fa2``, ``fa3`` or ``eager``.

    ``fa2_available``: whether flash-attn 2 is installed and supported on the GPU (a hardware profile's
    ``flash_attn2``; the tuner passes False on the CPU).
    """
    fa = str(flash_attn or "auto").strip().lower()
    if model_type == "gpt_oss":
        return "fa3"
    if model_type == "gemma2" and fa in ("auto", "fa2"):
        return "fa2" if fa2_available else "eager"
    if model_type in _EAGER_ONLY and fa in ("auto", "sdpa"):
        return "eager"
    kernel = FLASH_ATTN_KERNEL.get(fa, "sdpa")
    if kernel in ("fa2", "fa3") and not fa2_available:
        return "sdpa"  # flash-attn missing: LLaMA-Factory warns and keeps transformers' default
    return kernel


def default_optim(target: TargetVersions) -> str:
    """transformers' default ``optim`` for the target version (assuming torch >= 2.8 where it matters)."""
    return "adamw_torch_fused" if target.transformers >= FUSED_ADAMW_DEFAULT_SINCE else "adamw_torch"


def loss_shift(target: TargetVersions) -> str:
    """How the target transformers release shifts logits against labels (``TrainSetup.loss_shift``)."""
    if target.transformers >= LABELS_SHIFTED_SINCE:
        return "labels"
    return "logits" if target.transformers >= LOSS_UTILS_SINCE else "model"


def precision_of(data: Mapping[str, Any]) -> str:
    """``pure_bf16``, ``bf16``, ``fp16`` or ``fp32`` as the trainer will run (LLaMA-Factory tests truthiness)."""
    if data.get("pure_bf16"):
        return "pure_bf16"
    if data.get("bf16"):
        return "bf16"
    if data.get("fp16"):
        return "fp16"
    return "fp32"


@dataclass(frozen=True)
class ResolvedConfig:
    """The effective values of one config for the target versions (see the module docstring)."""

    kind: str  # train | export | infer | eval
    stage: str
    finetuning_type: str
    precision: str  # pure_bf16 | bf16 | fp16 | fp32
    flash_attn: str  # as written (default auto)
    optim: str  # transformers' `optim`: as written, else the target version's default
    optim_stated: bool  # the YAML names the optimizer
    custom_optimizer: str | None  # galore | apollo | badam | adam_mini: LLaMA-Factory builds this one instead
    gradient_checkpointing: bool
    gradient_checkpointing_reentrant: bool
    unsloth_gc: bool
    deepspeed: bool  # DeepSpeed is in use (its JSON may still be unreadable)
    zero_stage: int | None  # None: no DeepSpeed, or a stage cfglint could not read
    offload_optimizer: str | None  # cpu | nvme | None
    offload_param: str | None
    fsdp: bool
    gpus_per_node: int | None  # None: unknown (no --gpus, no CUDA_VISIBLE_DEVICES)
    nodes: int
    loss_shift: str = "labels"  # labels | logits | model: see loss_shift()

    @property
    def world_size(self) -> int | None:
        """Processes in the run; None when the GPU count is unknown."""
        return None if self.gpus_per_node is None else self.gpus_per_node * self.nodes

    @property
    def multi_process(self) -> bool | None:
        """Whether the run has several processes; None when unknown."""
        if self.nodes > 1:
            return True
        return None if self.gpus_per_node is None else self.gpus_per_node > 1

    def attention(self, model_type: str | None = None, *, fa2_available: bool = True) -> str:
        return attention_kernel(self.flash_attn, model_type, fa2_available=fa2_available)


def resolve(
    data: Mapping[str, Any],
    *,
    kind: str,
    target: TargetVersions,
    deepspeed: Any = None,
    gpus_per_node: int | None = None,
    nodes: int = 1,
    env: Mapping[str, str] | None = None,
) -> ResolvedConfig:
    """Compute :class:`ResolvedConfig` from a config's values (as LLaMA-Factory reads them).

    ``deepspeed``: a :class:`tuner.config.deepspeed.DeepSpeedConfig` (or anything with ``stage``,
    ``offload_optimizer`` and ``offload_param``), or None when the config uses no DeepSpeed JSON or it could not
    be read; the YAML's ``deepspeed`` key still says DeepSpeed is in use.
    """
    env = env or {}
    stage = str(data.get("stage") or "sft")
    ft = str(data.get("finetuning_type") or "lora")
    optim_value = data.get("optim")
    stated = isinstance(optim_value, str) and bool(optim_value.strip())
    optim = optim_value.strip().lower() if isinstance(optim_value, str) and stated else default_optim(target)
    custom = next(
        (name for flag, name in (("use_galore", "galore"), ("use_apollo", "apollo"), ("use_badam", "badam"),
                                 ("use_adam_mini", "adam_mini")) if data.get(flag)),
        None,
    )  # fmt: skip
    fsdp_value = data.get("fsdp")
    fsdp = bool(fsdp_value) or str(env.get("ACCELERATE_USE_FSDP", "")).lower() == "true"
    fsdp2 = fsdp and str(env.get("FSDP_VERSION", "1")) == "2"
    stage_value = getattr(deepspeed, "stage", None) if deepspeed is not None else None
    zero_stage = stage_value if isinstance(stage_value, int) and stage_value in (0, 1, 2, 3) else None
    return ResolvedConfig(
        kind=kind,
        stage=stage,
        finetuning_type=ft,
        precision=precision_of(data),
        flash_attn=str(data.get("flash_attn") or "auto").lower(),
        optim=optim,
        optim_stated=stated,
        custom_optimizer=custom,
        gradient_checkpointing=not data.get("disable_gradient_checkpointing") or bool(data.get("gradient_checkpointing")),
        gradient_checkpointing_reentrant=data.get("use_reentrant_gc", True) is not False and not fsdp2,
        unsloth_gc=bool(data.get("use_unsloth_gc")),
        deepspeed=data.get("deepspeed") not in (None, "", False),
        zero_stage=zero_stage,
        offload_optimizer=getattr(deepspeed, "offload_optimizer", None) if deepspeed is not None else None,
        offload_param=getattr(deepspeed, "offload_param", None) if deepspeed is not None else None,
        fsdp=fsdp,
        gpus_per_node=gpus_per_node,
        nodes=max(1, nodes),
        loss_shift=loss_shift(target),
    )
