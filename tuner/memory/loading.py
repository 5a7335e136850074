"""What each GPU holds while LLaMA-Factory loads and prepares the model, before the trainer's first step.

Why this is a peak of its own: LLaMA-Factory loads every rank's model straight onto its GPU in the 16-bit compute
dtype (v0.9.5 ``src/llamafactory/hparams/parser.py``, ``get_train_args``: ``model_args.device_map =
{"": get_current_device()}``; ``model/patcher.py``, ``patch_config``: the device map is passed to
``from_pretrained`` except under ZeRO-3 or FSDP, which partition while loading). ``model/adapter.py``,
``init_adapter``, then upcasts every trainable parameter to fp32 in place (``param.data =
param.data.to(torch.float32)``) unless ``pure_bf16``, BAdam, or ZeRO-3 without quantization. Without DeepSpeed
the training step keeps those fp32 weights anyway, so this moment is below the training peak. Under DeepSpeed
ZeRO-0/1/2 with bf16/fp16 the engine casts the module back to 16-bit only when the trainer starts
(DeepSpeed ``runtime/engine.py``, ``DeepSpeedEngine._configure_distributed_model``: ``self.module.bfloat16()`` /
``half()``) and keeps its fp32 master in 1/N partitions: every GPU holds the whole fp32 copy of the trainable
parameters once, although training then needs only the 16-bit module and a share of the states. For full
fine-tuning on many ranks, or with the optimizer offloaded, that copy is larger than the whole training step and
the run stops before it starts.

Transients on top: bitsandbytes quantizes each linear weight from a 16-bit copy on the device
(``Params4bit._quantize``: ``w = self.data.contiguous().to(device)``), and each in-place upcast or cast holds the
old copy until the new one is assigned. At most one such tensor is in flight: the largest is added.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuner.memory.model import ParamPlan, arch_facts
from tuner.memory.setup import TrainSetup


@dataclass(frozen=True)
class LoadingPeak:
    """Allocated bytes at the set-up's worst moment, and how they arise."""

    bytes: float
    weights: float  # the model as it stands at that moment
    transient: float  # the one tensor in flight
    detail: str
    upcast: bool  # the trainable parameters are in fp32 at that moment (LLaMA-Factory's upcast)


def lf_upcasts_trainable(*, precision: str, badam: bool, zero_stage: int | None, quantized: bool) -> bool:
    """Whether LLaMA-Factory's ``init_adapter`` casts the trainable parameters to fp32 (``cast_trainable_params_to_fp32``,
    v0.9.5, the comment there: not pure_bf16, not BAdam, and not ZeRO-3 unless quantized: under ZeRO-3 DeepSpeed's
    fp32 master weights already are the upcast copy). The estimator and the trial builder both ask this."""
    return not (precision == "pure_bf16" or badam) and not (zero_stage == 3 and not quantized)


def loading_peak(s: TrainSetup, plan: ParamPlan) -> LoadingPeak | None:
    """The set-up's peak per GPU, or None under ZeRO-3 (it partitions while loading)."""
    if s.zero_stage == 3:
        return None
    frozen = plan.frozen_16bit * 2.0
    quant = plan.quantized * plan.quant_bytes_per_param
    upcast = lf_upcasts_trainable(precision=s.precision, badam=s.use_badam, zero_stage=s.zero_stage,
                                  quantized=plan.quantized > 0)
    trainable_b = 4 if upcast else 2
    weights = frozen + quant + plan.trainable * trainable_b
    # The in-place upcast holds the 16-bit original of one parameter next to its fp32 copy; the engine's cast
    # back holds a new 16-bit copy next to the fp32 one: either way 2 B of the largest trainable tensor.
    transient = 2.0 * plan.largest_trainable_tensor if (upcast and plan.trainable) else 0.0
    what = f"{plan.trainable:,} trainable params x {trainable_b} B" + (
        " (LLaMA-Factory's fp32 upcast in init_adapter)" if upcast else "")
    # Loading a bitsandbytes model: the 16-bit copy of the largest linear weight being quantized, before the
    # upcast (trainable parameters still 16-bit then).
    if plan.quantized and s.quantization_bit in (4, 8) and not s.arch.quantization_config:
        copy = 2.0 * arch_facts(s.arch).largest_linear
        at_load = frozen + quant + plan.trainable * 2.0 + copy
        if at_load > weights + transient:
            return LoadingPeak(at_load, at_load - copy, copy,
                               "while loading: 16-bit and quantized weights + the 16-bit copy of the largest linear "
                               "weight bitsandbytes is quantizing", upcast=False)
    parts = ([f"{plan.frozen_16bit:,} frozen params x 2 B"] if plan.frozen_16bit else []) + (
        [f"{plan.quantized:,} quantized params"] if plan.quantized else []) + [what]
    detail = " + ".join(parts)
    if transient:
        detail += f" + the 16-bit copy of the largest trainable tensor in flight ({plan.largest_trainable_tensor:,} params)"
    if s.zero_stage is not None and upcast and s.precision in ("bf16", "fp16"):
        detail += "; DeepSpeed casts the module to 16-bit only when training starts"
    return LoadingPeak(weights + transient, weights, transient, detail, upcast=upcast)
